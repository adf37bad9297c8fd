"""Request and response bodies of the JSON API (pydantic; the OpenAPI document comes from these)."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from s3torrent.collections import CollectionResult
from s3torrent.fanout import BuildState
from s3torrent.model import MAX_KEY_BYTES, TorrentResult
from s3torrent.settings import MetaVersionSetting
from s3torrent.torrent import InvalidPieceLength, read_torrent, validate_piece_length

MAX_URLS = 32
# Stated in the OpenAPI document too, so a client (or a fuzzer) knows a valid request from
# the schema alone: the validators below say the same with a clear message.
PIECE_LENGTHS = [1 << exponent for exponent in range(14, 31)]  # 16 KiB .. 1 GiB
PieceLength = Annotated[
    int, Field(ge=16384, le=1 << 30, json_schema_extra={"enum": list(PIECE_LENGTHS)})
]
TrackerUrl = Annotated[str, Field(pattern=r"^(https?|udp|wss)://\S+$", max_length=2048)]
WebSeedTemplate = Annotated[
    str, Field(pattern=r"^(https?://|\{endpoint\}|\{bucket_url\})\S*$", max_length=2048)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptionsBody(_Strict):
    """Per-request torrent options; each one left out keeps the deployment's setting."""

    meta_version: MetaVersionSetting | None = Field(
        default=None, description="BitTorrent v1, v2 (BEP 52) or hybrid"
    )
    piece_length: PieceLength | None = Field(
        default=None, description="bytes, a power of two (default: auto)"
    )
    trackers: list[TrackerUrl] | None = Field(
        default=None, max_length=MAX_URLS, description="announce URLs, one tier each (BEP 12)"
    )
    web_seeds: list[WebSeedTemplate] | None = Field(
        default=None,
        max_length=MAX_URLS,
        description="BEP 19 URL templates ({bucket_url}, {folder}, {key} ...)",
    )
    private: bool | None = Field(default=None, description="BEP 27 private flag")
    comment: str | None = Field(default=None, max_length=1024)

    @field_validator("meta_version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        # `1` and `2` are as natural in JSON as "1" and "2".
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("piece_length")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        # The engine's rule, in the API's own words: the field as the request spells it.
        if value is None:
            return None
        try:
            return validate_piece_length(value)
        except InvalidPieceLength:
            raise ValueError(f"piece_length must be a power of two: {value}") from None

    def overrides(self) -> dict[str, Any]:
        """The options that were set, as TorrentService overrides."""
        values = self.model_dump(exclude_none=True)
        for name in ("trackers", "web_seeds"):
            if name in values:
                values[name] = tuple(values[name])
        return values


def _check_key(value: str) -> str:
    if len(value.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"key is over S3's {MAX_KEY_BYTES}-byte limit")
    return value


class CreateTorrentRequest(_Strict):
    """POST /torrents."""

    bucket: str = Field(min_length=1, max_length=255)
    key: str = Field(min_length=1)
    version_id: str | None = Field(default=None, min_length=1, max_length=1024)
    options: OptionsBody | None = None

    _key = field_validator("key")(_check_key)


def _etags_of(info: TorrentInfo) -> set[str | None]:
    return {info.source_etag, info.listing_digest} - {None}


class TorrentInfo(BaseModel):
    """A torrent next to an object: what it describes and how to fetch it."""

    status: Literal["created", "fresh", "stale", "custom", "building", "failed"] = Field(
        description="created now; fresh (built from the object's current ETag); stale;"
        " custom (made with the request's own options, returned in `torrent`, not stored);"
        " building (a fan-out build is under way: see `parts`); failed (the last fan-out"
        " build of this version wrote nothing: see `reason`)"
    )
    bucket: str
    key: str
    torrent_key: str | None = Field(description="where it is stored; null when not stored")
    size: int | None = None
    piece_length: int | None = None
    meta_version: str | None = None
    info_hash_v1: str | None = None
    info_hash_v2: str | None = None
    magnet: str | None = None
    source: str | None = Field(default=None, description="native or computed")
    source_etag: str | None = None
    source_version_id: str | None = None
    torrent_bytes: int | None = Field(default=None, description="size of the .torrent file")
    torrent: str | None = Field(
        default=None, description="status custom only: the torrent itself, base64"
    )
    kind: Literal["object", "collection"] = Field(
        default="object",
        description="object (one key) or collection (every object under a prefix ending in '/')",
    )
    files: int | None = Field(default=None, description="files the torrent describes")
    bytes_read: int | None = Field(
        default=None, description="collections: bytes the last build read (0 when fresh)"
    )
    listing_digest: str | None = Field(
        default=None, description="collections: SHA-256 of the keys, ETags and sizes it describes"
    )
    skipped: list[dict[str, str]] | None = Field(
        default=None, description="collections: keys under the prefix left out, and why"
    )
    parts: int = Field(default=1, description="parts the build is split into (1: one worker)")
    parts_done: int | None = Field(default=None, description="parts hashed so far")
    reason: str | None = Field(default=None, description="status failed: why")

    def with_build(self, build: BuildState | None) -> TorrentInfo:
        """This view with the parts of the fan-out build that made it (1 of 1 when none)."""
        # Complete counts too: the assembling invocation writes the torrent before it marks
        # its build done.
        finished = build is not None and (build.status == "done" or build.complete)
        if build is None or not finished or build.etag not in _etags_of(self):
            return self.model_copy(update={"parts_done": self.parts_done or self.parts})
        return self.model_copy(update={"parts": build.parts, "parts_done": build.parts_done})

    @classmethod
    def from_build(cls, build: BuildState, kind: str) -> TorrentInfo:
        """A build under way (or failed) with no current torrent to show."""
        return cls.model_validate(
            {
                "status": "building" if build.status == "running" else "failed",
                "kind": kind,
                "bucket": build.bucket,
                "key": build.key,
                "torrent_key": None,
                "parts": build.parts,
                "parts_done": build.parts_done,
                "reason": build.reason,
                "source_etag": build.etag if kind == "object" else None,
                "listing_digest": build.etag if kind == "collection" else None,
            }
        )

    @classmethod
    def from_collection(cls, result: CollectionResult, status: str) -> TorrentInfo:
        """The JSON view of a collection result that has a stored (or made) torrent."""
        record = result.record
        bytes_read = result.counters.bytes_read if status == "created" else None
        if bytes_read is None and record is not None:
            bytes_read = record.bytes_read  # of the build that wrote it
        return cls.model_validate(
            {
                "status": status,
                "kind": "collection",
                "bucket": result.ref.bucket,
                "key": result.ref.prefix,
                "torrent_key": result.torrent_key,
                "size": record.size if record else None,
                "files": record.files if record else None,
                "piece_length": record.piece_length if record else None,
                "meta_version": record.meta_version if record else None,
                "info_hash_v1": record.info_hash_v1 if record else None,
                "info_hash_v2": record.info_hash_v2 if record else None,
                "magnet": result.magnet,
                "source": "computed",
                "listing_digest": record.listing_digest if record else None,
                "bytes_read": bytes_read,
                "torrent_bytes": len(result.torrent_bytes) if result.torrent_bytes else None,
                "skipped": [{"key": s.key, "reason": s.reason} for s in result.skipped],
            }
        )

    @classmethod
    def from_result(cls, result: TorrentResult, status: str) -> TorrentInfo:
        """The JSON view of a service result that has a stored torrent."""
        record = result.record
        return cls.model_validate(
            {
                "status": status,
                "bucket": result.ref.bucket,
                "key": result.ref.key,
                "torrent_key": result.torrent_key,
                "size": record.size if record else None,
                "piece_length": record.piece_length if record else None,
                "meta_version": record.meta_version if record else None,
                "info_hash_v1": record.info_hash_v1 if record else None,
                "info_hash_v2": record.info_hash_v2 if record else None,
                "magnet": result.magnet,
                "source": result.source,
                "source_etag": record.source_etag if record else None,
                "source_version_id": record.source_version_id if record else None,
                "torrent_bytes": len(result.torrent_bytes) if result.torrent_bytes else None,
            }
        )

    @classmethod
    def from_custom(cls, result: TorrentResult) -> TorrentInfo:
        """The JSON view of a torrent made for one caller: described from its own bytes."""
        data = result.torrent_bytes or b""
        torrent = read_torrent(data)
        return cls(
            status="custom",
            bucket=result.ref.bucket,
            key=result.ref.key,
            torrent_key=None,
            size=torrent.length,
            piece_length=torrent.piece_length,
            meta_version=torrent.meta_version.value,
            info_hash_v1=torrent.info_hash_v1,
            info_hash_v2=torrent.info_hash_v2,
            magnet=result.magnet,
            source=result.source,
            source_version_id=result.ref.version_id,
            torrent_bytes=len(data),
            torrent=base64.b64encode(data).decode("ascii"),
        )


class Queued(BaseModel):
    """202: the work was queued; follow `location`."""

    status: Literal["queued"] = "queued"
    location: str
    bucket: str
    key: str
    source_etag: str | None = Field(
        default=None, description="the object version (ETag) the queued job builds"
    )
    listing_digest: str | None = Field(
        default=None, description="collections: the listing the queued job builds"
    )


class BackfillRequest(_Strict):
    """POST /backfills."""

    bucket: str = Field(min_length=1, max_length=255)
    prefix: str = ""

    _prefix = field_validator("prefix")(_check_key)


class BackfillAccepted(BaseModel):
    """202: the backfill was started."""

    id: str
    status: str
    location: str
    bucket: str
    prefix: str


class BackfillStatus(BaseModel):
    """GET /backfills/{id}."""

    id: str
    bucket: str
    prefix: str
    status: Literal["queued", "running", "listed", "complete", "failed"] = Field(
        description="queued; running (listing); listed (jobs in flight); complete; failed"
    )
    listed: int = Field(description="objects listed (not counting .torrent keys)")
    queued: int = Field(description="missing or stale torrents sent to the worker queue")
    fresh: int = Field(description="objects whose torrent was already up to date")
    skipped: int = Field(description="objects that can never have a torrent")
    done: int = Field(description="queued jobs the worker finished")
    failed: int = Field(description="queued jobs that failed for good")
    requests: int = Field(description="S3 requests the walk made (ListObjectsV2)")
    continuations: int = Field(description="times the walk handed over to a new invocation")
    created_at: str | None = None
    updated_at: str | None = None
    error: str | None = Field(default=None, description="why a failed backfill stopped")


class ErrorDetail(BaseModel):
    code: str = Field(description="S3-style error code (NoSuchKey, AccessDenied ...)")
    message: str
    details: list[dict[str, Any]] | None = Field(
        default=None, description="validation errors: where (loc) and what (type, msg)"
    )


class ErrorBody(BaseModel):
    """Every JSON error: `{"error": {"code": ..., "message": ...}}`."""

    error: ErrorDetail
