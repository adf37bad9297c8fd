"""The deployed stack's JSON API, called from the CLI with the caller's own AWS credentials.

API Gateway's IAM auth wants every request SigV4-signed for the `execute-api` service (the
AWS CLI and boto3's S3 client sign for `s3`, which it rejects), so requests are signed here
with botocore's signer and sent with urllib, which honours the usual proxy variables.
Imported only by the commands that talk to the API (`create --api`, `status`): botocore is
imported when a client is made, not before.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any, NamedTuple
from urllib.parse import quote

from s3torrent import __version__
from s3torrent.cli.command import PROG, CliError, UsageError
from s3torrent.cli.output import one_line

SERVICE = "execute-api"
REQUEST_SECONDS = 60.0  # over API Gateway's 29 s integration timeout: its 504 is the answer
# API Gateway names its region in the default hostname; a custom domain does not.
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
# Worth asking again: throttled, or the gateway or a service behind it briefly failing.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_ERROR_PREVIEW_CHARS = 200


class ApiError(CliError):
    """The API answered 4xx or 5xx; says what was asked, the API's message, code and status."""

    def __init__(
        self, what: str, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.retry_after = retry_after
        super().__init__(f"{what}: {message} ({code}, HTTP {status})")

    @property
    def retryable(self) -> bool:
        """True when asking again later may succeed."""
        return self.status in RETRYABLE_STATUSES


class ApiUnreachable(CliError):
    """No HTTP answer at all: refused, reset, timed out, DNS."""

    retryable = True


class Answer(NamedTuple):
    """One 2xx answer: its status, its JSON body and the Retry-After it asked for."""

    status: int
    body: dict[str, Any]
    retry_after: float | None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # The JSON routes never redirect; a redirect elsewhere would carry a signature made for
    # this URL, so it is an answer (an error) rather than followed.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class ApiClient:
    """Signed JSON requests to one deployed API (the stage's base URL, e.g. `.../prod`)."""

    def __init__(self, base_url: str, region: str, credentials: Any) -> None:
        self.base_url = base_url
        self.region = region
        self._credentials = credentials  # botocore Credentials (refreshable ones refresh)
        self._opener = urllib.request.build_opener(_NoRedirect)

    def get(self, path: str) -> Answer:
        """GET `path` (already URL-quoted, from the stage's root)."""
        return self._send("GET", path, None)

    def post(self, path: str, payload: dict[str, Any]) -> Answer:
        """POST `payload` as JSON to `path`."""
        return self._send("POST", path, json.dumps(payload).encode())

    def _send(self, method: str, path: str, body: bytes | None) -> Answer:
        from botocore.auth import SigV4Auth  # here: `--help` and `show` never load botocore
        from botocore.awsrequest import AWSRequest

        url = self.base_url + path
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        # Signed on the exact URL, headers and body urllib then sends; User-Agent and the
        # headers urllib adds (Host matches the URL's, Connection) are outside the signature.
        signed = AWSRequest(method=method, url=url, data=body, headers=headers)
        frozen = self._credentials.get_frozen_credentials()  # one consistent key, secret, token
        SigV4Auth(frozen, SERVICE, self.region).add_auth(signed)
        request = urllib.request.Request(url, data=body, method=method)
        for name, value in signed.headers.items():
            request.add_header(name, value)
        request.add_header("User-Agent", f"{PROG}/{__version__}")
        what = f"{method} {path}"
        try:
            with self._opener.open(request, timeout=REQUEST_SECONDS) as response:
                return Answer(
                    response.status,
                    _json_object(what, response.read()),
                    _retry_after(response.headers.get("Retry-After")),
                )
        except urllib.error.HTTPError as error:
            raise _api_error(what, error.code, error.read(), error.headers) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise ApiUnreachable(f"{what}: no answer from {self.base_url}: {reason}") from error


def connect(api_url: str, region: str | None, session: Any) -> ApiClient:
    """A client of the API at `api_url`, signing with the session's credentials.

    The region is the one asked for, else the one in an execute-api hostname (signing for
    another region is refused), else the session's.
    """
    if not api_url.startswith(("https://", "http://")):
        raise UsageError(f"--api wants the stack's API URL (https://…/prod), not {api_url!r}")
    base_url = api_url.rstrip("/")
    host = base_url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
    in_host = _REGION_IN_HOST.search(host)
    region = region or (in_host.group(1) if in_host else None) or session.region_name
    credentials = session.get_credentials()
    if credentials is None:
        raise CliError(
            "no AWS credentials found: the API takes only SigV4-signed requests"
            " (configure the AWS CLI, or set AWS_PROFILE or AWS_ACCESS_KEY_ID)"
        )
    return ApiClient(base_url, region or "us-east-1", credentials)


def torrent_path(bucket: str, key: str) -> str:
    """`/torrents/<bucket>/<key>`, each part URL-quoted (the key keeps its slashes)."""
    return f"/torrents/{quote(bucket, safe='')}/{quote(key, safe='/')}"


def _json_object(what: str, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as error:
        raise CliError(f"{what}: the answer is not JSON: {_preview(data)!r}") from error
    if not isinstance(value, dict):
        raise CliError(f"{what}: the answer is not a JSON object: {_preview(data)!r}")
    return value


def _api_error(what: str, status: int, data: bytes, headers: Any) -> ApiError:
    """The error an answer of 4xx/5xx stands for, in the API's own words.

    The handler answers `{"error": {"code", "message"}}`; API Gateway itself (IAM denials,
    throttling, a wrong path) answers `{"message": ...}`.
    """
    code, message = "HTTPError", _preview(data) or f"HTTP {status}"
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        detail: dict[str, Any] = error if isinstance(error, dict) else body
        code = str(detail.get("code") or ("GatewayError" if "message" in body else code))
        message = str(detail.get("message") or message)
    if status == 403 and message == "Missing Authentication Token":
        # API Gateway's answer for a path it has no route for, as well as for no signature.
        message += " (no such route: does --api end with the stage, e.g. …/prod?)"
    retry = _retry_after(headers.get("Retry-After") if headers is not None else None)
    return ApiError(what, status, code, one_line(message), retry)


def _retry_after(value: str | None) -> float | None:
    # Seconds only: the API sends no HTTP dates, and a wrong guess just polls at the usual pace.
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _preview(data: bytes) -> str:
    return one_line(data[:_ERROR_PREVIEW_CHARS].decode("utf-8", "replace"))
