"""What S3 failures mean in domain terms: the one place S3 error codes and statuses are read.

Both ways of talking to S3 end here: botocore's errors (the control calls and the SDK range
reads) and the bare HTTP answers of the direct range reads (`direct.DirectRanges`), which
are parsed into the same shape as a botocore ClientError first.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from xml.sax.saxutils import escape

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)
from botocore.parsers import ResponseParserError

from s3torrent.errors import (
    AccessDenied,
    BucketNotFound,
    EndpointError,
    InvalidInput,
    ObjectChanged,
    ObjectNotFound,
    S3TorrentError,
    TransientS3Error,
    UnsupportedObject,
)
from s3torrent.model import SkipReason

_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchVersion", "NotFound", "404"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "AccountProblem",
        "InvalidObjectOwner",
    }
)
_CHANGED = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_TRANSIENT = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "ExpiredToken",
        "RequestExpired",
        "RequestTimeTooSkewed",
        "TokenRefreshRequired",
        "OperationAborted",
        "429",
    }
)
_TRANSIENT_EXCEPTIONS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
    ResponseStreamingError,
    IncompleteReadError,
)


def translate_error(
    error: BaseException, *, bucket: str, key: str = "", operation: str = ""
) -> BaseException:
    """The domain error for a botocore failure (the one place ClientError codes are read).

    Anything unexpected is returned unchanged, so it propagates as it is.
    """
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    doing = f"{operation} {where}" if operation else where
    if isinstance(error, S3TorrentError):
        return error
    if isinstance(error, ClientError):
        return _translate_client_error(error, bucket=bucket, key=key, doing=doing)
    if isinstance(error, _TRANSIENT_EXCEPTIONS):
        return TransientS3Error(f"{doing}: {error}")
    if isinstance(error, SSLError):
        return EndpointError(f"{doing}: TLS failed: {error}")
    if isinstance(error, ResponseParserError):
        return EndpointError(f"{doing}: the endpoint's answer is not an S3 response")
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return AccessDenied(f"{doing}: no usable AWS credentials: {error}")
    if isinstance(error, ParamValidationError):
        return InvalidInput(f"{doing}: {error}")
    if isinstance(error, BotoCoreError):
        return TransientS3Error(f"{doing}: {error}")
    return error


def _translate_client_error(
    error: ClientError, *, bucket: str, key: str, doing: str
) -> S3TorrentError:
    details = error.response.get("Error", {})
    code = str(details.get("Code") or "")
    message = str(details.get("Message") or "").strip()
    meta = error.response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode") or 0)
    headers: Mapping[str, str] = meta.get("HTTPHeaders") or {}
    said = f"{code}: {message}" if message and message != code else code or str(status)
    if _looks_like_not_s3(code, headers):
        kind = headers.get("content-type", "no content type")
        server = headers.get("server")
        said = (
            f"{doing}: the endpoint does not answer like S3 (HTTP {status}, {kind}"
            f"{', server ' + server if server else ''})"
        )
        # A 5xx page is what a proxy or load balancer in front of a store sends while the
        # store is away (502, 503, 504), and what a busy store sometimes answers: worth
        # another try. Anything else is a web server that is not S3 (a wrong port or URL).
        if status >= 500:
            return TransientS3Error(said)
        return EndpointError(said)
    # Codes first (S3 answers InvalidObjectState with 403, RequestTimeout with 400), then
    # the status alone for answers without an error document (HEAD).
    if code == "NoSuchBucket":
        return BucketNotFound(f"{doing}: bucket {bucket!r} does not exist")
    if code == "InvalidObjectState":
        return UnsupportedObject(bucket, key, SkipReason.ARCHIVED)
    if code in _TRANSIENT:
        return TransientS3Error(f"{doing}: {said} (HTTP {status})")
    if code in _NOT_FOUND or status == 404:
        return ObjectNotFound(f"{doing}: no such object ({said})")
    if code in _DENIED or status == 403:
        return AccessDenied(f"{doing}: access denied ({said})")
    if code in _CHANGED or status == 412:
        return ObjectChanged(f"{doing}: the object changed while it was being read ({said})")
    if status >= 500 or status == 429:
        return TransientS3Error(f"{doing}: {said} (HTTP {status})")
    if code == "PermanentRedirect" or status in (301, 307):
        return EndpointError(f"{doing}: the bucket lives in another region or endpoint ({said})")
    return InvalidInput(f"{doing}: S3 refused the request ({said}, HTTP {status})")


def _looks_like_not_s3(code: str, headers: Mapping[str, str]) -> bool:
    """True for an error answer no S3-compatible store would give.

    botocore uses the bare status as the code when it finds no S3 error document (always
    for HEAD). S3 and the stores that copy it mark every answer with an `x-amz*` request
    id (x-amz-request-id, x-amzn-requestid) or at least answer XML; an HTML page with
    neither comes from a web server, proxy or wrong port.
    """
    if not code.isdigit():
        return False  # botocore parsed an S3 error document
    if any(name.lower().startswith(("x-amz", "x-goog")) for name in headers):
        return False
    kind = headers.get("content-type", "").lower()
    return "xml" not in kind


def is_retryable(error: BaseException) -> bool:
    """What the range reader may retry: our transient errors (the transports translated them)."""
    return isinstance(error, S3TorrentError) and error.retryable


def translate_read_error(error: BaseException, *, bucket: str, key: str) -> BaseException:
    """`translate_error` for a ranged GET of a source being hashed, by either transport.

    A source deleted while we read it has *changed*, not gone missing: the deletion's own
    event settles its torrent.
    """
    domain = translate_error(error, bucket=bucket, key=key, operation="GetObject")
    if isinstance(domain, ObjectNotFound):
        return ObjectChanged(f"GetObject s3://{bucket}/{key}: deleted while being read")
    return domain


def transport_error(doing: str, error: BaseException) -> BaseException:
    """A failed connection or read: transient, but for a certificate the endpoint can't fix."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return EndpointError(f"{doing}: TLS certificate rejected: {error}")
    return TransientS3Error(f"{doing}: {type(error).__name__}: {error}")


def error_document(code: str, message: str, resource: str, request_id: str) -> str:
    """An S3 `<Error>` body, as the S3-compatible `?torrent` route answers its errors."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{escape(request_id)}</RequestId>"
        "</Error>"
    )
