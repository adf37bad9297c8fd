"""ConcatenatedSource: ranges of the members laid end to end, and short bodies kept short."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from s3torrent.collections.reading import ConcatenatedSource
from s3torrent.model import ObjectInfo, ObjectRef

CONTENT = {"a": b"0123", "empty": b"", "b": b"456", "c": b"789abc"}


def infos() -> list[ObjectInfo]:
    return [ObjectInfo(ObjectRef("b", k), len(v), f'"{k}"', None, None) for k, v in CONTENT.items()]


@dataclass
class Body:
    data: bytes
    short_by: int = 0
    closed: bool = False

    def readinto(self, buffer: memoryview) -> int:
        available = self.data[: max(0, len(self.data) - self.short_by)]
        count = min(len(buffer), len(available), 2)  # small reads, as a socket gives
        buffer[:count] = available[:count]
        self.data = self.data[count:]
        return count

    def close(self) -> None:
        self.closed = True


class Source:
    def __init__(self, info: ObjectInfo, opened: list[tuple[str, int, int]], short: str) -> None:
        self.info, self.opened, self.short = info, opened, short

    def open_range(self, start: int, end: int) -> Body:
        self.opened.append((self.info.ref.key, start, end))
        data = CONTENT[self.info.ref.key][start : end + 1]
        return Body(data, short_by=1 if self.info.ref.key == self.short else 0)


def read_all(source: ConcatenatedSource, start: int, end: int) -> bytes:
    body = source.open_range(start, end)
    out = bytearray()
    buffer = memoryview(bytearray(5))
    while count := body.readinto(buffer):
        out += buffer[:count]
    body.close()
    return bytes(out)


@pytest.mark.parametrize(("start", "end"), [(0, 12), (2, 5), (4, 6), (6, 7), (12, 12), (3, 10)])
def test_any_range_reads_the_concatenated_bytes(start: int, end: int) -> None:
    opened: list[tuple[str, int, int]] = []
    source = ConcatenatedSource(infos(), lambda info: Source(info, opened, short=""))
    assert source.size == 13
    assert read_all(source, start, end) == b"".join(CONTENT.values())[start : end + 1]
    assert all(key != "empty" for key, _, _ in opened)  # 0-byte members take no request


def test_a_member_body_that_ends_early_ends_the_range_there() -> None:
    opened: list[tuple[str, int, int]] = []
    source = ConcatenatedSource(infos(), lambda info: Source(info, opened, short="b"))
    # "a" whole, then "b" one byte short: the reader sees a short read, never "c"'s bytes.
    assert read_all(source, 0, 12) == b"0123" + b"45"
    assert [key for key, _, _ in opened] == ["a", "b"]


def test_a_range_outside_the_stream_is_refused() -> None:
    source = ConcatenatedSource(infos(), lambda info: Source(info, [], short=""))
    with pytest.raises(ValueError, match="outside"):
        source.open_range(0, 13)
