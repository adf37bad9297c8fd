"""The direct range transport (s3.direct.DirectRanges) over real HTTP.

Against moto's server (through the fault proxy where TCP connections are counted, since
moto's own server closes every connection): ranges carry the right bytes, every range is
pinned to the ETag HeadObject saw, a deleted object is a change, one URL is presigned per
object, and keep-alive connections serve many ranges and objects.

Against `FakeS3`, a tiny http.server on loopback that answers what each test scripts: the
S3 error documents and broken bodies moto never sends, each translated into the domain
error the reader acts on (retry, re-sign, or give up at once).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from s3torrent.errors import (
    AccessDenied,
    EndpointError,
    ObjectChanged,
    S3TorrentError,
    TransientS3Error,
)
from s3torrent.model import ObjectRef, TransferCounters
from s3torrent.s3.direct import DirectRanges, HttpConnections
from s3torrent.s3.objects import S3Objects, is_retryable
from s3torrent.s3.reader import RangeBody, RangeSource, ReaderConfig, read_parts
from s3torrent.settings import Settings
from s3torrent.torrent.hashing import MetaVersion, PieceHashBuilder, PieceHashes, hash_bytes
from s3torrent.wiring import build_objects
from tests.support.faults.proxy import Emulation, FaultPolicy, FaultProxy, RequestInfo
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

KiB = 1024
PIECE = 16 * KiB
_rng = random.Random(5)
DATA = _rng.randbytes(300_001)  # 19 pieces of 16 KiB, the last one short


def fast(**values: Any) -> ReaderConfig:
    """A reader config whose retries wait next to nothing (the suite stays fast)."""
    return ReaderConfig(backoff_base=0.001, backoff_max=0.01, **values)


def read_body(body: RangeBody, step: int = 7_000) -> bytes:
    """Everything a body holds, read the way the reader reads (readinto), then closed."""
    out = bytearray()
    buffer = memoryview(bytearray(step))
    try:
        while count := body.readinto(buffer):
            out += buffer[:count]
    finally:
        body.close()
    return bytes(out)


def hash_source(
    source: RangeSource, size: int, config: ReaderConfig, counters: TransferCounters
) -> PieceHashes:
    """What the service does with a source: read_parts into a PieceHashBuilder."""
    builder = PieceHashBuilder(size, PIECE, MetaVersion.HYBRID)
    read_parts(source, size, builder.part, config, counters, align=PIECE, is_retryable=is_retryable)
    return builder.finish()


# --- against moto's server ---------------------------------------------------------------


def direct_objects(endpoint: str, bucket: str, **values: Any) -> S3Objects:
    settings = Settings.from_mapping(
        {
            "buckets": [{"name": bucket}],
            "endpoint_url": endpoint,
            "read_part_bytes": 64 * KiB,
            **values,
        }
    )
    objects = build_objects(settings)
    assert objects.connections is not None, "build_objects chose botocore for the ranges"
    return objects


def test_ranges_return_the_bytes_asked_for(s3_client: Any, bucket: str, moto_endpoint: str) -> None:
    s3_client.put_object(Bucket=bucket, Key="r.bin", Body=DATA)
    objects = direct_objects(moto_endpoint, bucket)
    source = objects.range_source(objects.head_object(ObjectRef(bucket, "r.bin")))
    assert isinstance(source, DirectRanges)
    last = len(DATA) - 1
    for start, end in [(0, 0), (0, last), (1, 65_536), (last - 1, last), (123_456, 200_000)]:
        assert read_body(source.open_range(start, end)) == DATA[start : end + 1], (start, end)


@pytest.mark.parametrize("versioned", [False, True], ids=["plain", "versioned"])
def test_every_range_is_pinned_to_the_etag_head_saw(
    s3_client: Any, bucket: str, moto_endpoint: str, versioned: bool
) -> None:
    if versioned:
        s3_client.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
        )
    s3_client.put_object(Bucket=bucket, Key="p.bin", Body=DATA)
    objects = direct_objects(moto_endpoint, bucket)
    info = objects.head_object(ObjectRef(bucket, "p.bin"))
    source = objects.range_source(info)
    assert read_body(source.open_range(0, 999)) == DATA[:1000]

    s3_client.put_object(Bucket=bucket, Key="p.bin", Body=DATA[::-1])

    if versioned:
        # The URL names the version HeadObject saw: its bytes, and only its, are still read.
        assert info.version_id
        assert read_body(source.open_range(1000, 1999)) == DATA[1000:2000]
    else:
        with pytest.raises(ObjectChanged):
            source.open_range(1000, 1999)


def test_an_object_deleted_while_read_is_a_change(
    s3_client: Any, bucket: str, moto_endpoint: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key="d.bin", Body=DATA)
    objects = direct_objects(moto_endpoint, bucket)
    source = objects.range_source(objects.head_object(ObjectRef(bucket, "d.bin")))
    assert read_body(source.open_range(0, 99)) == DATA[:100]

    s3_client.delete_object(Bucket=bucket, Key="d.bin")

    with pytest.raises(ObjectChanged, match="deleted while being read"):
        source.open_range(100, 199)


@pytest.fixture
def keep_alive_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """moto behind the fault proxy with no faults: moto's own server closes every
    connection after one answer, the proxy keeps them alive (and counts them)."""
    proxy = FaultProxy(moto_endpoint, FaultPolicy()).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_one_url_per_object_and_keep_alive_connections_across_ranges_and_objects(
    keep_alive_proxy: FaultProxy,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fault_proxy = keep_alive_proxy
    sizes = {"one.bin": len(DATA), "two.bin": 200_000}
    for key, size in sizes.items():
        s3_client.put_object(Bucket=bucket, Key=key, Body=DATA[:size])
    window = 2  # connections per object at most: far fewer than the ranges read
    objects = direct_objects(fault_proxy.url, bucket, read_window=window)
    presigned: list[str] = []
    presign = objects.data_client.generate_presigned_url

    def counting_presign(*args: Any, **kwargs: Any) -> str:
        presigned.append(kwargs["Params"]["Key"])
        url: str = presign(*args, **kwargs)
        return url

    monkeypatch.setattr(objects.data_client, "generate_presigned_url", counting_presign)
    infos = {key: objects.head_object(ObjectRef(bucket, key)) for key in sizes}
    fault_proxy.policy.reset_counts()
    accepted_before = fault_proxy.connections_accepted

    for info in infos.values():
        hashes = hash_source(
            objects.range_source(info), info.size, objects.reader, TransferCounters()
        )
        assert hashes == hash_bytes(DATA[: info.size], PIECE, MetaVersion.HYBRID)

    gets = [entry.info for entry in fault_proxy.policy.log]
    parts = sum(-(-size // (64 * KiB)) for size in sizes.values())
    assert len(gets) == parts == 9
    assert all(info.is_presigned and info.range for info in gets)
    assert presigned == list(sizes)  # once per object, not per range
    assert len({info.query for info in gets}) == len(sizes)  # every range on its object's URL
    opened = fault_proxy.connections_accepted - accepted_before
    assert 1 <= opened <= window, f"{opened} connections for {parts} GETs"


OWNER = "123456789012"  # moto's account


def test_requester_pays_and_expected_owner_reach_the_store_with_every_range(
    keep_alive_proxy: FaultProxy, s3_client: Any, bucket: str
) -> None:
    """moto enforces neither: the proxy refuses as S3 would (tests/reliability/test_bad_input.py
    does the same for the API), and must never have to for the ranges of a paid, owned ref."""
    proxy = keep_alive_proxy

    def unpaid(info: RequestInfo) -> bool:
        return info.headers.get("x-amz-request-payer") != "requester"

    def wrong_owner(info: RequestInfo) -> bool:
        return info.headers.get("x-amz-expected-bucket-owner", OWNER) != OWNER

    proxy.policy.emulations += [
        Emulation("requester-pays", unpaid, 403, "AccessDenied", "Access Denied"),
        Emulation("owner", wrong_owner, 403, "AccessDenied", "Access Denied"),
    ]
    s3_client.put_object(Bucket=bucket, Key="rp.bin", Body=DATA)
    objects = direct_objects(proxy.url, bucket)
    info = objects.head_object(
        ObjectRef(bucket, "rp.bin", request_payer=True, expected_bucket_owner=OWNER)
    )
    proxy.policy.reset_counts()

    hashes = hash_source(objects.range_source(info), info.size, objects.reader, TransferCounters())

    assert hashes == hash_bytes(DATA, PIECE, MetaVersion.HYBRID)
    ranged = [entry for entry in proxy.policy.log if entry.info.range]
    assert len(ranged) == 5 and all(entry.info.is_presigned for entry in ranged)
    assert [entry.emulated for entry in ranged] == [None] * 5
    signed = ranged[0].info.query.split("X-Amz-SignedHeaders=", 1)[1].split("&", 1)[0]
    assert signed.lower().split("%3b") == [
        "host",
        "if-match",
        "x-amz-expected-bucket-owner",
        "x-amz-request-payer",
    ]
    # The same object read as a ref without them is refused, as S3 refuses it.
    for ref in (
        ObjectRef(bucket, "rp.bin", expected_bucket_owner=OWNER),
        ObjectRef(bucket, "rp.bin", request_payer=True, expected_bucket_owner="111122223333"),
    ):
        source = objects.range_source(dataclasses.replace(info, ref=ref))
        with pytest.raises(AccessDenied):
            source.open_range(0, 99)


# --- against a tiny fake S3 -------------------------------------------------------------


@dataclass
class Seen:
    """One request FakeS3 received."""

    number: int
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    start: int
    end: int


Answer = Callable[["_FakeHandler", Seen], None]


class FakeS3(ThreadingHTTPServer):
    """Serves DATA as ranged 206 answers (keep-alive), unless `answer` picks another answer.

    `answer(seen)` returns the answer for a request, or None for the correct one; `release`
    ends every answer that is holding its connection open (set at teardown).
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, data: bytes) -> None:
        super().__init__(("127.0.0.1", free_port()), _FakeHandler)
        self.data = data
        self.answer: Callable[[Seen], Answer | None] = lambda seen: None
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/bkt/obj"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up on a held answer is what some tests do

    def once_per_part(self, answer: Answer) -> Callable[[Seen], Answer | None]:
        """A plan: `answer` the first request for each part (known by its last byte, which
        a retry from the middle of the part shares), then serve correctly."""
        ends: set[int] = set()

        def plan(seen: Seen) -> Answer | None:
            with self.lock:
                first = seen.end not in ends
                ends.add(seen.end)
            return answer if first else None

        return plan


class _FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: FakeS3

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        spec = self.headers.get("Range", "bytes=0-").removeprefix("bytes=")
        first, _, last = spec.partition("-")
        with self.server.lock:
            seen = Seen(
                number=len(self.server.seen) + 1,
                path=split.path,
                query=parse_qs(split.query),
                headers={name.lower(): value for name, value in self.headers.items()},
                start=int(first),
                end=int(last) if last else len(self.server.data) - 1,
            )
            self.server.seen.append(seen)
        (self.server.answer(seen) or serve)(self, seen)

    # -- building blocks of answers --

    def head(
        self, status: int, length: int, kind: str = "binary/octet-stream", **extra: str
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.send_header("x-amz-request-id", "FAKE0001")
        for name, value in extra.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()

    def hold(self) -> None:
        """Say nothing more until the client hangs up or the test ends, then close."""
        self.wfile.flush()
        self.server.release.wait(5)
        self.close_connection = True


def serve(handler: _FakeHandler, seen: Seen) -> None:
    body = handler.server.data[seen.start : seen.end + 1]
    total = len(handler.server.data)
    handler.head(206, len(body), Content_Range=f"bytes {seen.start}-{seen.end}/{total}")
    handler.wfile.write(body)


def s3_error(status: int, code: str, message: str) -> Answer:
    def answer(handler: _FakeHandler, seen: Seen) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>FAKE0001</RequestId></Error>"
        ).encode()
        handler.head(status, len(body), "application/xml")
        handler.wfile.write(body)

    return answer


def html_502(handler: _FakeHandler, seen: Seen) -> None:
    body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    handler.send_response(502)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Server", "nginx")
    handler.end_headers()
    handler.wfile.write(body)


def whole_object_200(handler: _FakeHandler, seen: Seen) -> None:
    data = handler.server.data
    handler.head(200, len(data), ETag='"fake"')
    handler.wfile.write(data)


def long_206(handler: _FakeHandler, seen: Seen) -> None:
    body = handler.server.data[seen.start : seen.end + 2]  # one byte more than asked for
    handler.head(206, len(body))
    handler.wfile.write(body)


def cut_then_close(handler: _FakeHandler, seen: Seen) -> None:
    """The full Content-Length, half the bytes, then the connection closes."""
    body = handler.server.data[seen.start : seen.end + 1]
    handler.head(206, len(body))
    handler.wfile.write(body[: len(body) // 2])
    handler.close_connection = True


def short_length(handler: _FakeHandler, seen: Seen) -> None:
    """A well-formed answer with fewer bytes than asked for (Content-Length says so)."""
    body = handler.server.data[seen.start : seen.end + 1][: (seen.end - seen.start + 1) // 2]
    handler.head(206, len(body))
    handler.wfile.write(body)


def stall_mid_body(handler: _FakeHandler, seen: Seen) -> None:
    body = handler.server.data[seen.start : seen.end + 1]
    handler.head(206, len(body))
    handler.wfile.write(body[: len(body) // 3])
    handler.hold()


def stall_before_headers(handler: _FakeHandler, seen: Seen) -> None:
    handler.hold()


@pytest.fixture
def fake_s3() -> Iterator[FakeS3]:
    server = FakeS3(DATA)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


class Presigner:
    """Stands in for botocore's presign: a new signature each call, and a count of calls."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls = 0

    def __call__(self, expires_in: int) -> str:
        self.calls += 1
        return f"{self.url}?X-Amz-Expires={expires_in}&X-Amz-Signature=sig{self.calls}"


def direct(fake: FakeS3, *, timeout: float = 5.0) -> tuple[DirectRanges, Presigner]:
    presign = Presigner(fake.url)
    source = DirectRanges(
        presign,
        {"If-Match": '"fake"', "x-amz-request-payer": "requester"},
        HttpConnections(timeout=timeout),
        bucket="bkt",
        key="obj",
    )
    return source, presign


@pytest.mark.parametrize(
    ("answer", "expected", "words"),
    [
        (
            s3_error(503, "SlowDown", "Please reduce your request rate."),
            TransientS3Error,
            "SlowDown",
        ),
        (
            s3_error(500, "InternalError", "We encountered an internal error."),
            TransientS3Error,
            "InternalError",
        ),
        (s3_error(429, "SlowDown", "Please reduce your request rate."), TransientS3Error, "429"),
        (s3_error(403, "AccessDenied", "Access Denied"), AccessDenied, "access denied"),
        (
            s3_error(412, "PreconditionFailed", "At least one of the pre-conditions"),
            ObjectChanged,
            "changed while it was being read",
        ),
        (s3_error(404, "NoSuchKey", "The specified key does not exist."), ObjectChanged, "deleted"),
        (html_502, TransientS3Error, "does not answer like S3"),  # a proxy: retried
        (long_206, EndpointError, "ignored the Range header"),
    ],
    ids=["503-slowdown", "500", "429", "403-denied", "412", "404", "html-502", "long-206"],
)
def test_error_answers_become_the_domain_error(
    fake_s3: FakeS3, answer: Answer, expected: type[S3TorrentError], words: str
) -> None:
    fake_s3.answer = lambda seen: answer
    source, _ = direct(fake_s3)
    with pytest.raises(expected, match=words) as raised:
        source.open_range(1000, 1999)
    assert type(raised.value) is expected  # not merely a subclass
    assert is_retryable(raised.value) is (expected is TransientS3Error)
    assert "s3://bkt/obj" in str(raised.value)


def test_the_signed_headers_and_range_reach_the_store(fake_s3: FakeS3) -> None:
    source, _ = direct(fake_s3)
    assert read_body(source.open_range(5, 9)) == DATA[5:10]
    (seen,) = fake_s3.seen
    assert (seen.path, seen.query["X-Amz-Signature"]) == ("/bkt/obj", ["sig1"])
    assert seen.headers["range"] == "bytes=5-9"
    assert seen.headers["if-match"] == '"fake"'
    assert seen.headers["x-amz-request-payer"] == "requester"


def test_a_200_with_the_whole_object_for_a_later_range_is_an_endpoint_error(
    fake_s3: FakeS3,
) -> None:
    fake_s3.answer = lambda seen: whole_object_200
    source, _ = direct(fake_s3)
    with pytest.raises(EndpointError, match="ignored the Range header"):
        source.open_range(1000, 1999)


def test_a_200_with_the_whole_object_is_accepted_for_a_range_from_zero_to_the_end(
    fake_s3: FakeS3,
) -> None:
    fake_s3.answer = lambda seen: whole_object_200
    source, _ = direct(fake_s3)
    assert read_body(source.open_range(0, len(DATA) - 1)) == DATA
    with pytest.raises(EndpointError, match="ignored the Range header"):
        source.open_range(0, 999)  # the same 200 for a shorter range is not


def test_an_expired_url_is_signed_anew_and_retried(fake_s3: FakeS3) -> None:
    expired = s3_error(403, "AccessDenied", "Request has expired")
    fake_s3.answer = lambda seen: expired if seen.number == 1 else None
    source, presign = direct(fake_s3)

    with pytest.raises(TransientS3Error, match="expired"):
        source.open_range(0, 99)
    assert read_body(source.open_range(0, 99)) == DATA[:100]
    assert read_body(source.open_range(100, 199)) == DATA[100:200]

    assert presign.calls == 2  # once at first, once after the expiry; not per range
    assert [seen.query["X-Amz-Signature"] for seen in fake_s3.seen] == [
        ["sig1"],
        ["sig2"],
        ["sig2"],
    ]


def test_a_plain_access_denied_is_not_signed_anew(fake_s3: FakeS3) -> None:
    fake_s3.answer = lambda seen: s3_error(403, "AccessDenied", "Access Denied")
    source, presign = direct(fake_s3)
    for _ in range(2):
        with pytest.raises(AccessDenied):
            source.open_range(0, 99)
    assert presign.calls == 1


@pytest.mark.parametrize(
    "broken", [cut_then_close, short_length], ids=["cut-then-closed", "short-content-length"]
)
def test_a_body_that_ends_early_is_retried_from_where_it_stopped(
    fake_s3: FakeS3, broken: Answer
) -> None:
    fake_s3.answer = fake_s3.once_per_part(broken)
    source, _ = direct(fake_s3)
    config = fast(part_size=64 * KiB, window=2, chunk_size=16 * KiB)
    counters = TransferCounters()

    hashes = hash_source(source, len(DATA), config, counters)

    assert hashes == hash_bytes(DATA, PIECE, MetaVersion.HYBRID)
    assert counters.bytes_read == len(DATA)
    parts = -(-len(DATA) // (64 * KiB))
    assert counters.retries >= parts  # each part broke once
    # Retries resume at the last whole chunk of each part, not at the part's start.
    resumed = {seen.start for seen in fake_s3.seen if seen.start % (64 * KiB)}
    assert len(resumed) == parts
    assert all(start % (16 * KiB) == 0 for start in resumed)


def test_a_body_ending_early_costs_exactly_one_retry(fake_s3: FakeS3) -> None:
    # A well-formed short answer leaves its connection reusable: one retry per part, no more.
    fake_s3.answer = fake_s3.once_per_part(short_length)
    source, _ = direct(fake_s3)
    config = fast(part_size=64 * KiB, window=2, chunk_size=16 * KiB)
    counters = TransferCounters()
    hash_source(source, len(DATA), config, counters)
    assert counters.retries == -(-len(DATA) // (64 * KiB))


def test_a_connection_cut_mid_body_is_not_reused(fake_s3: FakeS3) -> None:
    fake_s3.answer = lambda seen: cut_then_close if seen.number == 1 else None
    source, _ = direct(fake_s3)
    assert read_body(source.open_range(0, 9_999)) == DATA[:5_000]  # then the server hung up
    assert read_body(source.open_range(0, 9_999)) == DATA[:10_000]


def serve_then_hang_up(handler: _FakeHandler, seen: Seen) -> None:
    """A keep-alive answer, then the connection closes while idle (as stores do after
    their idle timeout, and as a frozen Lambda's connections are found after a thaw)."""
    serve(handler, seen)
    handler.close_connection = True


def test_idle_connections_the_store_closed_are_not_handed_out(fake_s3: FakeS3) -> None:
    fake_s3.answer = lambda seen: serve_then_hang_up
    source, _ = direct(fake_s3)
    # Six connections at once, as a window of six leaves them in the pool.
    bodies = [source.open_range(0, 99) for _ in range(6)]
    for body in bodies:
        assert read_body(body) == DATA[:100]
    time.sleep(0.1)  # the server has closed them all by now
    fake_s3.answer = lambda seen: None
    config = fast(part_size=64 * KiB, window=1)
    counters = TransferCounters()

    hashes = hash_source(source, len(DATA), config, counters)

    assert hashes == hash_bytes(DATA, PIECE, MetaVersion.HYBRID)
    assert counters.retries == 0


@pytest.mark.parametrize(
    "stall", [stall_mid_body, stall_before_headers], ids=["mid-body", "before-headers"]
)
def test_a_silent_server_is_given_up_on_after_the_socket_timeout_and_retried(
    fake_s3: FakeS3, stall: Answer
) -> None:
    fake_s3.answer = lambda seen: stall if seen.number == 1 else None
    # 1 s: long enough that an answer merely slowed by a busy machine is not a second stall
    # (the retry count below is exact), short enough to keep the test quick.
    timeout = 1.0
    source, _ = direct(fake_s3, timeout=timeout)
    config = fast(part_size=64 * KiB, window=1, stall_timeout=timeout)
    counters = TransferCounters()
    started = time.monotonic()

    hashes = hash_source(source, len(DATA), config, counters)

    elapsed = time.monotonic() - started
    assert hashes == hash_bytes(DATA, PIECE, MetaVersion.HYBRID)
    assert counters.retries == 1
    assert timeout <= elapsed < timeout + 1.5, elapsed
