"""read_parts: parallel ranged reads into per-part sinks, retried per range (no network).

The source is an in-memory fake whose bodies deliver short reads like a socket, can be
told to fail at open, die mid-body or end early, and can be slow. Whatever the fake does,
the parts must reach the sinks whole and in order, and a `PieceHashBuilder` fed by them
must give the serial `hash_bytes` result (and libtorrent's info hashes).
"""

from __future__ import annotations

import functools
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from s3torrent.errors import ObjectChanged, TransientS3Error
from s3torrent.model import TransferCounters
from s3torrent.s3 import reader as ranged_reader
from s3torrent.s3.reader import ReaderConfig, ShortRead, read_parts
from s3torrent.torrent.hashing import MetaVersion, PieceHashBuilder, PieceHashes, hash_bytes
from s3torrent.torrent.metainfo import Torrent, TorrentOptions, build_torrent, torrent_name_for_key
from tests.support.references import boundary_sizes, libtorrent_hashes

# references.py builds libtorrent's torrents the one way both wheels share.
pytestmark = pytest.mark.filterwarnings(
    "ignore:create_torrent constructor from file_storage is deprecated:DeprecationWarning"
)

KiB = 1024
MiB = 1024 * KiB
CHUNK = 16 * KiB
KEY = "some/prefix/object.bin"


class Flaky(Exception):
    """A failure the tests declare retryable."""


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, Flaky)


def reset() -> Flaky:
    return Flaky("connection reset")


def fast(**kwargs: Any) -> ReaderConfig:
    """A config that retries without waiting, not to slow the suite."""
    return ReaderConfig(backoff_base=0.0, backoff_max=0.0, **kwargs)


def payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("s3torrent-read")]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    """Every test must leave no reader thread behind."""
    yield
    assert wait_until(lambda: not reader_threads()), reader_threads()


# --- the fake source ---------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """What one open of a range does wrong.

    open: open_range raises `error()`; raise: readinto raises `error()` once `after` bytes
    of the body were delivered; eof: readinto returns 0 once `after` bytes were delivered.
    A factory, so that each failure is a fresh exception nothing else holds on to (as a
    transport's are): a kept exception keeps its traceback's frames, and their views of
    the reader's buffer, alive (see test_a_transport_keeping_its_last_error_...).
    """

    kind: str
    after: int = 0
    error: Callable[[], BaseException] = reset


class FakeSource:
    """A RangeSource over bytes in memory, with faults keyed by the range's (inclusive)
    end: a part's retries all share its end, whatever they resume from."""

    def __init__(
        self,
        data: bytes,
        *,
        faults: dict[int, list[Fault]] | None = None,
        delay: float = 0.0,
        short_reads: bool = True,
    ) -> None:
        self.data = memoryview(data)
        self.faults = {end: list(plan) for end, plan in (faults or {}).items()}
        self.delay = delay  # seconds each readinto sleeps (a slow network)
        self.short_reads = short_reads  # deliver random short counts, as a socket does
        self.lock = threading.Lock()
        self.opens: list[tuple[int, int]] = []
        self.open_now = 0
        self.peak = 0
        self.closed = 0
        self.reads = 0  # readinto calls
        self.timeline: list[tuple[float, int]] = []  # (when, connections open) at each open

    def open_range(self, start: int, end: int, /) -> FakeBody:
        assert 0 <= start <= end < len(self.data), (start, end)
        with self.lock:
            self.opens.append((start, end))
            plan = self.faults.get(end)
            fault = plan.pop(0) if plan else None
        if fault is not None and fault.kind == "open":
            raise fault.error()
        with self.lock:
            self.open_now += 1
            self.peak = max(self.peak, self.open_now)
            self.timeline.append((time.monotonic(), self.open_now))
        return FakeBody(self, start, end, fault)

    def opens_ending_at(self, end: int) -> list[tuple[int, int]]:
        with self.lock:
            return [r for r in self.opens if r[1] == end]


class FakeBody:
    def __init__(self, source: FakeSource, start: int, end: int, fault: Fault | None) -> None:
        self.source = source
        self.pos = start
        self.stop = end + 1
        self.delivered = 0
        self.fault = fault
        self.rng = random.Random(start)
        self.is_closed = False

    def readinto(self, buffer: memoryview, /) -> int:
        assert not self.is_closed, "read after close"
        source = self.source
        with source.lock:
            source.reads += 1
        if source.delay:
            time.sleep(source.delay)
        n = min(len(buffer), self.stop - self.pos)
        if source.short_reads and n > 1:
            n = self.rng.choice([n, n, self.rng.randrange(1, n)])
        fault = self.fault
        if fault is not None and fault.kind in ("raise", "eof"):
            if self.delivered >= fault.after:
                if fault.kind == "eof":
                    return 0
                raise fault.error()
            n = min(n, fault.after - self.delivered)
        buffer[:n] = source.data[self.pos : self.pos + n]
        self.pos += n
        self.delivered += n
        return n

    def close(self) -> None:
        if not self.is_closed:
            self.is_closed = True
            with self.source.lock:
                self.source.open_now -= 1
                self.source.closed += 1


class Recorder:
    """Sinks that keep a copy of every part's bytes and chunk sizes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.parts: dict[tuple[int, int], bytearray] = {}
        self.chunks: dict[tuple[int, int], list[int]] = {}

    def sink_for(self, start: int, stop: int) -> RecordingSink:
        with self.lock:
            assert (start, stop) not in self.parts, "a part asked for twice"
            self.parts[start, stop] = bytearray()
            self.chunks[start, stop] = []
        return RecordingSink(self, start, stop)

    def joined(self) -> bytes:
        return b"".join(bytes(self.parts[part]) for part in sorted(self.parts))


class RecordingSink:
    def __init__(self, recorder: Recorder, start: int, stop: int) -> None:
        self.out = recorder.parts[start, stop]
        self.sizes = recorder.chunks[start, stop]
        self.stop = stop - start

    def write(self, chunk: memoryview, /) -> None:
        assert isinstance(chunk, memoryview)
        self.out += chunk  # a copy: the reader reuses its buffer
        self.sizes.append(len(chunk))
        assert len(self.out) <= self.stop


def run(
    source: FakeSource,
    size: int,
    sink_for: Callable[[int, int], ranged_reader.PartSink],
    config: ReaderConfig,
    counters: TransferCounters | None = None,
    *,
    align: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    progress_every: float = 1.0,
) -> TransferCounters:
    counters = counters if counters is not None else TransferCounters()
    read_parts(
        source,
        size,
        sink_for,
        config,
        counters,
        align=align,
        is_retryable=retryable,
        on_progress=on_progress,
        progress_every=progress_every,
    )
    return counters


# --- every byte, in parts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "part_size", "align", "window", "chunk_size"),
    [
        (10 * CHUNK, CHUNK, 1, 4, CHUNK),  # a multiple of the part size
        (10 * CHUNK + 123, 2 * CHUNK, 1, 4, CHUNK),  # a short last part
        (700, 64 * KiB, 1, 4, CHUNK),  # smaller than one part
        (1, 64 * KiB, 1, 4, CHUNK),
        (300_001, 100_000, 32 * KiB, 3, 48 * KiB),  # part_size rounded down to the align
        (300_001, 10_000, 32 * KiB, 3, CHUNK),  # part_size below the align: one align
        (5 * 64 * KiB + 5, 64 * KiB, 64 * KiB, 1, CHUNK),  # window 1
        (5 * 64 * KiB, 64 * KiB, 64 * KiB, 16, 32 * KiB),  # window over the number of parts
        (3 * MiB + 12_345, 256 * KiB, 64 * KiB, 6, 64 * KiB),
    ],
)
def test_every_byte_reaches_its_part_in_whole_chunks(
    size: int, part_size: int, align: int, window: int, chunk_size: int
) -> None:
    data = payload(size)
    source = FakeSource(data)
    recorder = Recorder()
    config = ReaderConfig(part_size=part_size, window=window, chunk_size=chunk_size)
    counters = run(source, size, recorder.sink_for, config, align=align)

    assert recorder.joined() == data
    parts = sorted(recorder.parts)
    # Contiguous, covering the object, a multiple of `align` long (the last one excepted).
    assert parts[0][0] == 0 and parts[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    step = max(align, part_size // align * align)
    assert all(stop - start == step for start, stop in parts[:-1])
    assert 0 < parts[-1][1] - parts[-1][0] <= step
    assert parts == config.parts(size, align)
    for (start, stop), sizes in recorder.chunks.items():
        assert len(recorder.parts[start, stop]) == stop - start
        # Whole chunks of `chunk_size`, only a part's last one shorter.
        assert all(s == chunk_size for s in sizes[:-1])
        assert 0 < sizes[-1] <= chunk_size
    # One GET per part, asking exactly its bytes (HTTP ranges are inclusive).
    assert sorted(source.opens) == [(start, stop - 1) for start, stop in parts]
    assert source.closed == len(parts)
    assert counters.get_requests == len(parts)
    assert counters.bytes_read == size
    assert counters.retries == 0


@pytest.mark.parametrize(
    ("size", "part_size", "align", "expected"),
    [
        (0, 100, 1, []),
        (250, 100, 1, [(0, 100), (100, 200), (200, 250)]),
        (250, 100, 32, [(0, 96), (96, 192), (192, 250)]),  # rounded down to a multiple
        (100, 10, 32, [(0, 32), (32, 64), (64, 96), (96, 100)]),  # at least one align
        (64, 100, 64, [(0, 64)]),
    ],
)
def test_parts_are_part_size_rounded_to_the_align(
    size: int, part_size: int, align: int, expected: list[tuple[int, int]]
) -> None:
    assert ReaderConfig(part_size=part_size).parts(size, align) == expected


def test_window_one_reads_one_range_at_a_time() -> None:
    data = payload(8 * CHUNK)
    source = FakeSource(data, delay=0.002)
    recorder = Recorder()
    run(source, len(data), recorder.sink_for, fast(part_size=CHUNK, window=1))
    assert recorder.joined() == data
    assert source.peak == 1
    assert len(source.opens) == 8


def test_empty_object_opens_nothing() -> None:
    source = FakeSource(b"")
    recorder = Recorder()
    counters = run(source, 0, recorder.sink_for, ReaderConfig())
    assert source.opens == []
    assert recorder.parts == {}
    assert (counters.get_requests, counters.bytes_read, counters.retries) == (0, 0, 0)


def test_negative_size_and_align_below_one_are_refused() -> None:
    source = FakeSource(b"abc")
    with pytest.raises(ValueError, match="size must not be negative: -1"):
        run(source, -1, Recorder().sink_for, ReaderConfig())
    with pytest.raises(ValueError, match="align must be at least 1: 0"):
        run(source, 3, Recorder().sink_for, ReaderConfig(), align=0)
    assert source.opens == []


# --- parallel == serial, down to the info hashes ---------------------------------------------

PIECE = 32 * KiB


@functools.cache
def content(size: int) -> bytes:
    return payload(size, seed=size)


@functools.cache
def libtorrent_reference(size: int, version: str) -> tuple[str, str]:
    v1, v2 = libtorrent_hashes(content(size), torrent_name_for_key(KEY), PIECE, version)
    return str(v1), str(v2)


def torrent_of(hashes: PieceHashes, version: MetaVersion) -> Torrent:
    options = TorrentOptions(meta_version=version, piece_length=PIECE, creation_date=None)
    return build_torrent(torrent_name_for_key(KEY), hashes, options)


def info_hashes(torrent: Torrent) -> tuple[str, str]:
    """As libtorrent prints them: zeros for the version the torrent lacks."""
    return (torrent.info_hash_v1 or "0" * 40, torrent.info_hash_v2 or "0" * 64)


def read_and_hash(
    source: FakeSource, size: int, version: MetaVersion, config: ReaderConfig
) -> tuple[PieceHashes, TransferCounters]:
    builder = PieceHashBuilder(size, PIECE, version)
    counters = run(source, size, builder.part, config, align=PIECE)
    return builder.finish(), counters


@pytest.mark.parametrize("version", list(MetaVersion))
@pytest.mark.parametrize("size", boundary_sizes(PIECE))
def test_parallel_read_hashes_like_the_serial_path_and_libtorrent(
    version: MetaVersion, size: int
) -> None:
    data = content(size)
    # Two pieces a part, chunks of 48 KiB: a piece straddles two chunks, v2 blocks do not.
    config = ReaderConfig(part_size=2 * PIECE, window=4, chunk_size=48 * KiB)
    hashes, counters = read_and_hash(FakeSource(data), size, version, config)
    assert hashes == hash_bytes(data, PIECE, version)
    assert info_hashes(torrent_of(hashes, version)) == libtorrent_reference(size, version.value)
    assert counters.bytes_read == size
    assert counters.get_requests == len(config.parts(size, PIECE))


RETRY_SIZES = [100, 5 * PIECE + 4099]


def fault(kind: str, size: int) -> Fault:
    """A fault in the middle of a body (mid second chunk, or mid body when it is short)."""
    return Fault(kind, after=min(CHUNK + 5, size // 2))


@pytest.mark.parametrize("kind", ["open", "raise", "eof"])
@pytest.mark.parametrize("version", list(MetaVersion))
@pytest.mark.parametrize("size", RETRY_SIZES)
def test_a_range_failing_twice_still_gives_the_serial_torrent(
    kind: str, version: MetaVersion, size: int
) -> None:
    data = content(size)
    part = 2 * PIECE
    config = fast(part_size=part, window=3, chunk_size=CHUNK)
    parts = config.parts(size, PIECE)
    # The second part (or the only one) fails twice before it answers.
    start, stop = parts[1] if len(parts) > 1 else parts[0]
    source = FakeSource(data, faults={stop - 1: [fault(kind, stop - start)] * 2})
    hashes, counters = read_and_hash(source, size, version, config)

    expected = torrent_of(hash_bytes(data, PIECE, version), version)
    got = torrent_of(hashes, version)
    assert got.data == expected.data
    assert info_hashes(got) == libtorrent_reference(size, version.value)
    assert len(source.opens_ending_at(stop - 1)) == 3
    assert counters.retries == 2
    assert counters.get_requests == len(parts) + 2
    assert counters.bytes_read == size
    assert source.closed == len(parts) + (2 if kind != "open" else 0)


@pytest.mark.parametrize("kind", ["raise", "eof"])
def test_a_body_dying_mid_part_resumes_from_the_last_whole_chunk(kind: str) -> None:
    data = payload(3 * 4 * CHUNK + 77)
    start, stop = 4 * CHUNK, 8 * CHUNK  # the second part: four chunks
    dies = Fault(kind, after=2 * CHUNK + 100)
    source = FakeSource(data, faults={stop - 1: [dies]})
    recorder = Recorder()
    config = fast(part_size=4 * CHUNK, window=2, chunk_size=CHUNK)
    counters = run(source, len(data), recorder.sink_for, config)
    # Two whole chunks reached the sink before the body died: the retry asks for the rest.
    assert source.opens_ending_at(stop - 1) == [(start, stop - 1), (start + 2 * CHUNK, stop - 1)]
    assert bytes(recorder.parts[start, stop]) == data[start:stop]  # each byte once
    assert recorder.chunks[start, stop] == [CHUNK] * 4
    assert recorder.joined() == data
    assert counters.retries == 1


def test_progress_resets_the_attempt_count() -> None:
    # Every attempt dies after a whole chunk and a bit: each makes progress, so a part of
    # six chunks is read in six attempts although max_attempts is 2.
    data = payload(6 * CHUNK)
    dies = Fault("raise", after=CHUNK + 10)
    source = FakeSource(data, faults={len(data) - 1: [dies] * 5})
    recorder = Recorder()
    config = fast(part_size=len(data), window=1, max_attempts=2, chunk_size=CHUNK)
    counters = run(source, len(data), recorder.sink_for, config)
    assert recorder.joined() == data
    assert [start for start, _ in source.opens] == [i * CHUNK for i in range(6)]
    assert counters.retries == 5


# --- failures -----------------------------------------------------------------------------


def test_exhausted_attempts_at_open_raise_transient_error_with_the_cause() -> None:
    data = payload(4 * CHUNK)
    made: list[Flaky] = []

    def slow_down() -> Flaky:
        made.append(Flaky("503 SlowDown"))
        return made[-1]

    source = FakeSource(data, faults={2 * CHUNK - 1: [Fault("open", error=slow_down)] * 99})
    counters = TransferCounters()
    config = fast(part_size=CHUNK, window=2, max_attempts=3)
    with pytest.raises(TransientS3Error, match=r"bytes=16384-32767 failed 3 times") as caught:
        run(source, len(data), Recorder().sink_for, config, counters)
    assert len(made) == 3
    assert caught.value.__cause__ is made[-1]  # the last failure
    assert source.opens_ending_at(2 * CHUNK - 1) == [(CHUNK, 2 * CHUNK - 1)] * 3
    assert counters.retries == 2


@pytest.mark.parametrize("kind", ["raise", "eof"])
def test_exhausted_attempts_mid_body_raise_transient_error_with_the_cause(kind: str) -> None:
    data = payload(4 * CHUNK)
    source = FakeSource(data, faults={len(data) - 1: [Fault(kind, 100)] * 99})
    counters = TransferCounters()
    config = fast(part_size=len(data), window=1, max_attempts=3)
    with pytest.raises(TransientS3Error, match=r"bytes=0-65535 failed 3 times") as caught:
        run(source, len(data), Recorder().sink_for, config, counters)
    cause = caught.value.__cause__
    assert isinstance(cause, Flaky if kind == "raise" else ShortRead)
    assert len(source.opens) == 3
    assert counters.retries == 2


def test_non_retryable_error_at_open_propagates_unchanged_promptly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Eight parts of 100 chunks of 5 ms each on four connections: half a second a part.
    # The third part fails for good at once: the read must fail at once, and the three
    # threads still reading stop at their next chunk, not at the end of their part.
    monkeypatch.setattr(ranged_reader, "usable_cores", lambda: 4)
    part = 100 * CHUNK
    data = payload(8 * part)
    error = ObjectChanged("412 Precondition Failed")
    faults = {3 * part - 1: [Fault("open", error=lambda: error)] * 99}
    source = FakeSource(data, faults=faults, delay=0.005, short_reads=False)
    counters = TransferCounters()
    config = fast(part_size=part, window=4, chunk_size=CHUNK)
    began = time.monotonic()
    with pytest.raises(ObjectChanged) as caught:
        run(source, len(data), Recorder().sink_for, config, counters)
    assert time.monotonic() - began < 0.3
    with source.lock:
        reads_at_failure = source.reads
    assert caught.value is error
    assert wait_until(lambda: not reader_threads(), timeout=1)
    assert source.reads - reads_at_failure <= 3 * 2  # a chunk or so each, not 100
    assert source.opens_ending_at(3 * part - 1) == [(2 * part, 3 * part - 1)]  # no retry
    assert counters.retries == 0
    assert len(source.opens) <= 5  # no thread took another part
    assert source.open_now == 0  # and each closed what it had open


def test_non_retryable_error_from_a_body_propagates_unchanged() -> None:
    data = payload(4 * CHUNK)
    error = ObjectChanged("the body's checksum does not match")
    source = FakeSource(data, faults={len(data) - 1: [Fault("raise", CHUNK + 1, lambda: error)]})
    config = fast(part_size=len(data), window=1)
    with pytest.raises(ObjectChanged) as caught:
        run(source, len(data), Recorder().sink_for, config)
    assert caught.value is error
    assert len(source.opens) == 1


def test_a_transport_keeping_its_last_error_does_not_break_a_read_that_succeeded() -> None:
    # A transport that keeps its last error (for its logs) keeps that error's traceback,
    # whose frames hold views of the reader's buffer. The read itself succeeded on retry.
    data = payload(4 * CHUNK)
    kept: list[Flaky] = []

    def remembered() -> Flaky:
        kept.append(Flaky("connection reset"))
        return kept[-1]

    source = FakeSource(data, faults={len(data) - 1: [Fault("raise", CHUNK + 5, remembered)]})
    recorder = Recorder()
    config = fast(part_size=len(data), window=1)
    counters = run(source, len(data), recorder.sink_for, config)
    assert recorder.joined() == data
    assert counters.retries == 1
    assert len(kept) == 1


def test_a_failure_elsewhere_wakes_a_thread_in_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # One part keeps failing with a 30 s backoff; another then fails for good. The read
    # fails at once and the thread asleep in its backoff ends (checked by the fixture).
    monkeypatch.setattr(ranged_reader, "usable_cores", lambda: 2)  # both parts at once
    data = payload(2 * CHUNK)
    release = threading.Event()

    class Source(FakeSource):
        def open_range(self, start: int, end: int, /) -> FakeBody:
            with self.lock:
                self.opens.append((start, end))
            if start == 0:
                raise Flaky("throttled")
            release.wait(5)  # the second part fails once the first is in its backoff
            raise ObjectChanged("overwritten")

    source = Source(data)
    config = ReaderConfig(part_size=CHUNK, window=2, backoff_base=30.0, backoff_max=30.0)
    timer = threading.Timer(0.1, release.set)
    timer.start()
    try:
        began = time.monotonic()
        with pytest.raises(ObjectChanged):
            run(source, len(data), Recorder().sink_for, config)
        assert time.monotonic() - began < 2
        assert wait_until(lambda: not reader_threads(), timeout=1)
        assert source.opens_ending_at(CHUNK - 1) == [(0, CHUNK - 1)]  # never retried
    finally:
        release.set()
        timer.join()


# --- progress and counters ------------------------------------------------------------------


def test_progress_is_monotonic_and_ends_at_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # The caller's thread looks every RAMP_EVERY seconds: shorter, for a short test.
    monkeypatch.setattr(ranged_reader._Read, "RAMP_EVERY", 0.02)
    data = payload(40 * CHUNK + 3)
    source = FakeSource(data, delay=0.004)  # ~0.15 s on two connections: a few looks
    calls: list[tuple[int, int]] = []
    config = ReaderConfig(part_size=2 * CHUNK, window=2, chunk_size=CHUNK)
    run(
        source,
        len(data),
        Recorder().sink_for,
        config,
        on_progress=lambda done, total: calls.append((done, total)),
        progress_every=0.0,
    )
    assert len(calls) >= 2
    assert calls[-1] == (len(data), len(data))
    assert all(total == len(data) for _, total in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done)
    assert done[0] < len(data)  # reported while reading, not only at the end


def test_counters_add_to_what_they_held() -> None:
    data = payload(10 * CHUNK + 1)
    faults = {2 * CHUNK - 1: [Fault("open")]}
    counters = TransferCounters(bytes_read=1000, get_requests=7, retries=1, seconds=2.0)
    config = fast(part_size=2 * CHUNK, window=3)
    run(FakeSource(data, faults=faults), len(data), Recorder().sink_for, config, counters)
    assert counters.get_requests == 7 + 6 + 1
    assert counters.bytes_read == 1000 + len(data)
    assert counters.retries == 1 + 1
    assert counters.seconds > 2.0


# --- how many connections --------------------------------------------------------------------


def test_io_bound_reads_ramp_up_past_the_cores_but_never_past_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Threads asleep in their sockets use no CPU: the reader opens more connections. The
    # core count is pinned to 2 so that the ramp shows on any machine.
    monkeypatch.setattr(ranged_reader, "usable_cores", lambda: 2)
    data = payload(60 * 4 * CHUNK)
    source = FakeSource(data, delay=0.01, short_reads=False)  # 40 ms a part
    recorder = Recorder()
    config = ReaderConfig(part_size=4 * CHUNK, window=8, chunk_size=CHUNK)
    began = time.monotonic()
    run(source, len(data), recorder.sink_for, config)
    assert recorder.joined() == data
    assert source.peak > ranged_reader.usable_cores()
    assert source.peak <= config.window
    # It starts at one connection per core: nothing more before the first look.
    first_look = ranged_reader._Read.RAMP_EVERY
    early = [now for when, now in source.timeline if when - began < first_look / 2]
    assert early and max(early) == 2


def test_cpu_bound_reads_stay_at_one_connection_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same slow source, but the readers' threads look busy on a CPU all the time (as
    # when they hash as fast as the bytes come): more connections would gain nothing. The
    # threads' busy clock is faked so that the result does not depend on the machine's load.
    monkeypatch.setattr(ranged_reader, "usable_cores", lambda: 2)
    first_look: dict[int, float] = {}

    def always_on_a_cpu() -> float:
        now = time.monotonic()
        return now - first_look.setdefault(threading.get_ident(), now)

    monkeypatch.setattr(ranged_reader, "_thread_busy_seconds", always_on_a_cpu)
    data = payload(24 * 4 * CHUNK)
    source = FakeSource(data, delay=0.01, short_reads=False)  # 40 ms a part: ~0.5 s
    recorder = Recorder()
    config = ReaderConfig(part_size=4 * CHUNK, window=8, chunk_size=CHUNK)
    run(source, len(data), recorder.sink_for, config)
    assert recorder.joined() == data
    assert len(first_look) == 2  # the fake clock was what the reader looked at
    assert source.peak == 2


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"part_size": 0}, "part_size"),
        ({"window": 0}, "window"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": 8 * KiB}, "chunk_size"),
        ({"chunk_size": 16 * KiB + 1}, "chunk_size"),
        ({"chunk_size": 24 * KiB}, "chunk_size"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"backoff_base": -1.0}, "backoff"),
        ({"backoff_max": -0.1}, "backoff"),
        ({"stall_timeout": 0.0}, "stall_timeout"),
        ({"stall_timeout": -1.0}, "stall_timeout"),
    ],
)
def test_config_refuses_nonsense(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ReaderConfig(**kwargs)  # type: ignore[arg-type]


def test_config_takes_sensible_values() -> None:
    config = ReaderConfig(
        part_size=1, window=1, chunk_size=48 * KiB, max_attempts=1, backoff_base=0.0
    )
    assert (config.part_size, config.window, config.chunk_size) == (1, 1, 48 * KiB)
    assert config.backoff(1) == 0.0


def test_backoff_is_full_jitter_capped() -> None:
    config = ReaderConfig(backoff_base=0.1, backoff_max=1.0)
    for retry in range(1, 12):
        cap = min(1.0, 0.1 * 2 ** (retry - 1))
        waits = [config.backoff(retry) for _ in range(200)]
        assert all(0.0 <= wait <= cap for wait in waits)
        assert max(waits) > cap / 2  # the whole range, not a fraction of it
        assert min(waits) < cap / 2  # from zero up: full jitter
    assert len({config.backoff(3) for _ in range(20)}) > 1  # jittered, not fixed


def test_busy_seconds_count_cpu_time_and_grow_with_work() -> None:
    before = ranged_reader._thread_busy_seconds()
    deadline = time.monotonic() + 0.05
    while time.monotonic() < deadline:
        pass  # spin: on a CPU the whole time
    spent = ranged_reader._thread_busy_seconds() - before
    assert 0.03 < spent < 1.0
    idle_before = ranged_reader._thread_busy_seconds()
    time.sleep(0.1)  # blocked: neither running nor waiting for a CPU
    assert ranged_reader._thread_busy_seconds() - idle_before < 0.05
