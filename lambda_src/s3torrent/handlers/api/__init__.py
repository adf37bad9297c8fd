"""The HTTP API behind API Gateway (REST, IAM auth): S3-compatible `?torrent` and a JSON API.

Routes (the README has the full table of statuses and bodies):
    GET  /{bucket}/{key+}?torrent     GetObjectTorrent: the torrent, or an S3-style XML error
    POST /torrents                    make one now (201/200) or queue it (202)
    GET  /torrents/{bucket}/{key+}    status, hashes and magnet link of a stored torrent
    POST /backfills                   start a backfill (202)
    GET  /backfills/{id}              its progress
    GET  /openapi.json                the OpenAPI document
Errors are mapped in one place (`s3torrent_error`): JSON `{"error": {"code", "message"}}`,
XML `<Error>` on the S3-compatible route.
"""

from __future__ import annotations

import binascii
import json
import os
import re
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, unquote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import (
    OpenAPIResponse,
    OpenAPIResponseContentModel,
    OpenAPIResponseContentSchema,
)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from s3torrent import __version__
from s3torrent.errors import (
    AccessDenied,
    BackfillNotFound,
    BucketNotAllowed,
    InvalidInput,
    ObjectChanged,
    S3TorrentError,
    TorrentPending,
    UnsupportedObject,
)
from s3torrent.handlers.api.schemas import (
    BackfillAccepted,
    BackfillRequest,
    BackfillStatus,
    CreateTorrentRequest,
    ErrorBody,
    Queued,
    TorrentInfo,
    complete_openapi,
)
from s3torrent.handlers.runtime import Runtime
from s3torrent.jobs import JobMessage, queue_requested_job, scoped_prefix
from s3torrent.model import ObjectRef, Outcome, SkipReason, TorrentResult
from s3torrent.observability import logger, metrics, record_result, tracer
from s3torrent.s3.errors import error_document
from s3torrent.s3.objects import content_disposition
from s3torrent.settings import Settings

MAX_BODY_BYTES = 64 * 1024
# A synchronous Lambda response is at most 6 MB, base64 adds a third: bigger torrents are
# answered with a redirect to a presigned GET of the stored `.torrent`.
MAX_INLINE_TORRENT_BYTES = 4 * 1024 * 1024
PRESIGN_SECONDS = 300
RETRY_AFTER_SECONDS = 60
TORRENT_TYPE = "application/x-bittorrent"
XML_TYPE = "application/xml"
LOOPBACK = frozenset({"127.0.0.1", "::1"})
ALL_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")

runtime = Runtime(Settings.from_env(os.environ))


class S3PathResolver(APIGatewayRestResolver):
    """REST resolver whose `<key>` path parameter spans slashes, like API Gateway's `{key+}`.

    Other parameters match one path segment. Matching runs on the path as API Gateway REST
    hands it over (percent-encoded), so routes unquote what they capture.
    """

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = "^{}/*$") -> re.Pattern[str]:
        def group(match: re.Match[str]) -> str:
            name = match.group(1)
            return f"(?P<{name}>.+)" if name == "key" else f"(?P<{name}>[^/]+)"

        return re.compile(base_regex.format(re.sub(r"<(\w+)>", group, rule)))


app = S3PathResolver(enable_validation=True)

_JSON_ERRORS: dict[int, OpenAPIResponse] = {
    status: {"description": text, "content": {"application/json": {"model": ErrorBody}}}
    for status, text in (
        (400, "InvalidRequest, MalformedJSON, UnsupportedObject"),
        (403, "AccessDenied: bucket outside the allowlist, or S3 refused"),
        (404, "NoSuchKey / NoSuchBucket / NoSuchBackfill"),
        (413, "RequestEntityTooLarge: body over 64 KiB"),
        (415, "UnsupportedMediaType: the body is not JSON"),
        (503, "ServiceUnavailable: S3 or SQS failed for now; retry"),
    )
}
_XML_CONTENT: dict[str, OpenAPIResponseContentSchema | OpenAPIResponseContentModel] = {
    XML_TYPE: {"schema": {"type": "string", "example": "<Error><Code>NoSuchKey</Code>…</Error>"}}
}


# --- the JSON API --------------------------------------------------------------------------


@app.post(
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
        **_JSON_ERRORS,
    },
)
def create_torrent(request: CreateTorrentRequest) -> Response[Any]:
    ref = ObjectRef(request.bucket, request.key, request.version_id)
    _check_allowed(ref)
    overrides = request.options.overrides() if request.options else None
    result = runtime.service.make_torrent(
        ref, overrides=overrides, max_bytes=runtime.settings.api_inline_max_bytes
    )
    record_result(result)
    location = "/torrents/" + quote(f"{ref.bucket}/{ref.key}")
    if result.outcome is Outcome.SKIPPED and result.skip_reason is SkipReason.TOO_LARGE:
        job = JobMessage(
            bucket=ref.bucket, key=ref.key, version_id=ref.version_id, overrides=overrides
        )
        _queue(job, result)
        body = Queued(location=location, bucket=ref.bucket, key=ref.key)
        return _json(HTTPStatus.ACCEPTED, body.model_dump(), Location=location)
    created = _made(result).outcome is Outcome.CREATED
    info = TorrentInfo.from_result(result, "created" if created else "fresh")
    status = HTTPStatus.CREATED if created else HTTPStatus.OK
    return _json(status, info.model_dump(), Location=location)


@app.get(
    "/torrents/<bucket>/<key>",
    summary="Status and metadata of a stored torrent",
    enable_validation=False,  # `?torrent` here is GetObjectTorrent on a bucket named "torrents"
    responses={
        200: {
            "description": "the stored torrent",
            "content": {"application/json": {"model": TorrentInfo}},
        },
        **_JSON_ERRORS,
    },
)
def describe_torrent(bucket: str, key: str) -> Response[Any]:
    if _asks_for_torrent():  # GetObjectTorrent on a bucket that happens to be named "torrents"
        return get_object_torrent("torrents", f"{bucket}/{key}")
    ref = ObjectRef(unquote(bucket), unquote(key))
    _check_allowed(ref)
    result = runtime.service.describe(ref)
    status = "fresh" if result.outcome is Outcome.FRESH else "stale"
    return _json(HTTPStatus.OK, TorrentInfo.from_result(result, status).model_dump())


@app.post(
    "/backfills",
    summary="Start a backfill of a bucket/prefix",
    responses={
        202: {
            "description": "started",
            "content": {"application/json": {"model": BackfillAccepted}},
        },
        **_JSON_ERRORS,
    },
)
def start_backfill(request: BackfillRequest) -> Response[Any]:
    prefix = scoped_prefix(runtime.settings, request.bucket, request.prefix)
    if prefix is None:
        raise BucketNotAllowed(request.bucket, request.prefix)
    backfill_id = runtime.backfills.start(request.bucket, prefix)
    location = f"/backfills/{backfill_id}"
    body = BackfillAccepted(
        id=backfill_id, status="queued", location=location, bucket=request.bucket, prefix=prefix
    )
    return _json(HTTPStatus.ACCEPTED, body.model_dump(), Location=location)


@app.get(
    "/backfills/<backfill_id>",
    summary="Progress of a backfill",
    enable_validation=False,  # `?torrent` here is GetObjectTorrent on a bucket named "backfills"
    responses={
        200: {
            "description": "progress",
            "content": {"application/json": {"model": BackfillStatus}},
        },
        **_JSON_ERRORS,
    },
)
def get_backfill(backfill_id: str) -> Response[Any]:
    if _asks_for_torrent():  # GetObjectTorrent on a bucket named "backfills"
        return get_object_torrent("backfills", backfill_id)
    progress = runtime.progress.get(unquote(backfill_id))
    if progress is None:
        raise BackfillNotFound(unquote(backfill_id))
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
    return _json(HTTPStatus.OK, body.model_dump())


@app.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[Any]:
    document = json.loads(
        app.get_openapi_json_schema(
            title="s3torrent",
            version=__version__,
            summary="A BitTorrent .torrent next to every S3 object",
        )
    )
    return _json(HTTPStatus.OK, complete_openapi(document))


# --- the S3-compatible route (registered after the JSON routes: it matches any /a/b) -------


@app.get(
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
            "content": _XML_CONTENT,
        },
        403: {"description": "AccessDenied", "content": _XML_CONTENT},
        404: {"description": "NoSuchKey / NoSuchBucket", "content": _XML_CONTENT},
        409: {
            "description": "PreconditionFailed: changed while read; retry",
            "content": _XML_CONTENT,
        },
        503: {
            "description": "ServiceUnavailable (Retry-After): being made",
            "content": _XML_CONTENT,
        },
    },
)
def get_object_torrent(bucket: str, key: str) -> Response[Any]:
    app.context["s3_style"] = True
    event = app.current_event
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
    return _serve_torrent(ref)


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
    _check_allowed(ref)
    _check_caller(ref)
    return ref


def _serve_torrent(ref: ObjectRef) -> Response[Any]:
    settings = runtime.settings
    result = runtime.service.make_torrent(ref, max_bytes=settings.api_inline_max_bytes)
    record_result(result)
    if result.outcome is Outcome.SKIPPED and result.skip_reason is SkipReason.TOO_LARGE:
        _queue(JobMessage(bucket=ref.bucket, key=ref.key), result)
        raise TorrentPending(ref.bucket, ref.key, RETRY_AFTER_SECONDS)
    data = _made(result).torrent_bytes or b""
    headers = {"x-amz-request-charged": "requester"} if ref.request_payer else {}
    if len(data) > MAX_INLINE_TORRENT_BYTES:
        url = runtime.objects.presign_torrent_get(ref, PRESIGN_SECONDS)
        return Response(HTTPStatus.TEMPORARY_REDIRECT, headers={**headers, "Location": url})
    headers["Content-Disposition"] = content_disposition(ref.key)
    return Response(HTTPStatus.OK, content_type=TORRENT_TYPE, body=data, headers=headers)


# Wrong methods on known paths: 405 with Allow (XML on the S3-compatible path), not a 404.
def method_not_allowed(**_: str) -> Response[Any]:
    event = app.current_event
    allow = "POST" if event.path.rstrip("/") in ("/torrents", "/backfills") else "GET"
    return _error_response(
        HTTPStatus.METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        f"{event.http_method} is not allowed on {event.path}",
        {"Allow": allow},
    )


def s3_method_not_allowed(**path: str) -> Response[Any]:
    app.context["s3_style"] = True
    return method_not_allowed(**path)


# In this order: dynamic routes match in registration order, the S3 catch-all last.
for _rule, _allowed, _handler in (
    ("/torrents", "POST", method_not_allowed),
    ("/backfills", "POST", method_not_allowed),
    ("/openapi.json", "GET", method_not_allowed),
    ("/backfills/<backfill_id>", "GET", method_not_allowed),
    ("/torrents/<bucket>/<key>", "GET", method_not_allowed),
    ("/<bucket>/<key>", "GET", s3_method_not_allowed),
):
    app.route(
        _rule,
        method=[m for m in ALL_METHODS if m != _allowed],
        include_in_schema=False,
        enable_validation=False,
    )(_handler)


# --- errors: mapped here, once -------------------------------------------------------------


def s3torrent_error(error: S3TorrentError) -> Response[Any]:
    level = logger.warning if error.http_status >= 500 else logger.info
    level(
        "request refused",
        extra={"code": error.code, "status": error.http_status, "reason": str(error)},
    )
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, TorrentPending) else {}
    return _error_response(error.http_status, error.code, str(error), headers)


def validation_error(error: RequestValidationError) -> Response[Any]:
    details = [
        {"loc": list(item.get("loc", ())), "type": item.get("type"), "msg": item.get("msg")}
        for item in error.errors()
    ]
    if any(item["type"] == "json_invalid" for item in details):
        return _error_response(
            HTTPStatus.BAD_REQUEST, "MalformedJSON", "the body is not valid JSON"
        )
    message = "; ".join(
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in details
    )
    return _error_response(
        HTTPStatus.UNPROCESSABLE_ENTITY, "ValidationError", message, details=details
    )


def unsupported_media_type(error: RequestUnsupportedContentType) -> Response[Any]:
    return _error_response(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        "send the body as application/json",
    )


def malformed_body(error: Exception) -> Response[Any]:
    # Raised while Powertools decodes the body: bad base64, not UTF-8, nested beyond reason.
    return _error_response(
        HTTPStatus.BAD_REQUEST,
        "MalformedJSON",
        f"the body cannot be decoded ({type(error).__name__})",
    )


def no_route(error: NotFoundError) -> Response[Any]:
    event = app.current_event
    return _error_response(
        HTTPStatus.NOT_FOUND, "NotFound", f"no route for {event.http_method} {event.path}"
    )


# Registered without decorators, which Powertools leaves untyped.
app.exception_handler(S3TorrentError)(s3torrent_error)
app.exception_handler(RequestValidationError)(validation_error)
app.exception_handler(RequestUnsupportedContentType)(unsupported_media_type)
app.exception_handler([binascii.Error, UnicodeDecodeError, RecursionError])(malformed_body)
app.not_found(no_route)


def _error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Response[Any]:
    request_id = app.current_event.request_context.request_id or ""
    headers = {**(headers or {}), "x-amz-request-id": request_id}
    if app.context.get("s3_style"):
        body = error_document(code, message, app.current_event.path, request_id)
        return Response(status, content_type=XML_TYPE, body=body, headers=headers)
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return _json(status, {"error": error}, **headers)


# --- small helpers -------------------------------------------------------------------------


def _json(status: int, body: Any, **headers: str) -> Response[Any]:
    return Response(
        status, content_type="application/json", body=json.dumps(body, default=str), headers=headers
    )


def _queue(job: JobMessage, result: TorrentResult) -> None:
    marks = runtime.progress if runtime.settings.backfill_table else None
    queue_requested_job(runtime.worker_queue, marks, job, result.source_etag)


def _asks_for_torrent() -> bool:
    return "torrent" in (app.current_event.query_string_parameters or {})


def _check_allowed(ref: ObjectRef) -> None:
    if not runtime.settings.allows(ref.bucket, ref.key):
        raise BucketNotAllowed(ref.bucket, ref.key)


def _check_caller(ref: ObjectRef) -> None:
    """Signed callers pass (IAM already checked them); anonymous ones only on public prefixes."""
    context = app.current_event.raw_event.get("requestContext") or {}
    identity = context.get("identity") or {}
    if any(identity.get(name) for name in ("userArn", "caller", "accessKey", "cognitoIdentityId")):
        return
    if identity.get("sourceIp") in LOOPBACK:  # the local stack (never API Gateway)
        return
    if runtime.settings.is_public(ref.bucket, ref.key):
        return
    raise AccessDenied(f"{ref.uri}: anonymous requests are served only under the public prefixes")


def _made(result: TorrentResult) -> TorrentResult:
    """The result if it has a torrent; else the error that says why not."""
    if result.outcome is Outcome.SKIPPED:
        if result.skip_reason is SkipReason.OUTSIDE_SCOPE:
            raise BucketNotAllowed(result.ref.bucket, result.ref.key)
        reason = result.skip_reason.value if result.skip_reason else "no torrent"
        raise UnsupportedObject(result.ref.bucket, result.ref.key, reason)
    if result.outcome is Outcome.CHANGED:
        raise ObjectChanged(f"{result.ref.uri} changed while it was read: retry")
    return result


def _too_large(event: dict[str, Any]) -> bool:
    body = event.get("body") or ""
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8"))
    return size > MAX_BODY_BYTES


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if _too_large(event):  # before any route parses it
        body = {
            "error": {
                "code": "RequestEntityTooLarge",
                "message": f"the body is over {MAX_BODY_BYTES} bytes",
            }
        }
        return {
            "statusCode": 413,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(body),
            "isBase64Encoded": False,
        }
    return app.resolve(event, context)
