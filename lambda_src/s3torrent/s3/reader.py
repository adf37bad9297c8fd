"""Read one object as parallel ranged GETs, each thread hashing the bytes it just received.

One TCP stream to S3 carries far less than a core can hash, and a piece's hash depends on
that piece's bytes only. So `read_parts` splits the object into *parts* (runs of whole
pieces, `part_size` rounded to the piece length) and runs `window` threads, each with one
connection and one page-aligned buffer of `chunk_size` bytes: a thread takes the next
part, GETs it, reads it chunk by chunk straight into its buffer (`readinto`: the kernel's
copy is the only one) and hands each chunk to that part's sink (a `PartHasher`) while the
bytes are still in the CPU's cache. Sockets and hashlib both release the GIL, so the
threads spread over every core and nothing is reassembled: each part writes its own piece
slots. Memory is `window x chunk_size`, whatever the object's size.

Nothing here knows S3: a `RangeSource` opens `[start, end]` (the S3 transports in
objects.py and direct.py pin every range to the ETag seen at the start) and `is_retryable`
says which of its errors deserve another try.

Failure handling is per range, never per object. A retryable error, a body that ends
early, or a socket that stays silent for the transport's timeout (`stall_timeout`) retries
the rest of that part only, from the last whole chunk, after a backoff with full jitter;
attempts that make no progress are capped at `max_attempts`, after which the read fails
with `TransientS3Error` (so the job is retried later, e.g. by SQS). A non-retryable error
propagates unchanged at once, and the other threads stop at their next chunk.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from s3torrent.errors import TransientS3Error
from s3torrent.model import TransferCounters

KiB = 1024
MiB = 1024 * KiB


class RangeBody(Protocol):
    """The body of one ranged GET."""

    def readinto(self, buffer: memoryview, /) -> int:
        """Read up to len(buffer) bytes into it; 0 at the end of the body."""
        ...

    def close(self) -> None:
        """Release the connection (or drop it, if the body was not read to its end)."""
        ...


class RangeSource(Protocol):
    """Opens ranged reads of one object, pinned to the version being hashed."""

    def open_range(self, start: int, end: int, /) -> RangeBody:
        """GET bytes start..end (inclusive, as HTTP Range wants it)."""
        ...


class PartSink(Protocol):
    """Takes the bytes of one part, in order (a hashing.PartHasher)."""

    def write(self, chunk: memoryview, /) -> None: ...


@dataclass(frozen=True)
class ReaderConfig:
    """How `read_parts` reads: part size, connections, chunk size, retries, timeouts."""

    part_size: int = 16 * MiB  # bytes per GET; AWS suggests 8-16 MB ranges
    window: int = 16  # most connections (and threads) per object; see read_parts
    # Per-thread buffer. Bigger reads mean fewer wake-ups per byte: on the 2 GiB bench,
    # 256 KiB -> 4 MiB took a hybrid read from 2.7 to 2.4 s (sys time 0.9 -> 0.5 s).
    chunk_size: int = 4 * MiB
    max_attempts: int = 5  # attempts per range that make no progress, the first included
    backoff_base: float = 0.1  # seconds; the n-th retry waits up to base * 2**(n-1)
    backoff_max: float = 5.0
    stall_timeout: float = 30.0  # seconds a socket may stay silent (the transports apply it)

    def __post_init__(self) -> None:
        if self.part_size < 1:
            raise ValueError(f"part_size must be at least 1 byte: {self.part_size}")
        if self.window < 1:
            raise ValueError(f"window must be at least 1: {self.window}")
        if self.chunk_size < 16 * KiB or self.chunk_size % (16 * KiB):
            raise ValueError(f"chunk_size must be a multiple of 16 KiB: {self.chunk_size}")
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

    def parts(self, size: int, align: int) -> list[tuple[int, int]]:
        """[start, stop) of every part: `part_size` rounded to a multiple of `align`."""
        step = max(align, self.part_size // align * align)
        return [(start, min(size, start + step)) for start in range(0, size, step)]


class ShortRead(Exception):
    """A body ended before the range it was asked for (retried like a dropped connection)."""


class _Worker:
    """What one thread did: read by the caller's thread for progress, summed at the end."""

    __slots__ = ("bytes_read", "cpu", "get_requests", "retries")

    def __init__(self) -> None:
        self.bytes_read = 0
        self.get_requests = 0
        self.retries = 0
        self.cpu = 0.0  # this thread's seconds on or waiting for a CPU, as of its last chunk


class _Read:
    """The state of one `read_parts` call, shared by its threads."""

    # How often the caller's thread looks at how busy the readers are, and the share of
    # their time on a CPU below which it opens more connections. 50 ms: from 2 to 16
    # connections takes three looks, so far from the data the ramp costs ~0.15 s, not the
    # ~0.6 s of a 0.2 s tick (a 2 GiB read at 88 MB/s per connection: 1.59 s against 1.88 s;
    # the ideal is 1.53 s). Next to the data the threads stay busy and it never fires.
    RAMP_EVERY = 0.05
    RAMP_BELOW = 0.5

    def __init__(
        self,
        source: RangeSource,
        parts: list[tuple[int, int]],
        sink_for: Callable[[int, int], PartSink],
        config: ReaderConfig,
        is_retryable: Callable[[BaseException], bool],
    ) -> None:
        self._source = source
        self._parts = parts
        self._next_part = 0
        self._sink_for = sink_for
        self._config = config
        self._is_retryable = is_retryable
        self._lock = threading.Lock()
        self.stop = threading.Event()  # set: the read failed or was abandoned
        self.workers: list[_Worker] = []

    @property
    def bytes_read(self) -> int:
        """Bytes every thread has handed to its sinks so far."""
        return sum(worker.bytes_read for worker in self.workers)

    @property
    def parts_left(self) -> int:
        """Parts no thread has taken yet."""
        with self._lock:
            return len(self._parts) - self._next_part

    def run_worker(self) -> None:
        worker = _Worker()
        with self._lock:
            self.workers.append(worker)
        # Page-aligned and kept for the whole read: the kernel copies each chunk into the
        # same hot pages (a fresh unaligned bytearray per part measured ~2x more sys time).
        buffer = mmap.mmap(-1, self._config.chunk_size)
        view = memoryview(buffer)
        try:
            while not self.stop.is_set():
                with self._lock:
                    if self._next_part == len(self._parts):
                        return
                    start, stop = self._parts[self._next_part]
                    self._next_part += 1
                self._read_part(start, stop, view, worker)
        except BaseException:
            self.stop.set()
            raise
        finally:
            view.release()
            # A view of the buffer may outlive this read in a traceback (the chunk being
            # read when an error came): then the mapping goes with that last view, and
            # closing it here would replace the error with a BufferError.
            with contextlib.suppress(BufferError):
                buffer.close()

    def _read_part(self, start: int, stop: int, view: memoryview, worker: _Worker) -> None:
        config = self._config
        sink = self._sink_for(start, stop)
        pos = start
        failures = 0  # consecutive attempts without a single whole chunk
        while pos < stop:
            worker.get_requests += 1
            try:
                body = self._source.open_range(pos, stop - 1)
                try:
                    while pos < stop:
                        want = min(config.chunk_size, stop - pos)
                        chunk = view[:want]
                        _fill(body, chunk, pos)
                        # Only whole chunks reach the sink, so a retry resumes at `pos`
                        # with the sink exactly where the bytes left it.
                        sink.write(chunk)
                        pos += want
                        worker.bytes_read += want
                        worker.cpu = _thread_busy_seconds()
                        failures = 0
                        if self.stop.is_set():
                            return
                finally:
                    body.close()
            except Exception as error:
                if not isinstance(error, ShortRead) and not self._is_retryable(error):
                    raise
                failures += 1
                if failures >= config.max_attempts:
                    raise TransientS3Error(
                        f"range bytes={pos}-{stop - 1} failed {failures} times in a row,"
                        f" last: {error}"
                    ) from error
                worker.retries += 1
                # Event.wait, not time.sleep: a failure elsewhere wakes the backoff at once.
                if self.stop.wait(config.backoff(failures)):
                    return


_SCHEDSTAT = Path("/proc/thread-self/schedstat")


def _thread_busy_seconds() -> float:
    """Seconds this thread has run or sat runnable waiting for a CPU (not blocked on I/O).

    Linux's schedstat counts both; run-queue time matters on a shared machine, where a
    thread starved of CPU would otherwise look idle and open more connections. Elsewhere,
    CPU time alone.
    """
    try:
        on_cpu, waiting = _SCHEDSTAT.read_bytes().split()[:2]
        return (int(on_cpu) + int(waiting)) / 1e9
    except (OSError, ValueError):
        return time.thread_time()


def _fill(body: RangeBody, chunk: memoryview, offset: int) -> None:
    got = 0
    size = len(chunk)
    while got < size:
        count = body.readinto(chunk[got:])
        if not count:
            raise ShortRead(f"the body ended {size - got} bytes early at {offset + got}")
        got += count


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, where the OS tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def read_parts(
    source: RangeSource,
    size: int,
    sink_for: Callable[[int, int], PartSink],
    config: ReaderConfig,
    counters: TransferCounters,
    *,
    align: int = 1,
    is_retryable: Callable[[BaseException], bool],
    on_progress: Callable[[int, int], None] | None = None,
    progress_every: float = 1.0,
) -> None:
    """Read all `size` bytes from `source`, part by part on up to `config.window` threads.

    Every part [start, stop) (a multiple of `align` long, the last one excepted) gets
    `sink_for(start, stop)` and then its bytes, in order, in chunks of at most
    `config.chunk_size`. `on_progress(bytes_done, size)` is called on this thread about
    every `progress_every` seconds, and once more at the end. `counters` gets GETs,
    retries, bytes and seconds.

    Connections start at one per usable core and double, up to `config.window`, while the
    reading threads spend less than half their time running or waiting for a CPU: far
    from the data (S3 at ~90 MB/s a connection) they mostly wait on sockets, and more
    connections mean more bytes; next to it (a loopback endpoint) the cores are the limit,
    and each extra connection only fills one more socket buffer the kernel then copies out
    of DRAM instead of cache (measured on the 2 GiB bench: hybrid 2.4 s with 2-3
    connections, 3.1-3.6 s with 6-8). The threads' own clocks are the signal, not the
    process's: on a shared machine (or next to the server) the process may never get all
    its cores while every thread is busy.

    On failure the first error is raised as soon as it is seen; threads still reading
    stop at their next chunk (or their socket's timeout) without being waited for.
    """
    if size < 0:
        raise ValueError(f"size must not be negative: {size}")
    if align < 1:
        raise ValueError(f"align must be at least 1: {align}")
    began = time.monotonic()
    parts = config.parts(size, align)
    read = _Read(source, parts, sink_for, config, is_retryable)
    most = min(config.window, len(parts))
    if not most:
        return
    cores = usable_cores()
    executor = ThreadPoolExecutor(most, thread_name_prefix="s3torrent-read")
    futures: list[Future[None]] = [
        executor.submit(read.run_worker) for _ in range(min(most, cores))
    ]
    last_progress = ramp_wall = began
    ramp_cpu = 0.0  # the readers' busy seconds at the last tick (fresh threads start at 0)
    try:
        while True:
            done, pending = wait(futures, timeout=_Read.RAMP_EVERY, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # the first failure, unchanged
            if not pending:
                if on_progress is not None:
                    on_progress(read.bytes_read, size)
                break
            now = time.monotonic()
            cpu = sum(worker.cpu for worker in read.workers)
            busy = (cpu - ramp_cpu) / ((now - ramp_wall) * len(futures))
            if len(futures) < most and busy < _Read.RAMP_BELOW:
                more = min(len(futures), most - len(futures), read.parts_left)
                futures += [executor.submit(read.run_worker) for _ in range(more)]
            ramp_wall, ramp_cpu = now, cpu
            if on_progress is not None and now - last_progress >= progress_every:
                last_progress = now
                on_progress(read.bytes_read, size)
    finally:
        read.stop.set()
        # Not waiting: a thread blocked on a silent socket ends at the socket's timeout.
        executor.shutdown(wait=False, cancel_futures=True)
        counters.get_requests += sum(worker.get_requests for worker in read.workers)
        counters.retries += sum(worker.retries for worker in read.workers)
        counters.bytes_read += read.bytes_read
        counters.seconds += time.monotonic() - began
