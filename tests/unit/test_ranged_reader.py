"""read_in_order: overlapped ranged fetches, yielded in order, retried per range (no network)."""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from s3torrent.errors import ObjectChanged, TransientS3Error
from s3torrent.model import TransferCounters
from s3torrent.ranged_reader import ReaderConfig, read_in_order

KiB = 1024
FAST = {"backoff_base": 0.001, "backoff_max": 0.005}  # retries without slowing the suite


class Flaky(Exception):
    """A failure the tests declare retryable."""


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, Flaky)


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
    """Every test must leave no reader thread behind once its fetches have returned."""
    yield
    assert wait_until(lambda: not reader_threads()), reader_threads()


def read_all(
    data: bytes,
    config: ReaderConfig,
    fetch: Callable[[int, int], bytes | memoryview] | None = None,
    counters: TransferCounters | None = None,
) -> bytes:
    def serve(start: int, end: int) -> bytes:
        return data[start : end + 1]

    out = bytearray()
    for view in read_in_order(
        fetch or serve,
        len(data),
        config,
        counters if counters is not None else TransferCounters(),
        is_retryable=retryable,
    ):
        assert isinstance(view, memoryview)
        out += view
    return bytes(out)


class FailTimes:
    """A fetch whose chosen ranges fail `times` times before answering."""

    def __init__(self, data: bytes, failing: dict[int, int], error: Callable[[], Exception]):
        self.data = data
        self.left = dict(failing)  # start offset -> failures still to come
        self.error = error
        self.calls: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def __call__(self, start: int, end: int) -> bytes:
        with self.lock:
            self.calls.append((start, end))
            if self.left.get(start, 0) > 0:
                self.left[start] -= 1
                raise self.error()
        return self.data[start : end + 1]


# --- order and shapes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "part_size", "window"),
    [
        (10 * KiB, KiB, 4),  # a multiple of the part size
        (10 * KiB + 123, KiB, 4),  # a short last part
        (700, KiB, 4),  # smaller than one part
        (1, KiB, 4),
        (10 * KiB + 5, KiB, 1),  # window 1: strictly one range at a time
        (5 * KiB, KiB, 16),  # window larger than the number of parts
        (KiB, KiB, 3),  # exactly one part
    ],
)
def test_yields_every_byte_in_order(size: int, part_size: int, window: int) -> None:
    data = payload(size)
    counters = TransferCounters()
    config = ReaderConfig(part_size=part_size, window=window)
    assert read_all(data, config, counters=counters) == data
    parts = -(-size // part_size)
    assert counters.get_requests == parts
    assert counters.bytes_read == size
    assert counters.retries == 0
    assert counters.seconds > 0


def test_ranges_asked_are_contiguous_inclusive_and_cover_the_object() -> None:
    data = payload(10 * KiB + 3)
    fetch = FailTimes(data, {}, Flaky)
    read_all(data, ReaderConfig(part_size=KiB, window=3), fetch)
    ranges = sorted(fetch.calls)
    assert ranges[0][0] == 0
    assert ranges[-1][1] == len(data) - 1
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert start == end + 1
    assert all(end - start + 1 <= KiB for start, end in ranges)


def test_order_is_kept_when_later_ranges_finish_first() -> None:
    data = payload(8 * KiB)
    finished: list[int] = []

    def fetch(start: int, end: int) -> bytes:
        index = start // KiB
        # Earlier ranges are slower: with 8 in flight they complete in reverse order.
        time.sleep(0.02 * (8 - index))
        finished.append(index)
        return data[start : end + 1]

    assert read_all(data, ReaderConfig(part_size=KiB, window=8), fetch) == data
    assert finished[0] > finished[-1]  # completion really was out of order


def test_window_bounds_ranges_in_flight_and_parts_held() -> None:
    size, part, window = 40 * KiB, KiB, 3
    data = payload(size)
    lock = threading.Lock()
    running = 0
    peak = 0
    consumed = 0
    ahead: list[int] = []

    def fetch(start: int, end: int) -> bytes:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            ahead.append(start // part - consumed)
        time.sleep(0.002)
        with lock:
            running -= 1
        return data[start : end + 1]

    out = bytearray()
    for view in read_in_order(
        fetch,
        size,
        ReaderConfig(part_size=part, window=window),
        TransferCounters(),
        is_retryable=retryable,
    ):
        out += view
        time.sleep(0.001)
        with lock:
            consumed += 1
    assert bytes(out) == data
    assert peak <= window
    # The part the caller holds plus the ones fetched ahead never exceed the window:
    # memory is window * part_size whatever the object's size.
    assert max(ahead) < window


def test_fetch_may_return_memoryviews_and_bytearrays() -> None:
    data = payload(5 * KiB + 1)
    backing = bytearray(data)

    def fetch(start: int, end: int) -> memoryview:
        return memoryview(backing)[start : end + 1]

    assert read_all(data, ReaderConfig(part_size=KiB, window=2), fetch) == data


def test_empty_object_yields_nothing_and_starts_no_thread() -> None:
    calls: list[tuple[int, int]] = []
    it = read_in_order(
        lambda s, e: calls.append((s, e)) or b"",
        0,
        ReaderConfig(),
        TransferCounters(),
        is_retryable=retryable,
    )
    assert list(it) == []
    assert calls == []


def test_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        list(
            read_in_order(
                lambda s, e: b"", -1, ReaderConfig(), TransferCounters(), is_retryable=retryable
            )
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"part_size": 0},
        {"window": 0},
        {"max_attempts": 0},
        {"backoff_base": -1.0},
        {"stall_timeout": 0.0},
    ],
)
def test_config_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ReaderConfig(**kwargs)  # type: ignore[arg-type]


def test_backoff_is_full_jitter_capped() -> None:
    config = ReaderConfig(backoff_base=0.1, backoff_max=1.0)
    for retry in range(1, 12):
        cap = min(1.0, 0.1 * 2 ** (retry - 1))
        assert all(0.0 <= config.backoff(retry) <= cap for _ in range(50))
    assert len({config.backoff(3) for _ in range(20)}) > 1  # jittered, not fixed


# --- retries ---------------------------------------------------------------------------


def test_a_range_failing_twice_then_succeeding_gives_identical_bytes() -> None:
    data = payload(10 * KiB + 17)
    fetch = FailTimes(data, {3 * KiB: 2}, lambda: Flaky("reset by peer"))
    counters = TransferCounters()
    config = ReaderConfig(part_size=KiB, window=4, **FAST)
    assert read_all(data, config, fetch, counters) == data
    assert counters.retries == 2
    assert counters.get_requests == 11 + 2
    assert counters.bytes_read == len(data)
    # Only the failing range was asked again, never the object.
    assert fetch.calls.count((3 * KiB, 4 * KiB - 1)) == 3
    assert all(fetch.calls.count(c) == 1 for c in set(fetch.calls) if c[0] != 3 * KiB)


def test_a_short_answer_is_retried() -> None:
    data = payload(4 * KiB)
    short = {"left": 1}

    def fetch(start: int, end: int) -> bytes:
        if start == KiB and short["left"]:
            short["left"] -= 1
            return data[start:end]  # one byte missing
        return data[start : end + 1]

    counters = TransferCounters()
    assert read_all(data, ReaderConfig(part_size=KiB, window=2, **FAST), fetch, counters) == data
    assert counters.retries == 1


def test_exhausted_retries_raise_transient_error_with_the_cause() -> None:
    data = payload(4 * KiB)
    fetch = FailTimes(data, {KiB: 99}, lambda: Flaky("503 SlowDown"))
    counters = TransferCounters()
    config = ReaderConfig(part_size=KiB, window=2, max_attempts=3, **FAST)
    with pytest.raises(TransientS3Error, match=r"bytes=1024-2047") as caught:
        read_all(data, config, fetch, counters)
    assert isinstance(caught.value.__cause__, Flaky)
    assert fetch.calls.count((KiB, 2 * KiB - 1)) == 3
    assert counters.retries == 2


def test_non_retryable_error_propagates_unchanged_without_retry() -> None:
    data = payload(4 * KiB)
    error = ObjectChanged("412 Precondition Failed")
    fetch = FailTimes(data, {2 * KiB: 99}, lambda: error)
    counters = TransferCounters()
    with pytest.raises(ObjectChanged) as caught:
        read_all(data, ReaderConfig(part_size=KiB, window=4, **FAST), fetch, counters)
    assert caught.value is error
    assert fetch.calls.count((2 * KiB, 3 * KiB - 1)) == 1
    assert counters.retries == 0


def test_a_later_range_failing_for_good_is_raised_without_waiting_for_earlier_ones() -> None:
    data = payload(4 * KiB)
    release = threading.Event()

    def fetch(start: int, end: int) -> bytes:
        if start == 0:
            release.wait(10)  # the head range hangs
        if start == 2 * KiB:
            raise ObjectChanged("overwritten")
        return data[start : end + 1]

    began = time.monotonic()
    try:
        with pytest.raises(ObjectChanged):
            read_all(data, ReaderConfig(part_size=KiB, window=4, **FAST), fetch)
        assert time.monotonic() - began < 2
    finally:
        release.set()


def test_stalled_range_is_abandoned_and_retried() -> None:
    data = payload(4 * KiB)
    release = threading.Event()
    first = {"stall": True}
    lock = threading.Lock()

    def fetch(start: int, end: int) -> bytes:
        if start == KiB:
            with lock:
                stall, first["stall"] = first["stall"], False
            if stall:
                release.wait(10)  # a connection that went quiet
                return b"late answer, must be dropped"
        return data[start : end + 1]

    counters = TransferCounters()
    config = ReaderConfig(part_size=KiB, window=3, stall_timeout=0.2, **FAST)
    began = time.monotonic()
    try:
        assert read_all(data, config, fetch, counters) == data
        assert time.monotonic() - began < 3
        assert counters.retries == 1
        assert counters.get_requests == 5
    finally:
        release.set()


def test_a_range_stalling_on_every_attempt_ends_in_transient_error() -> None:
    release = threading.Event()

    def fetch(start: int, end: int) -> bytes:
        release.wait(10)
        return bytes(end - start + 1)

    config = ReaderConfig(part_size=KiB, window=1, max_attempts=2, stall_timeout=0.1, **FAST)
    try:
        with pytest.raises(TransientS3Error, match="stalled"):
            list(read_in_order(fetch, KiB, config, TransferCounters(), is_retryable=retryable))
    finally:
        release.set()


def test_a_whole_window_stalling_at_once_recovers_within_the_stall_timeout() -> None:
    # Every first attempt hangs (a socket with no timeout): the replacements must not queue
    # behind the stuck threads, or the read would wait for those fetches to return.
    data = payload(6 * KiB)
    release = threading.Event()
    seen: set[int] = set()
    lock = threading.Lock()

    def fetch(start: int, end: int) -> bytes:
        with lock:
            first = start not in seen
            seen.add(start)
        if first:
            release.wait(10)
        return data[start : end + 1]

    counters = TransferCounters()
    config = ReaderConfig(part_size=KiB, window=4, stall_timeout=0.2, **FAST)
    began = time.monotonic()
    try:
        assert read_all(data, config, fetch, counters) == data
        assert time.monotonic() - began < 3
        assert counters.retries == 6
    finally:
        release.set()


def test_a_window_that_never_answers_fails_after_max_attempts_stall_timeouts() -> None:
    release = threading.Event()

    def fetch(start: int, end: int) -> bytes:
        release.wait(10)
        return bytes(end - start + 1)

    config = ReaderConfig(part_size=10, window=4, stall_timeout=0.2, max_attempts=3)
    began = time.monotonic()
    try:
        with pytest.raises(TransientS3Error, match="stalled"):
            list(read_in_order(fetch, 100, config, TransferCounters(), is_retryable=retryable))
        assert time.monotonic() - began < 3 * 0.2 + 1.5
    finally:
        release.set()


# --- closing early -----------------------------------------------------------------------


def test_closing_early_cancels_outstanding_ranges_promptly() -> None:
    size, part = 64 * KiB, KiB
    data = payload(size)
    gate = threading.Event()
    started: list[int] = []
    lock = threading.Lock()

    def fetch(start: int, end: int) -> bytes:
        with lock:
            started.append(start)
        if start:
            gate.wait(10)  # everything after the first range is slow
        return data[start : end + 1]

    it = read_in_order(
        fetch,
        size,
        ReaderConfig(part_size=part, window=4),
        TransferCounters(),
        is_retryable=retryable,
    )
    assert bytes(next(it)) == data[:part]
    began = time.monotonic()
    it.close()
    assert time.monotonic() - began < 0.5  # close does not wait for running fetches
    with lock:
        seen = len(started)
    gate.set()
    assert wait_until(lambda: not reader_threads())
    assert len(started) == seen <= 5  # nothing queued started after close


def test_closing_during_backoff_wakes_the_retry() -> None:
    data = payload(2 * KiB)
    fetch = FailTimes(data, {KiB: 99}, lambda: Flaky("throttled"))
    config = ReaderConfig(part_size=KiB, window=2, backoff_base=30.0, backoff_max=30.0)
    it = read_in_order(fetch, len(data), config, TransferCounters(), is_retryable=retryable)
    next(it)
    assert wait_until(lambda: len(fetch.calls) >= 2)
    it.close()
    # The worker sleeping up to 30 s in backoff is woken and exits (checked by the fixture).
    assert wait_until(lambda: not reader_threads(), timeout=2)


def test_dropping_an_unstarted_iterator_costs_nothing() -> None:
    it = read_in_order(
        lambda s, e: b"x", 1, ReaderConfig(), TransferCounters(), is_retryable=retryable
    )
    del it
    assert not reader_threads()


# --- the torrent is the same whatever the network did --------------------------------------


hashing = pytest.importorskip("s3torrent.hashing")
metainfo = pytest.importorskip("s3torrent.metainfo")


def torrent_of(hashes: object, meta: str) -> bytes:
    options = metainfo.TorrentOptions(
        meta_version=hashing.MetaVersion(meta), creation_date=None, created_by=None
    )
    return bytes(metainfo.build_torrent("object.bin", hashes, options).data)


@pytest.mark.parametrize("meta", ["1", "2", "hybrid"])
@pytest.mark.parametrize("size", [3 * 64 * KiB + 4099, 16 * KiB, 64 * KiB * 5, 100])
def test_a_range_failing_twice_still_gives_the_serial_torrent(meta: str, size: int) -> None:
    data = os.urandom(size)
    piece = 32 * KiB
    version = hashing.MetaVersion(meta)
    expected = torrent_of(hashing.hash_bytes(data, piece, version), meta)
    # Parts not aligned to pieces (a piece straddles two ranges); the second range, or the
    # only one when the object is smaller than a part, fails twice before it answers.
    part = 20 * KiB + 3
    flaky_start = part if size > part else 0
    fetch = FailTimes(data, {flaky_start: 2}, lambda: Flaky("connection reset"))
    counters = TransferCounters()
    config = ReaderConfig(part_size=part, window=3, **FAST)
    with hashing.PieceHasher(piece, version, workers=2) as hasher:
        for view in read_in_order(fetch, size, config, counters, is_retryable=retryable):
            hasher.update(view)
        got = torrent_of(hasher.finish(), meta)
    assert got == expected
    assert counters.retries == 2
    assert counters.bytes_read == size


def test_allocator_tuning_is_applied_once_and_never_fails() -> None:
    from s3torrent.ranged_reader import tune_allocator

    first = tune_allocator()
    assert isinstance(first, bool)
    assert tune_allocator() is first  # process-wide, decided once
