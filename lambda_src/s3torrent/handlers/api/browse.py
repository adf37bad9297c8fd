"""`GET /browse/{bucket}[/{prefix+}]`: a folder's page — folders, objects, their torrents.

One delimiter listing (1,000 keys; a "More" link follows `?continuation=`) and the feed
index for magnets and info hashes. Same callers as feeds (caller.py). A `?torrent` here is
GetObjectTorrent on a bucket named `browse`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response

from s3torrent.errors import InvalidInput
from s3torrent.handlers.api.caller import check_caller
from s3torrent.handlers.api.errors import refuse_other_methods
from s3torrent.handlers.api.openapi import JSON_ERRORS
from s3torrent.handlers.api.resolver import new_router, request_runtime
from s3torrent.handlers.api.s3_compatible import asks_for_torrent, get_object_torrent
from s3torrent.model import ObjectRef
from s3torrent.publishing import HTML_TYPE, ApiLinks, folder_scope

router = new_router()
MAX_TOKEN = 1024  # far above the tokens S3 hands out

_RESPONSES: dict[int, Any] = {
    200: {
        "description": "the folder's page",
        "content": {"text/html": {"schema": {"type": "string"}}},
    },
    **JSON_ERRORS,
}


@router.get(
    "/browse/<bucket>",
    summary="Page of a bucket's top folder",
    enable_validation=False,  # `?torrent` here is GetObjectTorrent on a bucket named "browse"
    responses=_RESPONSES,
)
def bucket_page(bucket: str) -> Response[Any]:
    if asks_for_torrent():
        return get_object_torrent("browse", bucket)
    return _page(unquote(bucket), "")


@router.get(
    "/browse/<bucket>/<prefix>",
    summary="Page of a folder",
    enable_validation=False,
    responses=_RESPONSES,
)
def folder_page(bucket: str, prefix: str) -> Response[Any]:
    if asks_for_torrent():
        return get_object_torrent("browse", f"{bucket}/{prefix}")
    return _page(unquote(bucket), unquote(prefix))


refuse_other_methods(router, "/browse/<bucket>", "GET")
refuse_other_methods(router, "/browse/<bucket>/<prefix>", "GET")


def _page(bucket: str, prefix: str) -> Response[Any]:
    event = router.current_event
    runtime = request_runtime(router)
    scope = folder_scope(prefix)
    check_caller(event, runtime.settings, ObjectRef(bucket, scope))
    token = (event.query_string_parameters or {}).get("continuation") or None
    if token is not None and not (
        len(token) <= MAX_TOKEN and token.isascii() and token.isprintable()
    ):
        # S3's continuation tokens are opaque printable ASCII; anything else cannot be one.
        raise InvalidInput("continuation: not a continuation token this page handed out")
    links = ApiLinks.from_event(event.raw_event)
    body = runtime.publisher.page(bucket, scope, token, links)
    return Response(
        HTTPStatus.OK,
        content_type=HTML_TYPE,
        body=body.decode("utf-8"),
        headers={"Cache-Control": "max-age=10"},
    )
