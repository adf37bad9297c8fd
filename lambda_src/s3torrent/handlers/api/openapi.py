"""The OpenAPI document: the error tables routes declare, and what Powertools cannot infer.

`GET /openapi.json` serves it; clients and the fuzzing tests read valid requests and every
documented status from it.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.openapi.types import (
    OpenAPIResponse,
    OpenAPIResponseContentModel,
    OpenAPIResponseContentSchema,
)

from s3torrent import __version__
from s3torrent.handlers.api.errors import refuse_other_methods
from s3torrent.handlers.api.resolver import new_router
from s3torrent.handlers.api.responses import XML_TYPE, json_response
from s3torrent.handlers.api.schemas import ErrorBody

JSON_ERRORS: dict[int, OpenAPIResponse] = {
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
XML_CONTENT: dict[str, OpenAPIResponseContentSchema | OpenAPIResponseContentModel] = {
    XML_TYPE: {"schema": {"type": "string", "example": "<Error><Code>NoSuchKey</Code>…</Error>"}}
}

router = new_router()


@router.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[Any]:
    resolver = router.api_resolver
    if not isinstance(resolver, ApiGatewayResolver):  # a route runs only once included
        raise TypeError(f"the OpenAPI router is not included in a resolver: {resolver!r}")
    document = json.loads(
        resolver.get_openapi_json_schema(
            title="s3torrent",
            version=__version__,
            summary="A BitTorrent .torrent next to every S3 object",
        )
    )
    return json_response(HTTPStatus.OK, complete_openapi(document))


refuse_other_methods(router, "/openapi.json", "GET")


def complete_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """The API's OpenAPI document (from Powertools), completed with what it cannot infer:
    our 422 body, the S3 route's query and headers, its 307."""
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.get("responses", {})
            if method == "get":
                responses.pop("422", None)  # GET routes take no body: nothing to validate
            elif "422" in responses:
                responses["422"] = {
                    "description": "ValidationError: the body does not match the schema",
                    "content": error_ref,
                }
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "key":
                    parameter["description"] = "the object key; may contain '/' ({key+})"
                if parameter["name"] == "prefix":
                    parameter["description"] = "a folder of the bucket; may contain '/' ({prefix+})"
            if "304" in responses:
                # Powertools gives every response a JSON body; a 304 has none (RFC 9110).
                responses["304"].pop("content", None)
            if path.startswith("/feeds/") and method == "get":
                operation.setdefault("parameters", []).extend(FEED_PARAMETERS)
            if path.startswith("/browse/") and method == "get":
                operation.setdefault("parameters", []).append(BROWSE_CONTINUATION)
            if path == "/{bucket}/{key}" and method == "get":
                operation["parameters"] += S3_ROUTE_PARAMETERS
                responses["307"] = {
                    "description": "torrent over 4 MiB: Location is a presigned GET of it",
                    "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
                }
    return document


S3_ROUTE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "torrent",
        "in": "query",
        "required": True,
        "allowEmptyValue": True,
        "description": "GetObjectTorrent: present, empty",
        "schema": {"type": "string"},
    },
    {"name": "versionId", "in": "query", "required": False, "schema": {"type": "string"}},
    {
        "name": "x-amz-request-payer",
        "in": "header",
        "required": False,
        "description": "`requester` for Requester Pays buckets",
        "schema": {"type": "string", "enum": ["requester"]},
    },
    {
        "name": "x-amz-expected-bucket-owner",
        "in": "header",
        "required": False,
        "description": "account id the bucket must belong to (else 403)",
        "schema": {"type": "string", "pattern": "^[0-9]{12}$"},
    },
]


FEED_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "format",
        "in": "query",
        "required": False,
        "description": "rss (default, RSS 2.0) or json (the same items)",
        "schema": {"type": "string", "enum": ["rss", "json"]},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "items, newest first (default 50)",
        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
    },
    {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
    {"name": "If-Modified-Since", "in": "header", "required": False, "schema": {"type": "string"}},
]
BROWSE_CONTINUATION: dict[str, Any] = {
    "name": "continuation",
    "in": "query",
    "required": False,
    "description": "the next page of a folder of over 1,000 keys (the page's More link)",
    "schema": {"type": "string"},
}
