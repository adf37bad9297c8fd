"""Plain text for a terminal: byte counts, aligned rows and a progress bar.

Standard library only, so `--help` and usage errors, which print through here, stay cheap.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import IO


def human_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} PiB"  # pragma: no cover


def one_line(text: object) -> str:
    """`text` with every run of whitespace, newlines included, made one space."""
    return " ".join(str(text).split())


def print_rows(rows: Iterable[tuple[str, object]], out: IO[str]) -> None:
    """`label         value` lines; rows without a value are left out rather than blank."""
    for label, value in rows:
        if value is None or value == "" or value == []:
            continue
        print(f"{label:<14}{value}", file=out)


class ProgressBar:
    """`[#####.....]  45%  1.2 GiB / 2.7 GiB  310 MiB/s  ETA 0:05` on a terminal's stderr."""

    WIDTH = 24
    INTERVAL = 0.1  # seconds between redraws: more is flicker and wasted writes

    def __init__(self, stream: IO[str], label: str) -> None:
        self.stream = stream
        self.label = label
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = False

    def update(self, done: int, total: int) -> None:
        """Redraw for `done` of `total` bytes (at most every INTERVAL, always at the end)."""
        now = time.monotonic()
        if now - self.last < self.INTERVAL and done < total:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        fraction = done / total if total else 1.0
        filled = int(self.WIDTH * fraction)
        eta = (total - done) / rate if rate > 0 else 0.0
        minutes, seconds = divmod(int(eta), 60)
        line = (
            f"\r{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%}"
            f"  {human_bytes(done)} / {human_bytes(total)}  {human_bytes(rate)}/s"
            f"  ETA {minutes}:{seconds:02d} "
        )
        self.stream.write(line)
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        """Erase the bar, so what follows starts on a clean line."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
