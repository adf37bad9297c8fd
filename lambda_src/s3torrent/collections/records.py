"""Records of what a collection's build hashed, so that the next build reads only what changed.

One `HashRecord` per collection, as plain values (the engine's `PieceHashes` are ints and
bytes). v2 and hybrid: every member's hashes with the ETag and size they were read at, each
reusable on its own (every file starts on a piece boundary). v1: the stream's pieces and the
files (key, ETag, size, in listing order) they were hashed from, so the engine's
`plan_v1_resume` keeps the pieces before the first file that differs. A record is only ever
used with the piece length and meta version it was hashed with.

Stored as bencode (bytes need no escaping) compressed with zlib: the keys and ETags compress,
the hashes do not (docs/collections.md gives the sizes). Where they are stored is the
`HashRecords` protocol's business (`record_store.py`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from s3torrent.collections.listing import CollectionRef, Member
from s3torrent.torrent import MetaVersion, PieceHashes
from s3torrent.torrent.bencode import (
    as_bytes,
    as_count,
    as_list,
    as_text,
    decode,
    encode,
)
from s3torrent.torrent.errors import BencodeError

RECORD_FORMAT = 1


@dataclass(frozen=True)
class MemberHashes:
    """One member's hashes (v2 and hybrid), valid while its ETag and size are these."""

    key: str
    etag: str
    size: int
    hashes: PieceHashes


@dataclass(frozen=True)
class StreamFile:
    """One file of a v1 stream as it was hashed (listing order)."""

    key: str
    etag: str
    size: int


@dataclass(frozen=True)
class HashRecord:
    """What one build of a collection hashed, at one piece length and meta version."""

    piece_length: int
    meta_version: MetaVersion
    members: tuple[MemberHashes, ...] = ()  # v2 and hybrid
    stream: tuple[StreamFile, ...] = ()  # v1: the files the pieces were hashed from
    v1_pieces: bytes = b""  # v1: the stream's pieces

    def matches(self, piece_length: int, meta_version: MetaVersion) -> bool:
        """True when this record was hashed as a build at these settings would hash."""
        return self.piece_length == piece_length and self.meta_version is meta_version

    def by_key(self) -> dict[str, MemberHashes]:
        """The members' hashes by key (v2 and hybrid)."""
        return {member.key: member for member in self.members}

    def reusable(self, member: Member, known: Mapping[str, MemberHashes]) -> PieceHashes | None:
        """A member's stored hashes when its ETag and size are the ones hashed, else None."""
        stored = known.get(member.key)
        if stored is None or stored.etag != member.etag or stored.size != member.size:
            return None
        return stored.hashes


class HashRecords(Protocol):
    """Where the deployment keeps collections' hash records (never in the user's bucket)."""

    def load(self, ref: CollectionRef) -> HashRecord | None:
        """The last record saved for this collection; None when there is none (or unreadable)."""
        ...

    def save(self, ref: CollectionRef, record: HashRecord) -> None:
        """Replace this collection's record."""
        ...


def encode_record(record: HashRecord) -> bytes:
    """The record as zlib-compressed bencode."""
    value: dict[str, object] = {
        "format": RECORD_FORMAT,
        "piece length": record.piece_length,
        "meta version": str(record.meta_version),
    }
    if record.meta_version is MetaVersion.V1:
        value["stream"] = [[file.key, file.etag, file.size] for file in record.stream]
        value["pieces"] = record.v1_pieces
    else:
        value["members"] = [_encode_member(member) for member in record.members]
    return zlib.compress(encode(value), 6)


def decode_record(data: bytes) -> HashRecord | None:
    """The record `encode_record` wrote; None for anything else (it is then rebuilt)."""
    try:
        value = decode(zlib.decompress(data))
        if not isinstance(value, dict) or value.get(b"format") != RECORD_FORMAT:
            return None
        piece_length = value[b"piece length"]
        version = MetaVersion(as_text(value[b"meta version"]))
        if not isinstance(piece_length, int):
            return None
        if version is MetaVersion.V1:
            stream = tuple(_decode_stream_file(item) for item in as_list(value[b"stream"]))
            pieces = value[b"pieces"]
            if not isinstance(pieces, bytes):
                return None
            return HashRecord(piece_length, version, stream=stream, v1_pieces=pieces)
        members = tuple(
            _decode_member(item, piece_length, version) for item in as_list(value[b"members"])
        )
        return HashRecord(piece_length, version, members=members)
    except (zlib.error, BencodeError, KeyError, TypeError, ValueError):
        return None


def stream_record(members: Sequence[Member], piece_length: int, v1_pieces: bytes) -> HashRecord:
    """The record of a v1 build: its stream's pieces and the files they were hashed from."""
    files = tuple(StreamFile(member.key, member.etag, member.size) for member in members)
    return HashRecord(piece_length, MetaVersion.V1, stream=files, v1_pieces=v1_pieces)


def _decode_stream_file(item: object) -> StreamFile:
    key, etag, size = as_list(item)
    return StreamFile(as_text(key), as_text(etag), as_count(size))


def _encode_member(member: MemberHashes) -> list[object]:
    hashes = member.hashes
    return [
        member.key,
        member.etag,
        member.size,
        hashes.v1_pieces or b"",
        hashes.v1_padded_last_piece or b"",
        hashes.v2_pieces_root or b"",
        hashes.v2_piece_layer or b"",
    ]


def _decode_member(item: object, piece_length: int, version: MetaVersion) -> MemberHashes:
    key, etag, size, v1, v1_padded, root, layer = as_list(item)
    hashes = PieceHashes(
        as_count(size),
        piece_length,
        version,
        as_bytes(v1) or None,
        as_bytes(root) or None,
        as_bytes(layer) or None,
        as_bytes(v1_padded) or None,
    )
    return MemberHashes(as_text(key), as_text(etag), as_count(size), hashes)
