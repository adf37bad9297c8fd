"""Plain values passed between the S3 adapter, the service and the handlers (no AWS types)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

TORRENT_SUFFIX = ".torrent"
MAX_KEY_BYTES = 1024  # S3's key length limit, in UTF-8 bytes


@dataclass(frozen=True)
class ObjectRef:
    """One S3 object, as a caller names it."""

    bucket: str
    key: str
    version_id: str | None = None
    # Passed through to every S3 call for this object (requester-pays buckets, and the
    # owner check S3 does for confused-deputy protection).
    request_payer: bool = False
    expected_bucket_owner: str | None = None

    @property
    def torrent_key(self) -> str:
        """Where this object's torrent lives: `<key>.torrent` in the same bucket."""
        return self.key + TORRENT_SUFFIX

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class ObjectInfo:
    """What HeadObject told us about the object, at the moment hashing began."""

    ref: ObjectRef
    size: int
    etag: str  # with its quotes, exactly as S3 returns it
    version_id: str | None
    last_modified: datetime | None
    storage_class: str | None = None  # None means STANDARD
    archive_status: str | None = None  # ARCHIVE_ACCESS / DEEP_ARCHIVE_ACCESS (Intelligent-Tiering)
    restored: bool = False  # a restored copy of an archived object is readable
    sse_customer: bool = False  # SSE-C: we cannot read it without the caller's key
    content_type: str | None = None


@dataclass(frozen=True)
class TorrentRecord:
    """What a stored `<key>.torrent` says (in its user metadata) it was built from."""

    bucket: str
    torrent_key: str
    source_etag: str
    source_version_id: str | None
    size: int
    piece_length: int
    meta_version: str
    info_hash_v1: str | None
    info_hash_v2: str | None
    last_modified: datetime | None = None
    content_length: int | None = None  # bytes of the .torrent itself
    source: str | None = None  # "native" or "computed": where the torrent came from

    def is_fresh_for(self, info: ObjectInfo) -> bool:
        """A torrent is fresh when it was built from the object's current ETag (and version)."""
        if self.source_etag != info.etag:
            return False
        return not (info.version_id and self.source_version_id not in (None, info.version_id))


@dataclass
class TransferCounters:
    """Work done for one torrent, for logs and metrics (filled in by the reader and hasher)."""

    bytes_read: int = 0
    get_requests: int = 0
    retries: int = 0
    seconds: float = 0.0

    def add(self, other: TransferCounters) -> None:
        """Count the requests, retries and bytes of `other` (a share of this work) here too."""
        self.get_requests += other.get_requests
        self.retries += other.retries
        self.bytes_read += other.bytes_read


class Outcome(enum.StrEnum):
    """What the service did for one object; handlers map each to a status and a metric."""

    CREATED = "created"  # a torrent was made and written (computed or verified native)
    FRESH = "fresh"  # the stored torrent already matches the object: nothing written
    SKIPPED = "skipped"  # the object can never have a torrent here (see SkipReason)
    DELETED = "deleted"  # the source is gone and so is the torrent we wrote for it
    ABSENT = "absent"  # the source is gone and there was no torrent of ours to delete
    CHANGED = "changed"  # the object changed mid-hash; nothing written (a new event follows)
    STARTED = "started"  # too big for one worker: a fan-out build's parts are queued


class SkipReason(enum.StrEnum):
    """Why an object gets no torrent; each is permanent for that object version."""

    DIRECTORY_MARKER = "directory marker"
    TORRENT_KEY = "key is itself a .torrent"
    EMPTY = "0-byte object: BitTorrent cannot describe an empty file"
    KEY_TOO_LONG = "<key>.torrent would exceed S3's 1024-byte key limit"
    TOO_LARGE = "object is over the configured size limit for this path"
    TOO_LARGE_FOR_CLIENTS = (
        "object is larger than a torrent BitTorrent clients load can describe"
        " (libtorrent: a file under 16 TiB, a .torrent under 10 MB)"
    )
    ARCHIVED = "object is in an archive storage class and not restored"
    SSE_C = "object is encrypted with a customer-provided key (SSE-C)"
    OUTSIDE_SCOPE = "bucket or key is outside the configured buckets"


@dataclass(frozen=True)
class TorrentResult:
    """The typed result of one service call."""

    outcome: Outcome
    ref: ObjectRef
    torrent_key: str
    record: TorrentRecord | None = None  # what is (now) stored, when there is a torrent
    torrent_bytes: bytes | None = None  # the .torrent, when the call made or read it
    magnet: str | None = None
    source: str | None = None  # "native" or "computed" when CREATED
    skip_reason: SkipReason | None = None
    counters: TransferCounters = field(default_factory=TransferCounters)
    # The ETag of the object the call looked at, when a skip happened after reading its
    # metadata (TOO_LARGE: the API keys its queued-job dedupe on it).
    source_etag: str | None = None


@dataclass(frozen=True)
class ListedObject:
    """One entry of a ListObjectsV2 page."""

    key: str
    size: int
    etag: str
    last_modified: datetime
    storage_class: str | None


@dataclass(frozen=True)
class ListPage:
    """A page of ListObjectsV2, in the lexical (UTF-8 binary) order S3 lists keys in."""

    objects: tuple[ListedObject, ...]
    next_token: str | None
