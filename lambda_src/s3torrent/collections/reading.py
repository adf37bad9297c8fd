"""The members of a collection read as one stream, for v1's pieces that span files.

`ConcatenatedSource` is a `RangeSource` (s3/reader.py) over the members' bytes laid end to
end in file order: a range of the stream opens one ranged GET per member it covers, each
pinned to the ETag the listing showed (`If-Match`), one after the other. So `read_parts`
keeps doing what it does for one object (parts of whole pieces on several threads, retries
per range) and a member overwritten mid-build fails the read with ObjectChanged.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from s3torrent.model import ObjectInfo
from s3torrent.s3.reader import RangeBody, RangeSource


class ConcatenatedSource:
    """Ranged reads of several objects laid end to end (0-byte ones take no room)."""

    def __init__(
        self, members: Sequence[ObjectInfo], source_for: Callable[[ObjectInfo], RangeSource]
    ) -> None:
        self._members = [info for info in members if info.size > 0]
        self._starts: list[int] = []
        offset = 0
        for info in self._members:
            self._starts.append(offset)
            offset += info.size
        self.size = offset
        self._source_for = source_for
        self._sources: dict[int, RangeSource] = {}

    def open_range(self, start: int, end: int) -> RangeBody:
        """Bytes start..end (inclusive) of the stream."""
        if not 0 <= start <= end < self.size:
            raise ValueError(f"range {start}-{end} outside 0-{self.size - 1}")
        spans: list[tuple[int, int, int]] = []  # (member, first byte, last byte)
        index = bisect.bisect_right(self._starts, start) - 1
        position = start
        while position <= end:
            base = self._starts[index]
            last = min(end, base + self._members[index].size - 1)
            spans.append((index, position - base, last - base))
            position = last + 1
            index += 1
        return _ChainedBody(self, spans)

    def _open(self, index: int, first: int, last: int) -> RangeBody:
        source = self._sources.get(index)
        if source is None:
            source = self._sources[index] = self._source_for(self._members[index])
        return source.open_range(first, last)


class _ChainedBody:
    """One member's ranged GET after another; ends early (0) when one of them does, so the
    reader retries from its last whole chunk instead of shifting bytes between files."""

    def __init__(self, source: ConcatenatedSource, spans: list[tuple[int, int, int]]) -> None:
        self._source = source
        self._spans = spans
        self._body: RangeBody | None = None
        self._left = 0  # bytes the open body still owes

    def readinto(self, buffer: memoryview) -> int:
        while True:
            if self._body is None:
                if not self._spans:
                    return 0
                index, first, last = self._spans.pop(0)
                self._body = self._source._open(index, first, last)
                self._left = last - first + 1
            count = self._body.readinto(buffer[: self._left])
            if count:
                self._left -= count
                if not self._left:
                    self._finish()
                return count
            if self._left:
                return 0  # this member's body ended early: a short read, retried
            self._finish()

    def _finish(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()

    def close(self) -> None:
        self._finish()
