"""What a fan-out build keeps between its invocations, as plain values, and their encoding.

The *manifest* is written once when the build starts: what is hashed (the object and its
ETag, or the collection's members and theirs), the piece length, meta version and options,
and the part size, so every part cuts the same plan (`plan.py`) and pins its ranges to the
ETags seen at the start. A *part record* is one part's hashes (`PartHashes` per unit it
touched). Both are bencode (bytes need no escaping); the manifest is zlib-compressed (keys
and ETags compress, hashes do not). No AWS here.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from s3torrent.collections.listing import Member
from s3torrent.fanout.plan import count_parts
from s3torrent.torrent import MetaVersion, PartHashes
from s3torrent.torrent.bencode import (
    as_bytes,
    as_count,
    as_list,
    as_text,
    decode,
    encode,
)
from s3torrent.torrent.errors import BencodeError

FORMAT = 1

BuildKind = Literal["object", "collection"]


class UnreadableRecord(ValueError):
    """A stored manifest or part record that is not what this code writes."""


@dataclass(frozen=True)
class BuildManifest:
    """Everything a part or the assembly needs to know about the build it belongs to."""

    kind: BuildKind
    bucket: str
    key: str  # the object's key, or the collection's prefix (ending in '/')
    etag: str  # the object's ETag; a collection's listing digest
    size: int  # bytes hashed: the object's, or every member's together
    piece_length: int
    meta_version: MetaVersion
    part_bytes: int
    version_id: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)  # the caller's options
    members: tuple[Member, ...] = ()  # a collection's, in listing order
    # What the collection's hash record already holds, so no part reads it: v2 and hybrid
    # members (by index), the v1 stream's bytes before `stream_offset` (a piece boundary).
    held: tuple[int, ...] = ()
    stream_offset: int = 0

    @cached_property
    def unit_sizes(self) -> tuple[int, ...]:
        """The bytes each unit's parts read (`plan.py`); 0 for a member the record holds.
        Computed once: a part asks for it per slice, and a collection may have 100,000."""
        if self.kind == "object":
            return (self.size,)
        if self.meta_version is MetaVersion.V1:
            return (self.size - self.stream_offset,)  # the rest of the stream
        held = set(self.held)
        return tuple(
            0 if index in held else member.size for index, member in enumerate(self.members)
        )

    @cached_property
    def parts(self) -> int:
        """How many parts `plan.py` cuts the units into."""
        return count_parts(self.unit_sizes, self.piece_length, self.part_bytes)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def encode_manifest(manifest: BuildManifest) -> bytes:
    """The manifest as zlib-compressed bencode."""
    value: dict[str, object] = {
        "format": FORMAT,
        "kind": manifest.kind,
        "bucket": manifest.bucket,
        "key": manifest.key,
        "etag": manifest.etag,
        "size": manifest.size,
        "piece length": manifest.piece_length,
        "meta version": str(manifest.meta_version),
        "part bytes": manifest.part_bytes,
        "overrides": json.dumps(dict(manifest.overrides), sort_keys=True),
        "members": [
            [member.key, member.etag, member.size, list(member.path)] for member in manifest.members
        ],
    }
    if manifest.version_id is not None:
        value["version id"] = manifest.version_id
    if manifest.held:
        value["held"] = list(manifest.held)
    if manifest.stream_offset:
        value["stream offset"] = manifest.stream_offset
    return zlib.compress(encode(value), 6)


def decode_manifest(data: bytes) -> BuildManifest:
    """The manifest `encode_manifest` wrote (UnreadableRecord for anything else)."""
    try:
        value = decode(zlib.decompress(data))
        if not isinstance(value, dict) or value.get(b"format") != FORMAT:
            raise UnreadableRecord("not a fan-out manifest of this format")
        kind = as_text(value[b"kind"])
        if kind not in ("object", "collection"):
            raise UnreadableRecord(f"unknown build kind {kind!r}")
        overrides = json.loads(as_text(value[b"overrides"]))
        if not isinstance(overrides, dict):
            raise UnreadableRecord("overrides are not an object")
        members = tuple(_member(item) for item in as_list(value[b"members"]))
        version_id = value.get(b"version id")
        return BuildManifest(
            kind="object" if kind == "object" else "collection",
            bucket=as_text(value[b"bucket"]),
            key=as_text(value[b"key"]),
            etag=as_text(value[b"etag"]),
            size=as_count(value[b"size"]),
            piece_length=as_count(value[b"piece length"]),
            meta_version=MetaVersion(as_text(value[b"meta version"])),
            part_bytes=as_count(value[b"part bytes"]),
            version_id=None if version_id is None else as_text(version_id),
            overrides=overrides,
            members=members,
            held=tuple(as_count(index) for index in as_list(value.get(b"held", []))),
            stream_offset=as_count(value.get(b"stream offset", 0)),
        )
    except (zlib.error, BencodeError, KeyError, TypeError, ValueError) as error:
        if isinstance(error, UnreadableRecord):
            raise
        raise UnreadableRecord(f"unreadable fan-out manifest: {error}") from error


def encode_part(hashes: Sequence[tuple[int, PartHashes]]) -> bytes:
    """One part's record: for each unit it touched, that unit's index and hashes."""
    return encode(
        [
            [
                unit,
                part.first_piece,
                part.count,
                part.v1,
                part.v2,
                part.tail_root or b"",
                part.v1_padded_last or b"",
            ]
            for unit, part in hashes
        ]
    )


def decode_part(data: bytes) -> list[tuple[int, PartHashes]]:
    """The hashes `encode_part` wrote (UnreadableRecord for anything else)."""
    try:
        found = []
        for item in as_list(decode(data)):
            unit, first, count, v1, v2, tail, padded = as_list(item)
            hashes = PartHashes(
                first_piece=as_count(first),
                count=as_count(count),
                v1=as_bytes(v1),
                v2=as_bytes(v2),
                tail_root=as_bytes(tail) or None,
                v1_padded_last=as_bytes(padded) or None,
            )
            found.append((as_count(unit), hashes))
        return found
    except (BencodeError, TypeError, ValueError) as error:
        raise UnreadableRecord(f"unreadable part record: {error}") from error


def _member(item: object) -> Member:
    key, etag, size, path = as_list(item)
    return Member(
        as_text(key), tuple(as_text(part) for part in as_list(path)), as_count(size), as_text(etag)
    )
