"""API Gateway (REST, Lambda proxy integration), locally: HTTP in, the Lambda event out.

Each request becomes the event API Gateway would send the api Lambda (resource, path,
httpMethod, headers and multiValueHeaders, decoded query parameters — `?torrent` is
`{"torrent": ""}` —, decoded pathParameters, requestContext with stage, requestId and
identity, body base64-encoded when it is not UTF-8), and the handler's answer is written back
(base64 bodies decoded, multiValueHeaders merged). As on AWS, `path` keeps its percent-encoding
and excludes the stage. The API is served at the root (`--endpoint-url http://127.0.0.1:8000`);
a leading `/prod` (the stage, as a deployed URL has it) is accepted too, unless a configured
bucket has the stage's name. There is no auth: the Authorization header is passed through
and, when present, the caller is shown to the handler as an IAM user of the local account.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

from s3torrent_local.background import BackgroundServer
from s3torrent_local.lambda_context import ACCOUNT_ID, FakeLambdaContext, Handler

log = logging.getLogger("s3torrent_local")

# API Gateway's own limits, mirrored so a local run fails where a deployed one would.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
MAX_LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024
INTEGRATION_TIMEOUT_SECONDS = 29.0

# The API's resources, most specific first (API Gateway prefers literal path segments).
ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (resource, re.compile(pattern))
    for resource, pattern in (
        ("/openapi.json", r"^/openapi\.json$"),
        ("/torrents", r"^/torrents$"),
        ("/torrents/{bucket}/{key+}", r"^/torrents/(?P<bucket>[^/]+)/(?P<key>.+)$"),
        ("/backfills", r"^/backfills$"),
        ("/backfills/{id}", r"^/backfills/(?P<id>[^/]+)$"),
        ("/feeds/{bucket}", r"^/feeds/(?P<bucket>[^/]+)/?$"),
        ("/feeds/{bucket}/{prefix+}", r"^/feeds/(?P<bucket>[^/]+)/(?P<prefix>.+)$"),
        ("/browse/{bucket}", r"^/browse/(?P<bucket>[^/]+)/?$"),
        ("/browse/{bucket}/{prefix+}", r"^/browse/(?P<bucket>[^/]+)/(?P<prefix>.+)$"),
        ("/{bucket}/{key+}", r"^/(?P<bucket>[^/]+)/(?P<key>.+)$"),
        ("/{proxy+}", r"^/(?P<proxy>.+)$"),
        ("/", r"^/$"),
    )
)
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}


def match_route(path: str) -> tuple[str, dict[str, str] | None]:
    """The resource a (percent-encoded, stage-less) path hits, and its decoded path parameters."""
    for resource, pattern in ROUTES:
        found = pattern.match(path)
        if found:
            params = {name: unquote(value) for name, value in found.groupdict().items()}
            return resource, params or None
    return "/{proxy+}", None


def is_binary(content_type: str | None, binary_media_types: Collection[str]) -> bool:
    """Whether API Gateway hands this request body over base64-encoded (binaryMediaTypes)."""
    if not content_type:
        return "*/*" in binary_media_types
    kind, _, subtype = content_type.split(";")[0].strip().lower().partition("/")
    for pattern in binary_media_types:
        want_kind, _, want_subtype = pattern.lower().partition("/")
        if want_kind in ("*", kind) and want_subtype in ("*", subtype):
            return True
    return False


def build_event(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    stage: str,
    source_ip: str,
    request_id: str,
    binary_media_types: Collection[str] = (),
) -> dict[str, Any]:
    """The REST API proxy-integration event for one HTTP request (`raw_path` without the stage)."""
    resource, path_parameters = match_route(raw_path)
    single_headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        single_headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    single_query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        single_query[name] = value
        multi_query.setdefault(name, []).append(value)
    lower = {name.lower(): value for name, value in headers}
    text_body, is_base64 = _event_body(body, lower.get("content-type"), binary_media_types)
    now = datetime.now(UTC)
    return {
        "resource": resource,
        "path": raw_path,
        "httpMethod": method,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": lower.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "extendedRequestId": request_id,
            "httpMethod": method,
            "identity": _identity(lower, source_ip),
            "path": f"/{stage}{raw_path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "resourceId": "local",
            "resourcePath": resource,
            "stage": stage,
        },
        "body": text_body,
        "isBase64Encoded": is_base64,
    }


def _event_body(
    body: bytes, content_type: str | None, binary_media_types: Collection[str]
) -> tuple[str | None, bool]:
    """The event's body and isBase64Encoded: base64 for binary media types and non-UTF-8 bytes."""
    if not body:
        return None, False
    if not is_binary(content_type, binary_media_types):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _identity(headers: dict[str, str], source_ip: str) -> dict[str, Any]:
    """What IAM auth would have put in requestContext.identity: a caller when signed, else none."""
    found = _CREDENTIAL.search(headers.get("authorization", ""))
    access_key = found.group(1) if found else None
    signed = access_key is not None
    return {
        "accessKey": access_key,
        "accountId": ACCOUNT_ID if signed else None,
        "caller": "AIDALOCALUSER0000000" if signed else None,
        "user": "AIDALOCALUSER0000000" if signed else None,
        "userArn": f"arn:aws:iam::{ACCOUNT_ID}:user/local" if signed else None,
        "cognitoAuthenticationProvider": None,
        "cognitoAuthenticationType": None,
        "cognitoIdentityId": None,
        "cognitoIdentityPoolId": None,
        "principalOrgId": None,
        "sourceIp": source_ip,
        "userAgent": headers.get("user-agent"),
    }


def response_parts(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body bytes from a Lambda proxy response (ValueError if malformed)."""
    if not isinstance(response, dict):
        raise ValueError(f"the handler returned {type(response).__name__}, not a proxy response")
    status = int(response.get("statusCode", 200))
    merged: dict[str, list[str]] = {}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        merged[name] = [str(value) for value in values]
    for name, value in (response.get("headers") or {}).items():
        # API Gateway merges both; a pair present in both appears once.
        if str(value) not in merged.setdefault(name, []):
            merged[name].append(str(value))
    raw = response.get("body") or ""
    body = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
    headers = [
        (name, value)
        for name, values in merged.items()
        if name.lower() not in _HOP_BY_HOP
        for value in values
    ]
    return status, headers, body


class ApiGateway(BackgroundServer):
    """The API handler behind a local HTTP server on loopback."""

    def __init__(
        self,
        host: str,
        port: int,
        handler: Callable[[], Handler],
        *,
        stage: str = "prod",
        binary_media_types: Collection[str] = (),
        function_name: str = "s3torrent-api",
        timeout_seconds: float = INTEGRATION_TIMEOUT_SECONDS,
    ) -> None:
        self.handler = handler
        self.stage = stage
        self.binary_media_types = tuple(binary_media_types)
        # A first path segment equal to the stage is the stage, unless a bucket has that name.
        self.strip_stage = True
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        super().__init__(_Server((host, port), self), name="api-gateway")

    def stage_less(self, raw_path: str) -> str:
        """The path as API Gateway hands it on: without a leading `/{stage}`."""
        if self.strip_stage:
            if raw_path == f"/{self.stage}":
                return "/"
            if raw_path.startswith(f"/{self.stage}/"):
                return raw_path[len(self.stage) + 1 :]
        return raw_path

    def invoke(self, event: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        """Call the api Lambda as API Gateway would, failures mapped as API Gateway maps them."""
        context = FakeLambdaContext(self.function_name, self.timeout_seconds)
        started = time.monotonic()
        try:
            response = self.handler()(event, context)
            size = len(json.dumps(response))
            status, headers, body = response_parts(response)
        except Exception:
            log.exception("api: the handler failed on %s %s", event["httpMethod"], event["path"])
            return _gateway_error(502, "Internal server error")
        if size > MAX_LAMBDA_RESPONSE_BYTES:
            log.error("api: response of %d bytes is over Lambda's 6 MB limit", size)
            return _gateway_error(502, "Internal server error")
        if time.monotonic() - started > self.timeout_seconds:
            log.error("api: the handler took over API Gateway's %.0f s", self.timeout_seconds)
            return _gateway_error(504, "Endpoint request timed out")
        return status, headers, body


def _gateway_error(status: int, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps({"message": message}).encode()
    return status, [("Content-Type", "application/json")], body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # bursts of clients (load tests, fuzzers) wait, not fail

    def __init__(self, address: tuple[str, int], gateway: ApiGateway) -> None:
        super().__init__(address, _RequestHandler)
        self.gateway = gateway


class _TooLong(ValueError):
    """A request body over API Gateway's 10 MB payload limit."""


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "s3torrent-local"

    def do_GET(self) -> None:
        self._proxy()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _proxy(self) -> None:
        gateway = cast(_Server, self.server).gateway
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        raw_path, _, raw_query = self.path.partition("?")
        try:
            body = self._read_body()
        except ValueError as error:
            self.close_connection = True  # the rest of the body is not read
            status = 413 if isinstance(error, _TooLong) else 400
            message = "Request Too Long" if status == 413 else str(error)
            self._send(*_gateway_error(status, message), request_id=request_id)
            return
        event = build_event(
            method=self.command,
            raw_path=gateway.stage_less(raw_path) or "/",
            raw_query=raw_query,
            headers=list(self.headers.items()),
            body=body,
            stage=gateway.stage,
            source_ip=self.client_address[0],
            request_id=request_id,
            binary_media_types=gateway.binary_media_types,
        )
        status, headers, payload = gateway.invoke(event)
        log.info(  # before answering: the caller may print next, and this line comes first
            "api      %s %s -> %d (%d bytes) %.2f s",
            self.command,
            self.path,
            status,
            len(payload),
            time.monotonic() - started,
        )
        self._send(status, headers, payload, request_id=request_id)

    def _read_body(self) -> bytes:
        """The request body (Content-Length or chunked); ValueError if malformed or too long."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_REQUEST_BYTES:
                    raise _TooLong(total)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        if not length.isdigit():
            raise ValueError(f"bad Content-Length: {length!r}")
        if int(length) > MAX_REQUEST_BYTES:
            raise _TooLong(length)
        return self.rfile.read(int(length))

    def _send(
        self, status: int, headers: list[tuple[str, str]], body: bytes, *, request_id: str
    ) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("x-amzn-RequestId", request_id)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api      " + format, *args)
