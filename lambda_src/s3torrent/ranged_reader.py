"""Overlapped ranged reads of one object, yielded in order, with bounded memory.

One TCP stream to S3 carries far less than the hashers can eat, so `read_in_order` keeps
`window` ranged fetches in flight on a small thread pool and hands the parts back strictly
in order. It knows nothing about S3: the caller passes `fetch(start, end_inclusive)` (the
S3 adapter pins each range to the ETag seen at the start) and `is_retryable` (the adapter
knows which of its errors are worth another try).

Failure handling is per range, never per object: a retryable failure, a short answer or a
stall retries that range alone, with exponential backoff and full jitter; a non-retryable
error propagates unchanged as soon as it is seen; running out of attempts raises
`TransientS3Error` (so the whole job is retried later, e.g. by SQS).

Memory: at most `window` parts exist at once (the one the caller holds included), so the
reader's footprint is `window * part_size` whatever the object's size.
"""

from __future__ import annotations

import ctypes
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from s3torrent.errors import TransientS3Error
from s3torrent.model import TransferCounters

MiB = 1024 * 1024

Fetch = Callable[[int, int], bytes | memoryview]

# glibc's mallopt() parameters (malloc.h) and the largest mmap threshold it accepts on
# 64-bit (HEAP_MAX_SIZE / 2).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_MMAP_THRESHOLD_MAX = 32 * MiB
_allocator_lock = threading.Lock()
_allocator_tuned: bool | None = None


def tune_allocator() -> bool:
    """Make glibc recycle freed parts in the heap instead of unmapping and refaulting them.

    Every part is a fresh `bytes` of `part_size` (urllib3 reads the body into one buffer),
    freed once hashed. With glibc's defaults those buffers land in per-thread arenas that
    are trimmed back to the kernel as soon as they are freed, so each part page-faults in
    anew: for 2 GiB read in 8-16 MiB parts that was ~200,000 faults and ~0.5 s of kernel
    time out of a ~3 s CPU budget, and freed memory scattered over one arena per reader
    thread pushed peak RSS from ~190 to ~280 MiB (16 MiB x 6). Measured fix: one arena,
    allocations under 32 MiB from the heap, trim only above 64 MiB (glibc's own dynamic
    rule for that threshold) -> ~45,000 faults (mostly imports), RSS back to
    base + parts in flight. Process-wide, once, before the reader threads exist; a no-op
    where mallopt is missing (macOS) or ignored (musl). Returns True when applied.
    """
    global _allocator_tuned
    with _allocator_lock:
        if _allocator_tuned is not None:
            return _allocator_tuned
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError, TypeError):
            _allocator_tuned = False
            return False
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        applied = [
            mallopt(_M_ARENA_MAX, 1),
            mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX),
            mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX),
        ]
        _allocator_tuned = all(result == 1 for result in applied)
        return _allocator_tuned


@dataclass(frozen=True)
class ReaderConfig:
    """How `read_in_order` reads: part size, parts in flight, retries, stall detection."""

    part_size: int = 16 * MiB  # AWS suggests 8-16 MB ranges; 16 halves per-GET CPU (bench)
    window: int = 6  # parts in flight (and at most this many parts in memory)
    max_attempts: int = 5  # per range, the first try included
    backoff_base: float = 0.1  # seconds; the n-th retry waits up to base * 2**(n-1)
    backoff_max: float = 5.0
    stall_timeout: float = 30.0  # seconds one attempt may take before it counts as failed

    def __post_init__(self) -> None:
        if self.part_size < 1:
            raise ValueError(f"part_size must be at least 1 byte: {self.part_size}")
        if self.window < 1:
            raise ValueError(f"window must be at least 1: {self.window}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1: {self.max_attempts}")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError(
                f"backoff must not be negative: {self.backoff_base}, {self.backoff_max}"
            )
        if self.stall_timeout <= 0:
            raise ValueError(f"stall_timeout must be positive: {self.stall_timeout}")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based): full jitter, capped.

        Full jitter (uniform in [0, cap]) spreads the retries of many readers hitting the
        same throttled prefix instead of having them come back in lockstep.
        """
        cap = min(self.backoff_max, self.backoff_base * (2 ** (retry - 1)))
        return random.uniform(0.0, cap)


class _Abandoned(Exception):
    """Raised inside a worker whose attempt was given up (stall) or whose reader closed."""


class _StalledRead(Exception):
    """An attempt that made no progress for `stall_timeout` seconds."""


class _ShortRead(Exception):
    """`fetch` answered with a different number of bytes than the range asked for."""


class _Part:
    """One range and its retry state; shared by the consumer and the worker running it."""

    __slots__ = ("attempts", "end", "future", "index", "start", "started", "token")

    def __init__(self, index: int, start: int, end: int) -> None:
        self.index = index
        self.start = start
        self.end = end  # inclusive, as HTTP Range wants it
        self.attempts = 0  # attempts started so far
        self.started: float | None = None  # monotonic start of the running attempt
        self.token = threading.Event()  # set: this task's work is no longer wanted
        self.future: Future[memoryview] | None = None

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def describe(self) -> str:
        return f"bytes={self.start}-{self.end}"


class _Reader:
    """The state of one `read_in_order` call (kept off the generator for readability)."""

    def __init__(
        self,
        fetch: Fetch,
        config: ReaderConfig,
        counters: TransferCounters,
        is_retryable: Callable[[BaseException], bool],
    ) -> None:
        self._fetch = fetch
        self._config = config
        self._counters = counters
        self._is_retryable = is_retryable
        # Counters are bumped from worker threads: `+=` on an attribute is not atomic.
        self._lock = threading.Lock()
        # Two spare threads: a stalled fetch keeps its thread (see _spawn), and the parts
        # submitted after it should not wait for a free one.
        self._executor = ThreadPoolExecutor(
            max_workers=config.window + 2, thread_name_prefix="s3torrent-read"
        )
        self._spawned = 0

    # -- worker side ----------------------------------------------------------------------

    def _run(self, part: _Part, token: threading.Event) -> memoryview:
        """Fetch one range, retrying it in place (on a pool thread, or its own: see _spawn)."""
        while True:
            with self._lock:
                # Checked under the lock restart_stalled holds: once a replacement exists,
                # this task never counts or starts another attempt.
                if token.is_set():
                    raise _Abandoned
                part.attempts += 1
                attempt = part.attempts
                part.started = time.monotonic()
                self._counters.get_requests += 1
            try:
                data = self._fetch(part.start, part.end)
                view = memoryview(data)
                if view.ndim != 1 or view.itemsize != 1:
                    view = view.cast("B")
                if len(view) != part.length:
                    raise _ShortRead(f"{part.describe()}: got {len(view)} bytes")
            except Exception as exc:
                if token.is_set():
                    raise _Abandoned from exc
                if not isinstance(exc, _ShortRead) and not self._is_retryable(exc):
                    raise  # unchanged, the consumer re-raises it as is
                self._retry_or_give_up(part, attempt, token, exc)
                continue
            if token.is_set():
                raise _Abandoned
            with self._lock:
                self._counters.bytes_read += len(view)
            return view

    def _retry_or_give_up(
        self, part: _Part, attempt: int, token: threading.Event, exc: BaseException
    ) -> None:
        config = self._config
        if attempt >= config.max_attempts:
            raise TransientS3Error(
                f"range {part.describe()} failed {attempt} times, last: {exc!r}"
            ) from exc
        with self._lock:
            if token.is_set():  # replaced meanwhile: the replacement owns `part` now
                raise _Abandoned from exc
            self._counters.retries += 1
            part.started = None  # sleeping is not stalling
        # Event.wait, not time.sleep: closing the reader wakes the backoff at once.
        if token.wait(config.backoff(attempt)):
            raise _Abandoned from exc

    # -- consumer side --------------------------------------------------------------------

    def submit(self, part: _Part) -> None:
        part.token = threading.Event()
        # Time spent queued counts as no progress too: a task stuck behind stalled threads
        # is found and moved like a stalled one.
        part.started = time.monotonic()
        part.future = self._executor.submit(self._run, part, part.token)

    def _spawn(self, part: _Part) -> None:
        """Run the next attempt of `part` on a thread of its own.

        A stalled attempt keeps its pool thread until the fetch returns (a thread cannot be
        interrupted; in production the client's read timeout frees it). Its replacement must
        not queue behind it, or a window of stuck fetches would hold the reader until those
        timeouts instead of `stall_timeout`. Stalls are rare, so one thread each is cheap.
        """
        token = part.token = threading.Event()
        future: Future[memoryview] = Future()

        def attempt() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = self._run(part, token)
            except BaseException as exc:  # handed to the consumer, like the pool does
                future.set_exception(exc)
            else:
                future.set_result(result)

        self._spawned += 1
        part.started = time.monotonic()
        part.future = future
        threading.Thread(
            target=attempt, name=f"s3torrent-read-retry_{self._spawned}", daemon=True
        ).start()

    def restart_stalled(self, part: _Part) -> None:
        """Give up the running attempt of `part` (no progress) and start another."""
        with self._lock:
            attempt = part.attempts
            part.started = None
            part.token.set()  # the stuck thread drops its answer whenever fetch returns
        if attempt >= self._config.max_attempts:
            raise TransientS3Error(
                f"range {part.describe()} stalled for {self._config.stall_timeout:g} s"
                f" on attempt {attempt} of {self._config.max_attempts}"
            ) from _StalledRead(part.describe())
        with self._lock:
            self._counters.retries += 1
        if part.future is not None:
            part.future.cancel()  # still queued: it never starts
        self._spawn(part)

    def wait_for(self, head: _Part, parts: deque[_Part]) -> memoryview:
        """Block until `head` is fetched; fail fast if any part in flight failed for good."""
        stall = self._config.stall_timeout
        while True:
            assert head.future is not None
            if head.future.done():
                return head.future.result()  # its own error, unchanged
            self._raise_first_failure(parts)
            now = time.monotonic()
            timeout = stall
            for part in parts:
                started = part.started
                if started is None or part.future is None or part.future.done():
                    continue
                left = started + stall - now
                if left <= 0:
                    self.restart_stalled(part)
                else:
                    timeout = min(timeout, left)
            pending = [p.future for p in parts if p.future is not None and not p.future.done()]
            wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)

    @staticmethod
    def _raise_first_failure(parts: deque[_Part]) -> None:
        for part in parts:
            future = part.future
            if future is not None and future.done() and future.exception() is not None:
                future.result()  # raises it, unchanged

    def close(self) -> None:
        """Stop everything promptly: queued ranges never start, backoffs wake up."""
        # Running fetches cannot be interrupted; their threads exit as soon as they return
        # and the answers are dropped. Nothing waits for them here, so close() is prompt.
        self._executor.shutdown(wait=False, cancel_futures=True)

    def tick(self, since: float) -> float:
        now = time.monotonic()
        with self._lock:
            self._counters.seconds += now - since
        return now


def read_in_order(
    fetch: Fetch,
    size: int,
    config: ReaderConfig,
    counters: TransferCounters,
    *,
    is_retryable: Callable[[BaseException], bool],
) -> Iterator[memoryview]:
    """Yield the `size` bytes `fetch` serves, part by part and in order.

    `fetch(start, end_inclusive)` returns exactly those bytes; up to `config.window` calls
    run at once. A failure `is_retryable` accepts (or a short answer, or an attempt over
    `stall_timeout`) retries that range with backoff; a non-retryable error propagates
    unchanged; a range out of attempts raises `TransientS3Error`. Closing the iterator
    early cancels the ranges not yet started and returns without waiting for running ones.
    `counters` gets GETs, retries, bytes and seconds as they happen.
    """
    if size < 0:
        raise ValueError(f"size must not be negative: {size}")
    if size == 0:
        return
    part_size = config.part_size
    count = -(-size // part_size)
    tune_allocator()
    reader = _Reader(fetch, config, counters, is_retryable)
    parts: deque[_Part] = deque()
    next_index = 0
    since = time.monotonic()
    try:
        while next_index < count or parts:
            # Refill before taking the head: `window` parts in flight while the caller works
            # on the previous one, which it has dropped by the time it asks for the next.
            while next_index < count and len(parts) < config.window:
                start = next_index * part_size
                part = _Part(next_index, start, min(size, start + part_size) - 1)
                reader.submit(part)
                parts.append(part)
                next_index += 1
            head = parts[0]
            view = reader.wait_for(head, parts)
            parts.popleft()
            head.future = None  # the caller's reference is the only one left
            since = reader.tick(since)
            yield view
            del view
    finally:
        for part in parts:
            part.token.set()
        reader.close()
        reader.tick(since)
