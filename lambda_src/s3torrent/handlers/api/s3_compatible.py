"""S3's GetObjectTorrent: `GET /{bucket}/{key+}?torrent`, answered as S3 would, errors in XML.

`aws s3api get-object-torrent` and anything else speaking S3 can point at the API. The route
matches any `/a/b`, so its router is included after the JSON API's.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response

from s3torrent.collections import CollectionRef
from s3torrent.errors import InvalidInput, TorrentPending
from s3torrent.handlers.api.caller import check_caller
from s3torrent.handlers.api.errors import answer_errors_as_s3, refuse_other_methods
from s3torrent.handlers.api.openapi import XML_CONTENT
from s3torrent.handlers.api.outcomes import (
    collection_needs_worker,
    needs_worker,
    queue_collection,
    queue_torrent,
    require_collection,
    require_torrent,
)
from s3torrent.handlers.api.resolver import new_router, request_runtime
from s3torrent.handlers.api.responses import TORRENT_TYPE
from s3torrent.model import ObjectRef
from s3torrent.observability import record_result
from s3torrent.s3.records import content_disposition

# A synchronous Lambda response is at most 6 MB, base64 adds a third: bigger torrents are
# answered with a redirect to a presigned GET of the stored `.torrent`.
MAX_INLINE_TORRENT_BYTES = 4 * 1024 * 1024
PRESIGN_SECONDS = 300
RETRY_AFTER_SECONDS = 60

router = new_router()


@router.get(
    "/<bucket>/<key>",
    summary="GetObjectTorrent",
    description="S3-compatible `GET /{bucket}/{key}?torrent` (`aws s3api get-object-torrent`).",
    enable_validation=False,  # a binary body: Powertools' response validation would decode it
    responses={
        200: {
            "description": "the torrent",
            "content": {TORRENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        400: {
            "description": "InvalidRequest (no ?torrent, empty object …)",
            "content": XML_CONTENT,
        },
        403: {"description": "AccessDenied", "content": XML_CONTENT},
        404: {"description": "NoSuchKey / NoSuchBucket", "content": XML_CONTENT},
        409: {
            "description": "PreconditionFailed: changed while read; retry",
            "content": XML_CONTENT,
        },
        503: {
            "description": "ServiceUnavailable (Retry-After): being made",
            "content": XML_CONTENT,
        },
    },
)
def get_object_torrent(bucket: str, key: str) -> Response[Any]:
    answer_errors_as_s3()
    event = router.current_event
    query = event.query_string_parameters or {}
    if "torrent" not in query:
        raise InvalidInput("only GET ?torrent (GetObjectTorrent) is served on /{bucket}/{key}")
    ref = _s3_ref(
        bucket,
        key,
        query.get("versionId"),
        event.headers.get("x-amz-request-payer"),  # Powertools' headers: case-insensitive
        event.headers.get("x-amz-expected-bucket-owner"),
    )
    if ref.key.endswith("/"):  # a prefix: its collection (docs/collections.md)
        return _serve_collection(ref)
    return _serve_torrent(ref)


refuse_other_methods(router, "/<bucket>/<key>", "GET", s3_style=True)


def asks_for_torrent() -> bool:
    """True when the request has `?torrent`: GetObjectTorrent, whatever route matched it."""
    return "torrent" in (router.current_event.query_string_parameters or {})


def _s3_ref(
    bucket: str, key: str, version_id: str | None, payer: str | None, owner: str | None
) -> ObjectRef:
    if owner is not None and not re.fullmatch(r"\d{12}", owner):
        raise InvalidInput(f"x-amz-expected-bucket-owner must be a 12-digit account id: {owner!r}")
    ref = ObjectRef(
        unquote(bucket),
        unquote(key),
        version_id or None,
        request_payer=(payer or "").lower() == "requester",
        expected_bucket_owner=owner,
    )
    check_caller(router.current_event, request_runtime(router).settings, ref)
    return ref


def _serve_torrent(ref: ObjectRef) -> Response[Any]:
    runtime = request_runtime(router)
    result = runtime.service.make_torrent(ref, max_bytes=runtime.settings.api_inline_max_bytes)
    record_result(result)
    if needs_worker(result):
        queue_torrent(runtime, result, bucket=ref.bucket, key=ref.key)
        raise TorrentPending(ref.bucket, ref.key, RETRY_AFTER_SECONDS)
    data = require_torrent(result).torrent_bytes or b""
    headers = {"x-amz-request-charged": "requester"} if ref.request_payer else {}
    if len(data) > MAX_INLINE_TORRENT_BYTES:
        url = runtime.objects.presign_torrent_get(ref, PRESIGN_SECONDS)
        return Response(HTTPStatus.TEMPORARY_REDIRECT, headers={**headers, "Location": url})
    headers["Content-Disposition"] = content_disposition(ref.key)
    return Response(HTTPStatus.OK, content_type=TORRENT_TYPE, body=data, headers=headers)


def _serve_collection(ref: ObjectRef) -> Response[Any]:
    """`GET /{bucket}/{prefix}/?torrent`: the collection's torrent, made now if it is missing
    or stale and small enough (`aws s3api get-object-torrent --key PREFIX/`)."""
    runtime = request_runtime(router)
    collection = CollectionRef(
        ref.bucket,
        ref.key,
        request_payer=ref.request_payer,
        expected_bucket_owner=ref.expected_bucket_owner,
    )
    inline = runtime.settings.api_inline_max_bytes
    made = runtime.service.make_collection(collection, max_bytes=inline)
    if collection_needs_worker(made):
        queue_collection(runtime, made)
        raise TorrentPending(ref.bucket, ref.key, RETRY_AFTER_SECONDS)
    result = require_collection(made, inline)
    data = result.torrent_bytes or b""
    headers = {"x-amz-request-charged": "requester"} if ref.request_payer else {}
    if len(data) > MAX_INLINE_TORRENT_BYTES:
        url = runtime.objects.presign_torrent_get(collection.torrent_ref, PRESIGN_SECONDS)
        return Response(HTTPStatus.TEMPORARY_REDIRECT, headers={**headers, "Location": url})
    headers["Content-Disposition"] = content_disposition(collection.base)
    return Response(HTTPStatus.OK, content_type=TORRENT_TYPE, body=data, headers=headers)
