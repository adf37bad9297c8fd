"""`GET /feeds/{bucket}[/{prefix+}]`: the newest torrents of a folder, as RSS 2.0 or JSON.

A feed is one Query of the feed index (s3torrent/publishing/index.py), whatever the bucket
holds. Anonymous callers on public prefixes, IAM callers elsewhere, never outside the
allowlist (caller.py). A `?torrent` here is GetObjectTorrent on a bucket named `feeds`.
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
from s3torrent.handlers.api.responses import JSON_TYPE
from s3torrent.handlers.api.s3_compatible import asks_for_torrent, get_object_torrent
from s3torrent.model import ObjectRef
from s3torrent.publishing import DEFAULT_LIMIT, MAX_LIMIT, RSS_TYPE, ApiLinks, folder_scope
from s3torrent.publishing.feed import entity_tag, http_date, not_modified

CACHE_SECONDS = 60
router = new_router()

_RESPONSES: dict[int, Any] = {
    200: {
        "description": "the feed, newest first (`?format=json`: the same as JSON)",
        "content": {
            RSS_TYPE: {"schema": {"type": "string"}},
            JSON_TYPE: {"schema": {"type": "object"}},
        },
    },
    304: {"description": "not modified since the ETag / Last-Modified the caller holds"},
    **JSON_ERRORS,
}


@router.get(
    "/feeds/<bucket>",
    summary="RSS feed of a bucket's newest torrents",
    enable_validation=False,  # `?torrent` here is GetObjectTorrent on a bucket named "feeds"
    responses=_RESPONSES,
)
def bucket_feed(bucket: str) -> Response[Any]:
    if asks_for_torrent():
        return get_object_torrent("feeds", bucket)
    return _feed(unquote(bucket), "")


@router.get(
    "/feeds/<bucket>/<prefix>",
    summary="RSS feed of a folder's newest torrents",
    enable_validation=False,
    responses=_RESPONSES,
)
def folder_feed(bucket: str, prefix: str) -> Response[Any]:
    if asks_for_torrent():
        return get_object_torrent("feeds", f"{bucket}/{prefix}")
    return _feed(unquote(bucket), unquote(prefix))


refuse_other_methods(router, "/feeds/<bucket>", "GET")
refuse_other_methods(router, "/feeds/<bucket>/<prefix>", "GET")


def _feed(bucket: str, prefix: str) -> Response[Any]:
    event = router.current_event
    runtime = request_runtime(router)
    scope = folder_scope(prefix)
    check_caller(event, runtime.settings, ObjectRef(bucket, scope))
    query = event.query_string_parameters or {}
    kind = query.get("format", "rss")
    if kind not in ("rss", "json"):
        raise InvalidInput(f"format must be rss or json: {kind!r}")
    limit = _limit(query.get("limit"))
    feed = runtime.publisher.feed(bucket, scope, limit, ApiLinks.from_event(event.raw_event))
    body = feed.to_json() if kind == "json" else feed.to_rss()
    etag = entity_tag(body)
    headers = {"ETag": etag, "Cache-Control": f"max-age={CACHE_SECONDS}", "Vary": "Host"}
    if feed.last_modified is not None:
        headers["Last-Modified"] = http_date(feed.last_modified)
    if not_modified(dict(event.headers), etag, feed.last_modified):
        return Response(HTTPStatus.NOT_MODIFIED, headers=headers, body="")
    content_type = JSON_TYPE if kind == "json" else f"{RSS_TYPE}; charset=utf-8"
    return Response(
        HTTPStatus.OK, content_type=content_type, body=body.decode("utf-8"), headers=headers
    )


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}: {text!r}")
    return int(text)
