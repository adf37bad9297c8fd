"""`/torrents`: make an object's torrent now (or queue it), and describe a stored one."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import quote, unquote

from aws_lambda_powertools.event_handler import Response

from s3torrent.collections import CollectionRef
from s3torrent.errors import CustomTorrentNotInline, InvalidInput, ObjectNotFound
from s3torrent.fanout import BuildState
from s3torrent.handlers.api.caller import check_allowed, check_caller, check_signed
from s3torrent.handlers.api.errors import refuse_other_methods
from s3torrent.handlers.api.openapi import JSON_ERRORS
from s3torrent.handlers.api.outcomes import (
    collection_needs_worker,
    custom_torrent,
    needs_worker,
    queue_collection,
    queue_torrent,
    require_collection,
    require_torrent,
)
from s3torrent.handlers.api.resolver import new_router, request_runtime
from s3torrent.handlers.api.responses import json_response
from s3torrent.handlers.api.s3_compatible import asks_for_torrent, get_object_torrent
from s3torrent.handlers.api.schemas import CreateTorrentRequest, ErrorBody, Queued, TorrentInfo
from s3torrent.model import ObjectRef, Outcome
from s3torrent.observability import record_result

router = new_router()


@router.post(
    "/torrents",
    summary="Make a torrent now, or queue it",
    responses={
        201: {"description": "made", "content": {"application/json": {"model": TorrentInfo}}},
        200: {
            "description": "already fresh",
            "content": {"application/json": {"model": TorrentInfo}},
        },
        202: {
            "description": "over the API's inline size: queued, see `location`",
            "content": {"application/json": {"model": Queued}},
        },
        409: {
            "description": "PreconditionFailed: changed while hashed; retry",
            "content": {"application/json": {"model": ErrorBody}},
        },
        **JSON_ERRORS,
    },
)
def create_torrent(request: CreateTorrentRequest) -> Response[Any]:
    runtime = request_runtime(router)
    ref = ObjectRef(request.bucket, request.key, request.version_id)
    check_signed(router.current_event, "POST /torrents")
    check_allowed(runtime.settings, ref)
    overrides = request.options.overrides() if request.options else None
    if ref.key.endswith("/"):  # a prefix: its collection (docs/collections.md)
        return _create_collection(ref, overrides)
    # The stored `<key>.torrent` is everyone's (anonymous users on public prefixes too): a
    # caller's own options make a torrent for that caller alone, unless the settings say not.
    stores = runtime.settings.api_callers_may_replace or not runtime.service.is_custom(overrides)
    result = runtime.service.make_torrent(
        ref, overrides=overrides, max_bytes=runtime.settings.api_inline_max_bytes, write=stores
    )
    record_result(result)
    location = "/torrents/" + quote(f"{ref.bucket}/{ref.key}")
    if needs_worker(result):
        if not stores:  # a job could only write the stored torrent: refuse rather than queue
            raise CustomTorrentNotInline(
                ref.bucket,
                ref.key,
                f"over the API's inline size ({runtime.settings.api_inline_max_bytes} bytes)",
            )
        queue_torrent(
            runtime,
            result,
            bucket=ref.bucket,
            key=ref.key,
            version_id=ref.version_id,
            overrides=overrides,
        )
        body = Queued(
            location=location, bucket=ref.bucket, key=ref.key, source_etag=result.source_etag
        )
        return json_response(
            HTTPStatus.ACCEPTED, body.model_dump(exclude_none=True), Location=location
        )
    if require_torrent(result).record is None:  # made for this caller, stored nowhere
        return json_response(HTTPStatus.OK, custom_torrent(result).model_dump())
    created = result.outcome is Outcome.CREATED
    info = TorrentInfo.from_result(result, "created" if created else "fresh")
    status = HTTPStatus.CREATED if created else HTTPStatus.OK
    return json_response(status, info.model_dump(), Location=location)


@router.get(
    "/torrents/<bucket>/<key>",
    summary="Status and metadata of a stored torrent",
    enable_validation=False,  # `?torrent` here is GetObjectTorrent on a bucket named "torrents"
    responses={
        200: {
            "description": "the stored torrent",
            "content": {"application/json": {"model": TorrentInfo}},
        },
        **JSON_ERRORS,
    },
)
def describe_torrent(bucket: str, key: str) -> Response[Any]:
    if asks_for_torrent():  # GetObjectTorrent on a bucket that happens to be named "torrents"
        return get_object_torrent("torrents", f"{bucket}/{key}")
    runtime = request_runtime(router)
    ref = ObjectRef(unquote(bucket), unquote(key))
    check_caller(router.current_event, runtime.settings, ref)
    collection = ref.key.endswith("/")  # a prefix: its collection's torrent
    kind = "collection" if collection else "object"
    # A fan-out build of a version with no torrent yet is reported with its parts.
    build = runtime.service.build_state(ref.bucket, ref.key)
    try:
        if collection:
            described = runtime.service.collections.describe(CollectionRef(ref.bucket, ref.key))
            fresh = described.outcome is Outcome.FRESH
            info = TorrentInfo.from_collection(described, "fresh" if fresh else "stale")
        else:
            result = runtime.service.describe(ref)
            fresh = result.outcome is Outcome.FRESH
            info = TorrentInfo.from_result(result, "fresh" if fresh else "stale")
    except ObjectNotFound:
        if not _under_way_or_failed(build):
            raise
        assert build is not None
        return json_response(HTTPStatus.OK, TorrentInfo.from_build(build, kind).model_dump())
    if not fresh and _under_way_or_failed(build):
        assert build is not None
        return json_response(HTTPStatus.OK, TorrentInfo.from_build(build, kind).model_dump())
    return json_response(HTTPStatus.OK, info.with_build(build).model_dump())


def _under_way_or_failed(build: BuildState | None) -> bool:
    """True for a build that has not written its torrent (running, or failed): with no fresh
    torrent, it is the status. Its `source_etag` (`listing_digest`) says which version it
    was; a caller following a job compares it with the one `POST /torrents` queued."""
    return build is not None and build.status != "done"


def _create_collection(ref: ObjectRef, overrides: dict[str, Any] | None) -> Response[Any]:
    runtime = request_runtime(router)
    if ref.version_id:
        raise InvalidInput("a collection (a key ending in '/') has no version_id")
    if runtime.service.is_custom(overrides) and not runtime.settings.api_callers_may_replace:
        # The stored collection torrent is everyone's, as an object's is (docs/design.md).
        raise InvalidInput(
            "options of a caller's own are not served for collections yet: ask without them"
        )
    inline = runtime.settings.api_inline_max_bytes
    result = runtime.service.make_collection(
        CollectionRef(ref.bucket, ref.key), overrides=overrides, max_bytes=inline
    )
    location = "/torrents/" + quote(f"{ref.bucket}/{ref.key}")
    if collection_needs_worker(result):
        queue_collection(runtime, result, overrides)
        body = Queued(
            location=location,
            bucket=ref.bucket,
            key=ref.key,
            listing_digest=result.listing_digest,
        )
        return json_response(
            HTTPStatus.ACCEPTED, body.model_dump(exclude_none=True), Location=location
        )
    result = require_collection(result, inline)
    created = result.outcome is Outcome.CREATED
    info = TorrentInfo.from_collection(result, "created" if created else "fresh")
    status = HTTPStatus.CREATED if created else HTTPStatus.OK
    return json_response(status, info.model_dump(), Location=location)


refuse_other_methods(router, "/torrents", "POST")
refuse_other_methods(router, "/torrents/<bucket>/<key>", "GET")
