"""Errors to HTTP, in one place: JSON `{"error": {"code", "message"}}`, or S3's XML `<Error>`
once a route has said it answers like S3 (`answer_errors_as_s3`).

Domain errors carry their own status and code (`S3TorrentError.http_status`, `.code`); the
rest here are what Powertools raises before a route runs (validation, media type, a body it
cannot decode, no route) and the 405 that wrong methods on known paths get instead of a 404.
"""

from __future__ import annotations

import binascii
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from s3torrent.errors import S3TorrentError, TorrentPending
from s3torrent.handlers.api.resolver import new_router
from s3torrent.handlers.api.responses import XML_TYPE, json_response
from s3torrent.observability import logger
from s3torrent.s3.errors import error_document
from s3torrent.validation import describe_errors

ALL_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
_S3_STYLE = "s3_style"

router = new_router()


def answer_errors_as_s3() -> None:
    """From here on, this request's errors are S3's XML `<Error>` documents."""
    router.context[_S3_STYLE] = True


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Response[Any]:
    """The error answer of the request being resolved, in its route's style."""
    event = router.current_event
    request_id = event.request_context.request_id or ""
    headers = {**(headers or {}), "x-amz-request-id": request_id}
    if router.context.get(_S3_STYLE):
        body = error_document(code, message, event.path, request_id)
        return Response(status, content_type=XML_TYPE, body=body, headers=headers)
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return json_response(status, {"error": error}, **headers)


def refuse_other_methods(
    resource: APIGatewayRouter, rule: str, allowed: str, *, s3_style: bool = False
) -> None:
    """Answer every other method on `rule` with 405 and `Allow` (a 404 would say no such path)."""

    def method_not_allowed(**_: str) -> Response[Any]:
        if s3_style:
            answer_errors_as_s3()
        event = router.current_event
        return error_response(
            HTTPStatus.METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            f"{event.http_method} is not allowed on {event.path}",
            {"Allow": allowed},
        )

    resource.route(
        rule,
        method=[method for method in ALL_METHODS if method != allowed],
        include_in_schema=False,
        enable_validation=False,
    )(method_not_allowed)


# --- the exception handlers ----------------------------------------------------------------


def s3torrent_error(error: S3TorrentError) -> Response[Any]:
    level = logger.warning if error.http_status >= 500 else logger.info
    level(
        "request refused",
        extra={"code": error.code, "status": error.http_status, "reason": str(error)},
    )
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, TorrentPending) else {}
    return error_response(error.http_status, error.code, str(error), headers)


def validation_error(error: RequestValidationError) -> Response[Any]:
    details = [
        {"loc": list(item.get("loc", ())), "type": item.get("type"), "msg": item.get("msg")}
        for item in error.errors()
    ]
    if any(item["type"] == "json_invalid" for item in details):
        return error_response(HTTPStatus.BAD_REQUEST, "MalformedJSON", "the body is not valid JSON")
    return error_response(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "ValidationError",
        describe_errors(details),
        details=details,
    )


def unsupported_media_type(error: RequestUnsupportedContentType) -> Response[Any]:
    return error_response(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        "send the body as application/json",
    )


def malformed_body(error: Exception) -> Response[Any]:
    # Raised while Powertools decodes the body: bad base64, not UTF-8, nested beyond reason.
    return error_response(
        HTTPStatus.BAD_REQUEST,
        "MalformedJSON",
        f"the body cannot be decoded ({type(error).__name__})",
    )


def no_route(error: NotFoundError) -> Response[Any]:
    event = router.current_event
    return error_response(
        HTTPStatus.NOT_FOUND, "NotFound", f"no route for {event.http_method} {event.path}"
    )


# Registered without decorators, which Powertools leaves untyped. `include_router` hands them
# to the resolver; NotFoundError is what it raises when no route matches (`app.not_found`).
router.exception_handler(S3TorrentError)(s3torrent_error)
router.exception_handler(RequestValidationError)(validation_error)
router.exception_handler(RequestUnsupportedContentType)(unsupported_media_type)
router.exception_handler([binascii.Error, UnicodeDecodeError, RecursionError])(malformed_body)
router.exception_handler(NotFoundError)(no_route)
