"""A small threaded reverse proxy that breaks S3 on purpose, for the reliability tests.

It sits between the service (boto3, `endpoint_url=proxy.url`) and a real S3-compatible
endpoint (moto's server) and forwards every request faithfully: method, path and query as
sent, every end-to-end header (Host kept as signed, Range, If-Match, x-amz-*), the request
body, and the response streamed back chunk by chunk. A seeded, thread-safe `FaultPolicy`
decides per request whether to break it instead, and how:

- ``slowdown``  503 with an S3 ``<Code>SlowDown</Code>`` body (S3's throttling answer)
- ``internal``  500 with ``<Code>InternalError</Code>``
- ``throttle``  429 with ``<Code>SlowDown</Code>`` (what some S3-compatible stores send)
- ``reset``     status and headers (full Content-Length), part of the body, then a TCP RST
                (``SO_LINGER`` 0 close): the client sees ECONNRESET / an incomplete read
- ``slow``      the real response, trickled in small chunks with pauses
- ``stall``     status and headers, then nothing until the client gives up (or the proxy stops)

`BodyHook`s run a callback once a GET has streamed N bytes of its body (to overwrite or
delete the object behind the reader's back). Counters say what was injected, by kind, and
how many TCP connections clients opened (client connections are kept alive; the proxy
opens a new one upstream per request).

Object GETs are recognised however they are signed: in headers (botocore) or in the query
(the direct range transport's presigned URL, whose `X-Amz-*` parameters are no
sub-resource); its If-Match, x-amz-request-payer and x-amz-expected-bucket-owner still
arrive as headers, which is where rules and emulations look.
"""

from __future__ import annotations

import enum
import http.client
import itertools
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",  # the proxy answers 100-continue itself and forwards the whole body
    }
)
CHUNK = 64 * 1024


class FaultKind(enum.StrEnum):
    """Ways the proxy can break one request."""

    SLOWDOWN = "slowdown"
    INTERNAL = "internal"
    THROTTLE = "throttle"
    RESET = "reset"
    SLOW = "slow"
    STALL = "stall"


_ERRORS: dict[FaultKind, tuple[int, str, str]] = {
    FaultKind.SLOWDOWN: (503, "SlowDown", "Please reduce your request rate."),
    FaultKind.INTERNAL: (500, "InternalError", "We encountered an internal error."),
    FaultKind.THROTTLE: (429, "SlowDown", "Please reduce your request rate."),
}


@dataclass(frozen=True)
class RequestInfo:
    """What the policy sees of one request."""

    seq: int
    method: str
    path: str  # raw path as sent (still percent-encoded), without the query
    query: str
    headers: dict[str, str]  # lower-cased names

    @property
    def bucket(self) -> str:
        return unquote(self.path.lstrip("/").split("/", 1)[0])

    @property
    def key(self) -> str:
        parts = self.path.lstrip("/").split("/", 1)
        return unquote(parts[1]) if len(parts) > 1 else ""

    @property
    def range(self) -> str | None:
        return self.headers.get("range")

    @property
    def query_names(self) -> set[str]:
        """The names in the query string (values dropped)."""
        return {unquote(part.split("=", 1)[0]) for part in self.query.split("&") if part}

    @property
    def is_presigned(self) -> bool:
        """Signed in the query (SigV4 `X-Amz-Signature`), as the direct range transport is."""
        return "X-Amz-Signature" in self.query_names

    @property
    def is_object_get(self) -> bool:
        """A GetObject (not a listing, not ?torrent/?acl/... sub-resources), header-signed
        or presigned (the SigV4 query parameters are no sub-resource)."""
        if self.method != "GET" or not self.key:
            return False
        names = {name for name in self.query_names if not name.startswith("X-Amz-")}
        return not names - {"versionId", "partNumber", "x-id"}


@dataclass
class FaultRule:
    """Break a share of the requests it matches, the same way.

    `rate` is the probability per matching request; `limit` caps how many times the rule
    fires (then the fault "clears"); `key` is a regular expression searched in the key.
    By default only object GETs (ranged or not) are eligible.
    """

    kind: FaultKind
    rate: float = 1.0
    key: str | None = None
    methods: frozenset[str] = frozenset({"GET"})
    object_gets_only: bool = True
    ranged_only: bool = False
    limit: int | None = None
    fired: int = 0

    def matches(self, request: RequestInfo) -> bool:
        if request.method not in self.methods:
            return False
        if self.object_gets_only and request.method == "GET" and not request.is_object_get:
            return False
        if self.ranged_only and request.range is None:
            return False
        return self.key is None or re.search(self.key, request.key) is not None


@dataclass
class BodyHook:
    """Call `action` once, when the matching object GETs have streamed `after_bytes` in all.

    Bytes count across every matching GET (ranged reads of one object add up), and the
    action runs on the thread serving the GET that crosses the mark, before it sends more.
    """

    action: Callable[[RequestInfo], None]
    after_bytes: int
    key: str | None = None
    served: int = 0
    fired: bool = False
    done: threading.Event = field(default_factory=threading.Event)  # set once action returned

    def matches(self, request: RequestInfo) -> bool:
        return request.is_object_get and (
            self.key is None or re.search(self.key, request.key) is not None
        )


@dataclass
class Emulation:
    """Answer like S3 where the store behind the proxy (moto) does not: SSE-C objects read
    without their key, Requester Pays buckets read without the header, a wrong expected
    bucket owner. `when` decides per request; the answer is an S3 XML error (no body on HEAD).
    """

    name: str
    when: Callable[[RequestInfo], bool]
    status: int
    code: str
    message: str


@dataclass
class RequestLog:
    """One request the proxy saw and what it did with it."""

    info: RequestInfo
    fault: FaultKind | None
    emulated: str | None = None
    status: int | None = None
    body_bytes_sent: int = 0


class FaultPolicy:
    """Seeded, thread-safe choice of a fault per request, and counts of what was injected."""

    def __init__(
        self,
        rules: Iterable[FaultRule] = (),
        *,
        seed: int = 0,
        reset_fraction: float = 0.5,
        slow_chunk: int = 16 * 1024,
        slow_delay: float = 0.005,
        stall_seconds: float = 60.0,
        max_consecutive: int | None = None,
    ) -> None:
        self.rules = list(rules)
        # A transient fault clears: the same request (method, path, query, Range) is broken
        # at most this many times in a row, so bounded retries must get through.
        self.max_consecutive = max_consecutive
        self._streak: Counter[tuple[str, str, str, str | None]] = Counter()
        self.hooks: list[BodyHook] = []
        self.emulations: list[Emulation] = []
        self.seed = seed
        self.reset_fraction = reset_fraction
        self.slow_chunk = slow_chunk
        self.slow_delay = slow_delay
        self.stall_seconds = stall_seconds
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: Counter[FaultKind] = Counter()
        self.requests: Counter[str] = Counter()
        self.log: list[RequestLog] = []

    def choose(self, request: RequestInfo) -> RequestLog:
        """Decide (and record) what happens to `request`; first matching rule that fires wins."""
        with self._lock:
            self.requests[request.method] += 1
            fault = None
            same = (request.method, request.path, request.query, request.range)
            cleared = (
                self.max_consecutive is not None and self._streak[same] >= self.max_consecutive
            )
            for rule in [] if cleared else self.rules:
                if not rule.matches(request):
                    continue
                if rule.limit is not None and rule.fired >= rule.limit:
                    continue
                # One draw per matching rule, in order: the sequence is a function of the seed.
                if self._random.random() < rule.rate:
                    rule.fired += 1
                    fault = rule.kind
                    self.injected[fault] += 1
                    break
            if fault is None or fault is FaultKind.SLOW:
                self._streak.pop(same, None)  # a slow answer still answers
            else:
                self._streak[same] += 1
            entry = RequestLog(request, fault)
            if fault is None:
                entry.emulated = next((e.name for e in self.emulations if e.when(request)), None)
            self.log.append(entry)
            return entry

    def body_sent(self, request: RequestInfo, size: int) -> list[BodyHook]:
        """Count `size` more body bytes of `request`; return the hooks that fire now."""
        due = []
        with self._lock:
            for hook in self.hooks:
                if hook.fired or not hook.matches(request):
                    continue
                hook.served += size
                if hook.served >= hook.after_bytes:
                    hook.fired = True
                    due.append(hook)
        return due

    def set_rules(self, rules: Iterable[FaultRule]) -> None:
        """Replace the rules (e.g. clear the faults) while the proxy keeps running."""
        with self._lock:
            self.rules = list(rules)

    def reset_counts(self) -> None:
        with self._lock:
            self.injected.clear()
            self.requests.clear()
            self._streak.clear()
            self.log.clear()

    @property
    def total_injected(self) -> int:
        with self._lock:
            return sum(self.injected.values())

    def summary(self) -> dict[str, int]:
        """Faults injected by kind, plus requests by method, for test output and docs."""
        with self._lock:
            out = {f"fault_{kind.value}": n for kind, n in sorted(self.injected.items())}
            out.update({f"requests_{m}": n for m, n in sorted(self.requests.items())})
            return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus the
    # client's delayed ACK add ~40 ms to every response.
    disable_nagle_algorithm = True
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the policy keeps a structured log

    def do_GET(self) -> None:
        self._forward()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    # --- request side -----------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self) -> None:
        proxy = self.server.owner
        split = urlsplit(self.path)
        info = RequestInfo(
            seq=next(proxy._seq),
            method=self.command,
            path=split.path,
            query=split.query,
            headers={name.lower(): value for name, value in self.headers.items()},
        )
        body = self._read_body()
        entry = proxy.policy.choose(info)
        if entry.fault in _ERRORS:
            self._send_error(entry, *_ERRORS[entry.fault])
            return
        if entry.emulated is not None:
            rule = next(e for e in proxy.policy.emulations if e.name == entry.emulated)
            self._send_error(entry, rule.status, rule.code, rule.message)
            return
        try:
            upstream = http.client.HTTPConnection(
                proxy.upstream_host, proxy.upstream_port, timeout=proxy.upstream_timeout
            )
            upstream.connect()
            assert upstream.sock is not None
            upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    upstream.putheader(name, value)
            if body or self.command in {"PUT", "POST"}:
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body or None)
            response = upstream.getresponse()
        except OSError as error:
            entry.status = 502
            self._send_plain(502, f"upstream unreachable: {error}".encode())
            return
        try:
            self._relay(entry, response)
        finally:
            upstream.close()

    # --- response side ----------------------------------------------------------------

    def _send_error(self, entry: RequestLog, status: int, code: str, message: str) -> None:
        entry.status = status
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>fault-{entry.info.seq}</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-request-id", f"fault-{entry.info.seq}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _relay(self, entry: RequestLog, response: http.client.HTTPResponse) -> None:
        proxy = self.server.owner
        policy = proxy.policy
        entry.status = response.status
        self.send_response_only(response.status, response.reason)
        length_header = response.getheader("content-length")
        has_body = self.command != "HEAD" and response.status not in (204, 304)
        chunked = has_body and length_header is None
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if not has_body:
            return
        total = int(length_header) if length_header is not None else None
        fault = entry.fault
        hooked = response.status in (200, 206) and any(not h.fired for h in policy.hooks)
        if fault is FaultKind.STALL:
            self._stall(entry)
            return
        cut = None
        if fault is FaultKind.RESET:
            known = total if total is not None else CHUNK
            cut = max(1, min(known - 1, int(known * policy.reset_fraction))) if known > 1 else 0
        chunk_size = policy.slow_chunk if fault is FaultKind.SLOW else CHUNK
        while True:
            want = chunk_size
            if cut is not None:
                want = min(want, cut - entry.body_bytes_sent)
            if hooked:
                want = min(want, 16 * 1024)  # fine steps, so a hook fires close to its mark
            data = response.read(want) if want > 0 else b""
            if data:
                self._write(data, chunked)
                entry.body_bytes_sent += len(data)
                if hooked:
                    for hook in policy.body_sent(entry.info, len(data)):
                        try:
                            hook.action(entry.info)
                        finally:
                            hook.done.set()
            if cut is not None and entry.body_bytes_sent >= cut:
                self._reset()
                return
            if not data:
                break
            if fault is FaultKind.SLOW:
                time.sleep(policy.slow_delay)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _write(self, data: bytes, chunked: bool) -> None:
        if chunked:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        else:
            self.wfile.write(data)

    def _stall(self, entry: RequestLog) -> None:
        """Headers are out; now say nothing until the client gives up or the proxy stops."""
        stop = self.server.owner._stopping
        deadline = time.monotonic() + self.server.owner.policy.stall_seconds
        self.connection.settimeout(0.05)
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if self.connection.recv(1, socket.MSG_PEEK) == b"":
                    break  # the client hung up (its read timeout fired)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                break
            time.sleep(0.05)
        self._reset()

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER on, timeout 0, then close)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # rfile holds a reference to the socket: the fd only closes (and RSTs) once both go.
        self.rfile.close()
        self.connection.close()


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, owner: FaultProxy) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.owner._accepted_lock:
            self.owner.connections_accepted += 1  # one per TCP connection a client opened
        super().process_request(request, client_address)

    def handle_error(self, request: object, client_address: object) -> None:
        # Broken pipes from clients that gave up (timeouts, resets we caused) are expected.
        self.owner.handler_errors += 1


@dataclass
class FaultProxy:
    """The proxy: `start()` it, point boto3 at `url`, `stop()` it (or use it as a context)."""

    upstream: str
    policy: FaultPolicy = field(default_factory=FaultPolicy)
    upstream_timeout: float = 60.0
    handler_errors: int = 0
    connections_accepted: int = 0  # TCP connections clients opened to the proxy

    def __post_init__(self) -> None:
        split = urlsplit(self.upstream)
        if split.scheme != "http" or not split.hostname:
            raise ValueError(f"upstream must be an http:// URL: {self.upstream!r}")
        self.upstream_host = split.hostname
        self.upstream_port = split.port or 80
        self._seq = itertools.count(1)
        self._stopping = threading.Event()
        self._accepted_lock = threading.Lock()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "proxy not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._server = _ProxyServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
