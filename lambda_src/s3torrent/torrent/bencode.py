"""Strict bencoding (BEP 3): one canonical encoding per value, so info hashes are stable."""

from __future__ import annotations

from collections.abc import Mapping

from s3torrent.torrent.errors import BencodeError

BencodeValue = int | bytes | list["BencodeValue"] | dict[bytes, "BencodeValue"]

# Deeper than any real torrent (a v2 `file tree` nests one level per path segment), shallow
# enough that hostile input cannot exhaust Python's recursion limit.
MAX_DEPTH = 256

_DIGITS = frozenset(b"0123456789")


def encode(value: object) -> bytes:
    """Bencode `value`: int, bytes, str (UTF-8), list/tuple, dict with bytes or str keys."""
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def _encode(value: object, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BencodeError(f"cannot encode: nesting deeper than {MAX_DEPTH}")
    # bool is an int subclass; True would silently become i1e, which is never what was meant.
    if isinstance(value, bool):
        raise BencodeError(f"cannot encode a bool: {value!r}")
    if isinstance(value, int):
        out += b"i%de" % value
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        out += b"%d:" % len(raw)
        out += raw
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out += b"%d:" % len(raw)
        out += raw
    elif isinstance(value, list | tuple):
        out += b"l"
        for item in value:
            _encode(item, out, depth + 1)
        out += b"e"
    elif isinstance(value, Mapping):
        items: dict[bytes, object] = {}
        for key, item in value.items():
            if isinstance(key, str):
                raw_key = key.encode("utf-8")
            elif isinstance(key, bytes):
                raw_key = key
            else:
                raise BencodeError(f"dict keys must be bytes or str, not {type(key).__name__}")
            if raw_key in items:
                raise BencodeError(f"duplicate dict key after encoding: {raw_key!r}")
            items[raw_key] = item
        out += b"d"
        # BEP 3: keys sorted as raw strings, not alphanumerics.
        for raw_key in sorted(items):
            out += b"%d:" % len(raw_key)
            out += raw_key
            _encode(items[raw_key], out, depth + 1)
        out += b"e"
    else:
        raise BencodeError(f"cannot encode a {type(value).__name__}: {value!r:.80}")


def decode(data: bytes, *, sorted_keys: bool = True) -> BencodeValue:
    """Decode one bencoded value; reject anything that is not its canonical encoding.

    `sorted_keys=False` accepts dict keys out of order (never duplicated): radosgw writes
    `encoding` before `creation date` at the top level of its torrents.
    """
    value, end = _Decoder(data, sorted_keys).decode(0, 0)
    if end != len(data):
        raise BencodeError(f"trailing data at offset {end}: {len(data) - end} bytes after value")
    return value


def dict_spans(data: bytes, *, sorted_keys: bool = True) -> dict[bytes, tuple[int, int]]:
    """Offsets (start, end) of each value of the top-level dict in `data`, as it appears.

    An info hash is the hash of the info dict's bytes exactly as written; re-encoding a
    decoded dict only gives the same bytes when the input was canonical.
    """
    decoder = _Decoder(data, sorted_keys)
    if not data.startswith(b"d"):
        raise BencodeError("offset 0: expected a dict")
    spans: dict[bytes, tuple[int, int]] = {}
    pos = 1
    previous: bytes | None = None
    while True:
        if pos >= len(data):
            raise BencodeError(f"offset {pos}: truncated dict")
        if data[pos] == ord("e"):
            pos += 1
            break
        if data[pos] not in _DIGITS:
            raise BencodeError(f"offset {pos}: dict key must be a byte string")
        key_start = pos
        key, pos = decoder.decode_bytes(pos)
        decoder.check_key(key, previous, key_start, spans)
        previous = key
        start = pos
        _, pos = decoder.decode(pos, 1)
        spans[key] = (start, pos)
    if pos != len(data):
        raise BencodeError(f"trailing data at offset {pos}: {len(data) - pos} bytes after value")
    return spans


class _Decoder:
    def __init__(self, data: bytes, sorted_keys: bool = True) -> None:
        if not isinstance(data, bytes):
            raise BencodeError(f"can only decode bytes, not {type(data).__name__}")
        self.data = data
        self.sorted_keys = sorted_keys

    def check_key(
        self, key: bytes, previous: bytes | None, offset: int, seen: Mapping[bytes, object]
    ) -> None:
        if key in seen:
            raise BencodeError(f"offset {offset}: duplicate dict key {key!r}")
        if self.sorted_keys and previous is not None and key < previous:
            raise BencodeError(f"offset {offset}: unsorted dict key {key!r} after {previous!r}")

    def decode(self, pos: int, depth: int) -> tuple[BencodeValue, int]:
        data = self.data
        if pos >= len(data):
            raise BencodeError(f"offset {pos}: truncated input, expected a value")
        if depth > MAX_DEPTH:
            raise BencodeError(f"offset {pos}: nesting deeper than {MAX_DEPTH}")
        lead = data[pos]
        if lead == ord("i"):
            return self.decode_int(pos)
        if lead in _DIGITS:
            return self.decode_bytes(pos)
        if lead == ord("l"):
            items: list[BencodeValue] = []
            pos += 1
            while True:
                if pos >= len(data):
                    raise BencodeError(f"offset {pos}: truncated list")
                if data[pos] == ord("e"):
                    return items, pos + 1
                item, pos = self.decode(pos, depth + 1)
                items.append(item)
        if lead == ord("d"):
            result: dict[bytes, BencodeValue] = {}
            previous: bytes | None = None
            pos += 1
            while True:
                if pos >= len(data):
                    raise BencodeError(f"offset {pos}: truncated dict")
                if data[pos] == ord("e"):
                    return result, pos + 1
                if data[pos] not in _DIGITS:
                    raise BencodeError(f"offset {pos}: dict key must be a byte string")
                key_start = pos
                key, pos = self.decode_bytes(pos)
                self.check_key(key, previous, key_start, result)
                previous = key
                result[key], pos = self.decode(pos, depth + 1)
        raise BencodeError(f"offset {pos}: unexpected byte {bytes([lead])!r}")

    def decode_int(self, pos: int) -> tuple[int, int]:
        data = self.data
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise BencodeError(f"offset {pos}: truncated integer")
        body = data[pos + 1 : end]
        digits = body[1:] if body.startswith(b"-") else body
        if not digits or not all(c in _DIGITS for c in digits):
            raise BencodeError(f"offset {pos}: invalid integer {body!r}")
        if body == b"-0":
            raise BencodeError(f"offset {pos}: negative zero integer")
        if len(digits) > 1 and digits.startswith(b"0"):
            raise BencodeError(f"offset {pos}: integer with leading zero {body!r}")
        return int(body), end + 1

    def decode_bytes(self, pos: int) -> tuple[bytes, int]:
        data = self.data
        colon = data.find(b":", pos)
        if colon < 0:
            raise BencodeError(f"offset {pos}: truncated string length")
        head = data[pos:colon]
        if not head or not all(c in _DIGITS for c in head):
            raise BencodeError(f"offset {pos}: invalid string length {head[:20]!r}")
        if len(head) > 1 and head.startswith(b"0"):
            raise BencodeError(f"offset {pos}: string length with leading zero {head!r}")
        length = int(head)
        start = colon + 1
        if start + length > len(data):
            raise BencodeError(
                f"offset {pos}: truncated string, {length} bytes declared,"
                f" {len(data) - start} available"
            )
        return data[start : start + length], start + length


# Checked views of decoded values, for records the deployment stores as bencode (collections'
# hash records, fan-out manifests and parts): TypeError names what was found instead, and each
# record reader turns it into its own "unreadable".


def as_list(value: object) -> list[object]:
    """A decoded list, or TypeError."""
    if not isinstance(value, list):
        raise TypeError(f"not a list: {type(value).__name__}")
    return value


def as_text(value: object) -> str:
    """A decoded string as UTF-8 text, or TypeError."""
    if not isinstance(value, bytes):
        raise TypeError(f"not a string: {type(value).__name__}")
    return value.decode("utf-8")


def as_count(value: object) -> int:
    """A decoded integer of at least 0 (a size, an index), or TypeError."""
    if not isinstance(value, int) or value < 0:
        raise TypeError(f"not a count: {value!r}")
    return value


def as_bytes(value: object) -> bytes:
    """A decoded byte string, or TypeError."""
    if not isinstance(value, bytes):
        raise TypeError(f"not bytes: {type(value).__name__}")
    return value
