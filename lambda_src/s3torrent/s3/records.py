"""How a `<key>.torrent` says what it was built from: its S3 user metadata.

A torrent is fresh when its recorded source ETag is the object's current one (docs/design.md);
the metadata also tells s3torrent's own torrents from a user's `.torrent` objects, which it
never overwrites or deletes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from s3torrent.model import ObjectInfo, ObjectRef, TorrentRecord
from s3torrent.torrent import Torrent

TORRENT_CONTENT_TYPE = "application/x-bittorrent"
# The `created-by` metadata of every torrent s3torrent writes: how it tells its own torrents
# from a user's `.torrent` objects, which it never overwrites or deletes. (The torrent's
# `created by` field, with the version, is policy.CREATED_BY.)
WRITER_MARK = "s3torrent"

# User metadata of a `<key>.torrent` (S3 lowercases x-amz-meta-* names; values stay ASCII).
META_CREATED_BY = "created-by"
META_SOURCE_ETAG = "source-etag"
META_SOURCE_VERSION_ID = "source-version-id"
META_SIZE = "size"
META_PIECE_LENGTH = "piece-length"
META_VERSION = "meta-version"
META_INFO_HASH_V1 = "info-hash-v1"
META_INFO_HASH_V2 = "info-hash-v2"
META_SOURCE = "torrent-source"  # "native" or "computed"


def _parse_int(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return int(value)


def content_disposition(key: str) -> str:
    """`attachment` with the torrent's file name; RFC 6266 `filename*` for non-ASCII names."""
    name = key.rsplit("/", 1)[-1] + ".torrent"
    fallback = re.sub(r'[^\x20-\x7e]|["\\]', "_", name)
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _ascii(value: str) -> str:
    # S3 user metadata travels in HTTP headers: keep it printable ASCII.
    return value if value.isascii() and value.isprintable() else quote(value, safe="")


def torrent_metadata(info: ObjectInfo, torrent: Torrent, source: str) -> dict[str, str]:
    """The user metadata written with a torrent of the object `info` describes."""
    metadata = {
        META_CREATED_BY: WRITER_MARK,
        META_SOURCE_ETAG: _ascii(info.etag),
        META_SIZE: str(info.size),
        META_PIECE_LENGTH: str(torrent.piece_length),
        META_VERSION: str(torrent.meta_version),
        META_SOURCE: source,
    }
    if info.version_id:
        metadata[META_SOURCE_VERSION_ID] = _ascii(info.version_id)
    if torrent.info_hash_v1:
        metadata[META_INFO_HASH_V1] = torrent.info_hash_v1
    if torrent.info_hash_v2:
        metadata[META_INFO_HASH_V2] = torrent.info_hash_v2
    return metadata


def written_record(
    ref: ObjectRef, info: ObjectInfo, torrent: Torrent, source: str
) -> TorrentRecord:
    """The record of a torrent just written, without reading it back."""
    return TorrentRecord(
        bucket=ref.bucket,
        torrent_key=ref.torrent_key,
        source_etag=info.etag,
        source_version_id=info.version_id,
        size=info.size,
        piece_length=torrent.piece_length,
        meta_version=str(torrent.meta_version),
        info_hash_v1=torrent.info_hash_v1,
        info_hash_v2=torrent.info_hash_v2,
        last_modified=None,
        content_length=len(torrent.data),
        source=source,
    )


def record_from_response(ref: ObjectRef, response: Mapping[str, Any]) -> TorrentRecord | None:
    """The record of a stored `<key>.torrent` from its GET/HEAD answer; None unless ours."""
    meta = {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}
    if meta.get(META_CREATED_BY) != WRITER_MARK:
        return None
    size = _parse_int(meta.get(META_SIZE))
    piece_length = _parse_int(meta.get(META_PIECE_LENGTH))
    etag = meta.get(META_SOURCE_ETAG)
    if size is None or piece_length is None or not etag:
        return None  # ours but unreadable: treated as absent, so it is rebuilt
    length = response.get("ContentLength")
    return TorrentRecord(
        bucket=ref.bucket,
        torrent_key=ref.torrent_key,
        source_etag=etag,
        source_version_id=meta.get(META_SOURCE_VERSION_ID) or None,
        size=size,
        piece_length=piece_length,
        meta_version=meta.get(META_VERSION, ""),
        info_hash_v1=meta.get(META_INFO_HASH_V1) or None,
        info_hash_v2=meta.get(META_INFO_HASH_V2) or None,
        last_modified=response.get("LastModified"),
        content_length=int(length) if length is not None else None,
        source=meta.get(META_SOURCE) or None,
    )


# --- collections: one multi-file `<PREFIX>.torrent` for every object under PREFIX/ --------

META_KIND = "kind"  # "collection" (objects' torrents carry none)
KIND_COLLECTION = "collection"
META_LISTING_DIGEST = "listing-digest"  # SHA-256 of the members' keys, ETags and sizes
META_FILES = "files"  # how many files the torrent describes
META_OPTIONS_DIGEST = "options-digest"  # what the torrent carries besides its hashes
META_BYTES_READ = "bytes-read"  # bytes the build read (0 when nothing was hashed)


@dataclass(frozen=True)
class CollectionRecord:
    """What a stored collection torrent says (in its user metadata) it was built from.

    It has no `source-etag`: `record_from_response` reads it as not an object's torrent, so
    the object path never takes it for one of its own (never rewrites or deletes it).
    """

    bucket: str
    torrent_key: str
    listing_digest: str
    files: int
    size: int
    piece_length: int
    meta_version: str
    info_hash_v1: str | None
    info_hash_v2: str | None
    options_digest: str
    bytes_read: int | None = None
    last_modified: datetime | None = None
    etag: str | None = None  # of the .torrent itself (conditional deletes)

    def metadata(self) -> dict[str, str]:
        """The user metadata to write with the torrent."""
        metadata = {
            META_CREATED_BY: WRITER_MARK,
            META_KIND: KIND_COLLECTION,
            META_LISTING_DIGEST: self.listing_digest,
            META_FILES: str(self.files),
            META_SIZE: str(self.size),
            META_PIECE_LENGTH: str(self.piece_length),
            META_VERSION: self.meta_version,
            META_OPTIONS_DIGEST: self.options_digest,
            META_SOURCE: "computed",
        }
        if self.bytes_read is not None:
            metadata[META_BYTES_READ] = str(self.bytes_read)
        if self.info_hash_v1:
            metadata[META_INFO_HASH_V1] = self.info_hash_v1
        if self.info_hash_v2:
            metadata[META_INFO_HASH_V2] = self.info_hash_v2
        return metadata


def collection_record_from_response(
    bucket: str, torrent_key: str, response: Mapping[str, Any]
) -> CollectionRecord | None:
    """The record of a stored collection torrent from its GET/HEAD answer; None unless ours."""
    meta = {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}
    if meta.get(META_CREATED_BY) != WRITER_MARK or meta.get(META_KIND) != KIND_COLLECTION:
        return None
    numbers = [_parse_int(meta.get(name)) for name in (META_FILES, META_SIZE, META_PIECE_LENGTH)]
    digest = meta.get(META_LISTING_DIGEST)
    if not digest or any(number is None for number in numbers):
        return None  # ours but unreadable: treated as absent, so it is rebuilt
    files, size, piece_length = (number or 0 for number in numbers)
    return CollectionRecord(
        bucket=bucket,
        torrent_key=torrent_key,
        listing_digest=digest,
        files=files,
        size=size,
        piece_length=piece_length,
        meta_version=meta.get(META_VERSION, ""),
        info_hash_v1=meta.get(META_INFO_HASH_V1) or None,
        info_hash_v2=meta.get(META_INFO_HASH_V2) or None,
        options_digest=meta.get(META_OPTIONS_DIGEST, ""),
        bytes_read=_parse_int(meta.get(META_BYTES_READ)),
        last_modified=response.get("LastModified"),
        etag=str(response.get("ETag") or "") or None,
    )
