"""Ranged GETs of one object on a presigned URL, straight over http.client: the fast path.

Why not botocore for every range: building, signing and parsing one request costs about
2 ms of CPU, and urllib3's `readinto` reads into a temporary `bytes` and copies it. Both
are small next to S3's latency but not next to hashing at 1.5 GB/s per core: on the
2 GiB bench they were a third of our CPU time. So botocore signs one GET URL per object
(SigV4 query auth; If-Match, x-amz-request-payer and x-amz-expected-bucket-owner are
signed headers, so the URL cannot be used unpinned) and every range is sent on that URL
with only `Range` added, over keep-alive `http.client` connections, whose
`HTTPResponse.readinto` lets the kernel copy the socket's bytes straight into the
reader's buffer. Error answers are parsed into botocore's shape and translated by
s3_errors like any other S3 error.

Used for every endpoint unless a proxy is configured for it or `read_transport` is `sdk`
(wiring.py); moto's in-process mock intercepts botocore only, so unit tests use `sdk`.
"""

from __future__ import annotations

import http.client
import re
import select
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from s3torrent.errors import EndpointError, TransientS3Error
from s3torrent.s3.errors import translate_read_error, transport_error

ERROR_BODY_LIMIT = 64 * 1024  # an S3 error document is well under 1 KiB
_XML_FIELD = re.compile(rb"<(Code|Message)>([^<]*)</\1>")


class HttpConnections:
    """Idle keep-alive connections per host, shared by every object one S3Objects reads.

    A warm Lambda or a backfill reuses them across objects (no new TCP or TLS handshake
    per object); at most `max_idle` are kept, the rest are closed when returned.
    """

    def __init__(
        self, *, timeout: float, ssl_context: ssl.SSLContext | None = None, max_idle: int = 64
    ) -> None:
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self.requests_sent = 0  # GETs sent through this pool (botocore's counters miss them)

    def get(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        """An idle connection to that host, or a new one (connected on first request)."""
        while True:
            with self._lock:
                idle = self._idle.get((scheme, host, port))
                connection = idle.pop() if idle else None
            if connection is None:
                break
            if _still_open(connection):
                return connection
            connection.close()  # the server closed it while it sat idle
        if scheme == "https":
            context = self._ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=context)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def count_request(self) -> None:
        """One more request sent (for the CLI's cost report)."""
        with self._lock:
            self.requests_sent += 1

    def put(self, connection: http.client.HTTPConnection) -> None:
        """Return a connection whose last answer was read to its end."""
        scheme = "https" if isinstance(connection, http.client.HTTPSConnection) else "http"
        key = (scheme, connection.host, connection.port)
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if sum(len(conns) for conns in self._idle.values()) < self._max_idle:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """False when an idle keep-alive socket has been closed (or written to) by the server.

    An idle socket that polls readable holds either EOF or bytes nobody asked for; either
    way it cannot carry the next request (urllib3 checks its pooled sockets the same way).
    """
    sock = connection.sock
    if sock is None:
        return True  # not connected yet: http.client connects on the next request
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class DirectRanges:
    """A RangeSource for one object version: ranged GETs on its presigned URL."""

    # Presigned for an hour, signed anew after ten minutes: a long read never holds an
    # expired URL, and a 403 "Request has expired" re-signs once more and retries.
    EXPIRES_IN = 3600
    RESIGN_AFTER = 600.0

    def __init__(
        self,
        presign: Callable[[int], str],
        signed_headers: Mapping[str, str],
        connections: HttpConnections,
        *,
        bucket: str,
        key: str,
    ) -> None:
        self._presign = presign
        self._signed_headers = dict(signed_headers)
        self._connections = connections
        self._bucket = bucket
        self._key = key
        self._doing = f"GetObject s3://{bucket}/{key}"
        self._lock = threading.Lock()
        self._url: tuple[str, str, int, str] | None = None
        self._signed_at = 0.0

    def open_range(self, start: int, end: int) -> _DirectBody:
        scheme, host, port, target = self._target()
        connection = self._connections.get(scheme, host, port)
        headers = {**self._signed_headers, "Range": f"bytes={start}-{end}"}
        self._connections.count_request()
        try:
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise transport_error(self._doing, error) from error
        expected = end - start + 1
        if response.status in (200, 206):
            length = response.length
            # 200 is the whole object: fine only when the range asked for exactly that.
            whole = response.status == 200
            if (whole and (start != 0 or length != expected)) or (length or 0) > expected:
                connection.close()
                raise EndpointError(
                    f"{self._doing}: the endpoint ignored the Range header"
                    f" (HTTP {response.status}, {length} bytes for bytes={start}-{end})"
                )
            return _DirectBody(response, connection, self._connections, self._doing)
        raise self._error_answer(response, connection)

    def _target(self) -> tuple[str, str, int, str]:
        with self._lock:
            if self._url is None or time.monotonic() - self._signed_at > self.RESIGN_AFTER:
                parts = urlsplit(self._presign(self.EXPIRES_IN))
                scheme = parts.scheme or "https"
                port = parts.port or (443 if scheme == "https" else 80)
                target = f"{parts.path or '/'}?{parts.query}" if parts.query else parts.path
                self._url = (scheme, parts.hostname or "", port, target)
                self._signed_at = time.monotonic()
            return self._url

    def _error_answer(
        self, response: http.client.HTTPResponse, connection: http.client.HTTPConnection
    ) -> BaseException:
        try:
            body = response.read(ERROR_BODY_LIMIT)
        except (OSError, http.client.HTTPException):
            body = b""
        finally:
            connection.close()  # the rest of an error answer is not worth draining
        fields = {
            name.decode(): value.decode("utf-8", "replace")
            for name, value in _XML_FIELD.findall(body)
        }
        status = response.status
        error = ClientError(
            {
                "Error": {
                    "Code": fields.get("Code") or str(status),
                    "Message": fields.get("Message", ""),
                },
                "ResponseMetadata": {
                    "HTTPStatusCode": status,
                    "HTTPHeaders": {name.lower(): value for name, value in response.getheaders()},
                },
            },
            "GetObject",
        )
        domain = translate_read_error(error, bucket=self._bucket, key=self._key)
        if status == 403 and "expired" in fields.get("Message", "").lower():
            with self._lock:
                self._url = None  # sign a new URL for the retry
            return TransientS3Error(f"{self._doing}: the presigned URL expired; signing anew")
        return domain


class _DirectBody:
    """A RangeBody on an http.client answer; the connection goes back to the pool at its end."""

    __slots__ = ("_connection", "_connections", "_doing", "_response")

    def __init__(
        self,
        response: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        connections: HttpConnections,
        doing: str,
    ) -> None:
        self._response = response
        self._connection = connection
        self._connections = connections
        self._doing = doing

    def readinto(self, buffer: memoryview) -> int:
        try:
            return self._response.readinto(buffer)
        except (OSError, http.client.HTTPException) as error:
            raise transport_error(self._doing, error) from error

    def close(self) -> None:
        response = self._response
        # http.client's readinto returns 0 (and closes) when the server stops short of
        # Content-Length: only a body read to its announced end leaves a reusable socket.
        if response.isclosed() and response.length == 0 and not response.will_close:
            self._connections.put(self._connection)
        else:
            self._connection.close()
