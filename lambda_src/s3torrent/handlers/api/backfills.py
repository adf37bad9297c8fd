"""`/backfills`: start a backfill of a bucket/prefix, and follow its progress."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response

from s3torrent.backfill import scoped_prefix
from s3torrent.errors import BackfillNotFound, BucketNotAllowed
from s3torrent.handlers.api.caller import check_allowed, check_signed
from s3torrent.handlers.api.errors import refuse_other_methods
from s3torrent.handlers.api.openapi import JSON_ERRORS
from s3torrent.handlers.api.resolver import new_router, request_runtime
from s3torrent.handlers.api.responses import json_response
from s3torrent.handlers.api.s3_compatible import asks_for_torrent, get_object_torrent
from s3torrent.handlers.api.schemas import BackfillAccepted, BackfillRequest, BackfillStatus
from s3torrent.model import ObjectRef

router = new_router()


@router.post(
    "/backfills",
    summary="Start a backfill of a bucket/prefix",
    responses={
        202: {
            "description": "started",
            "content": {"application/json": {"model": BackfillAccepted}},
        },
        **JSON_ERRORS,
    },
)
def start_backfill(request: BackfillRequest) -> Response[Any]:
    runtime = request_runtime(router)
    check_signed(router.current_event, "POST /backfills")
    # The allowlist decides the scope: a request wider than it walks the allowed prefix.
    prefix = scoped_prefix(runtime.settings, request.bucket, request.prefix)
    if prefix is None:
        raise BucketNotAllowed(request.bucket, request.prefix)
    backfill_id = runtime.backfills.start(request.bucket, prefix)
    location = f"/backfills/{backfill_id}"
    body = BackfillAccepted(
        id=backfill_id, status="queued", location=location, bucket=request.bucket, prefix=prefix
    )
    return json_response(HTTPStatus.ACCEPTED, body.model_dump(), Location=location)


@router.get(
    "/backfills/<backfill_id>",
    summary="Progress of a backfill",
    enable_validation=False,  # `?torrent` here is GetObjectTorrent on a bucket named "backfills"
    responses={
        200: {
            "description": "progress",
            "content": {"application/json": {"model": BackfillStatus}},
        },
        **JSON_ERRORS,
    },
)
def get_backfill(backfill_id: str) -> Response[Any]:
    if asks_for_torrent():  # GetObjectTorrent on a bucket named "backfills"
        return get_object_torrent("backfills", backfill_id)
    # Anonymous callers are refused before the lookup: they learn nothing, not even an id.
    check_signed(router.current_event, "GET /backfills")
    runtime = request_runtime(router)
    progress = runtime.progress.get(unquote(backfill_id))
    if progress is None:
        raise BackfillNotFound(unquote(backfill_id))
    # A backfill started before the allowlist was narrowed stays out of sight with its bucket.
    check_allowed(runtime.settings, ObjectRef(progress.bucket, progress.prefix))
    body = BackfillStatus(
        id=progress.backfill_id,
        bucket=progress.bucket,
        prefix=progress.prefix,
        status=progress.state,  # type: ignore[arg-type]
        created_at=progress.created_at,
        updated_at=progress.updated_at,
        error=progress.error,
        **progress.counters,
    )
    return json_response(HTTPStatus.OK, body.model_dump())


refuse_other_methods(router, "/backfills", "POST")
refuse_other_methods(router, "/backfills/<backfill_id>", "GET")
