"""The one settings model: read from CDK context at synth, from the environment in Lambda,
from flags in the CLI and the local stack. Constructs and services receive a `Settings`;
nothing else reads the environment.

Every field maps to one environment variable `S3TORRENT_<FIELD>` (upper case); list and
object fields are JSON there. `to_env()` is what the CDK stack hands each function.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from s3torrent.errors import InvalidInput
from s3torrent.torrent.metainfo import explicit_piece_length
from s3torrent.validation import describe_errors

ENV_PREFIX = "S3TORRENT_"
MiB = 1024 * 1024
GiB = 1024 * MiB

TorrentSource = Literal["compute", "native", "auto"]
MetaVersionSetting = Literal["1", "2", "hybrid"]


class BucketScope(BaseModel):
    """A bucket, optionally narrowed to a key prefix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-_]*[a-z0-9]$")
    prefix: str = ""
    # The AWS region the bucket lives in, when not the deployment's: web seeds must name the
    # bucket's own regional endpoint (another region's answers a 301 that clients do not follow).
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")

    def covers(self, bucket: str, key: str) -> bool:
        """True when s3://bucket/key lies inside this scope."""
        return bucket == self.name and key.startswith(self.prefix)


class KeptCollection(BaseModel):
    """A prefix whose collection torrent (`<PREFIX>.torrent`) is kept current on changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-_]*[a-z0-9]$")
    prefix: str = Field(pattern=r"^.*[^/].*/$")  # ending in '/', below the bucket's root
    meta_version: MetaVersionSetting | None = None  # None: collections' default (v1)
    piece_length: int | None = None  # None: automatic

    @field_validator("piece_length")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        return None if value is None else explicit_piece_length(value)

    def covers(self, bucket: str, key: str) -> bool:
        """True when a change of s3://bucket/key changes this collection."""
        return bucket == self.bucket and key.startswith(self.prefix) and key != self.prefix

    def overrides(self) -> dict[str, Any]:
        """Its own options, as a caller's overrides of the settings."""
        values: dict[str, Any] = {"meta_version": self.meta_version}
        values["piece_length"] = self.piece_length
        return {name: value for name, value in values.items() if value is not None}


class Settings(BaseModel):
    """Everything an operator can configure, validated once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Where torrents are made: the allowlist. An empty tuple allows no bucket at all.
    buckets: tuple[BucketScope, ...] = ()
    # Buckets/prefixes whose `?torrent` may be fetched anonymously (as S3 once served it).
    public_prefixes: tuple[BucketScope, ...] = ()
    torrent_source: TorrentSource = "compute"
    meta_version: MetaVersionSetting = "hybrid"
    piece_length: int | None = None  # None: automatic (see metainfo.choose_piece_length)
    trackers: tuple[str, ...] = ()  # each URL its own BEP 12 tier, in order
    # BEP 19 web seed templates. Placeholders: {bucket_url} (virtual-hosted on AWS,
    # path-style on endpoint_url), {bucket}, {key}, {folder} (key up to and including its
    # last '/', URL-quoted; empty at the top level), {region} and {endpoint} (the bucket's
    # region and its S3 endpoint). The folder form
    # ending in '/' is the one every client tried resolves for v1, v2 and hybrid (docs/clients.md):
    # clients append the torrent's `name`, the key's last segment (BEP 19).
    web_seeds: tuple[str, ...] = ("{bucket_url}/{folder}",)
    private: bool = False
    comment: str | None = None
    source_tag: str | None = None  # BEP 'source' field (private trackers use it)
    endpoint_url: str | None = None  # S3-compatible store; a deploy-time setting only
    # Secrets Manager secret (ARN or name) holding the store's keys as JSON
    # {"access_key_id": …, "secret_access_key": …}: how a Lambda authenticates to a store
    # outside AWS. Unset: the default credential chain (the function's role on AWS).
    endpoint_credentials_secret: str | None = None
    region: str = "us-east-1"
    # Size limits per path: the API hashes inline only below api_inline_max_bytes and queues
    # the rest; the worker refuses objects (and collections) over max_object_bytes (by default
    # 16 TiB: libtorrent-based clients load no file of 16 TiB or more).
    api_inline_max_bytes: int = Field(default=256 * MiB, ge=0)
    # The stored `<key>.torrent` is what everyone is served (anonymous users on public
    # prefixes too), so a caller's own options (POST /torrents) make a torrent returned to
    # that caller only, unless the operator lets callers replace the stored one.
    api_callers_may_replace: bool = False
    max_object_bytes: int = Field(default=16 * 1024 * GiB, gt=0)
    # Work over this many bytes is cut into parts of about this size, each hashed by its own
    # worker invocation (docs/fanout.md says how the default was chosen); 0: never.
    fanout_part_bytes: int = Field(default=64 * GiB, ge=0)
    # Ranged reader: bytes per GET, and connections per object; each connection's thread
    # hashes what it reads, so the window is also the hashing parallelism (see Performance).
    read_part_bytes: int = Field(default=16 * MiB, ge=64 * 1024)
    read_window: int = Field(default=16, ge=1, le=64)
    # A socket silent for this long fails its attempt; the range is retried from there.
    read_stall_seconds: float = Field(default=30.0, gt=0, le=600)
    # How ranges are read: "direct" (http.client on a presigned URL: the fast path) or
    # "sdk" (botocore per range: moto's in-process mock, or when direct is not wanted).
    read_transport: Literal["direct", "sdk"] = "direct"
    # Resources the functions talk to (set by the stack, or by the local stack):
    # the worker queue (S3 events and jobs), the backfill queue (starts and continuations)
    # and the DynamoDB table holding backfill progress.
    queue_url: str | None = None
    backfill_queue_url: str | None = None
    backfill_table: str | None = None
    # Kept collections: a change under one of these prefixes rebuilds its torrent
    # `collection_delay_seconds` after the first change of a window (SQS DelaySeconds, hence
    # at most 900); later changes in the window ride along, so a burst of uploads builds it a
    # few times, not once per upload (docs/collections.md).
    collections: tuple[KeptCollection, ...] = ()
    collection_delay_seconds: int = Field(default=30, ge=0, le=900)
    # Deliveries of a worker-queue message before SQS moves it to the DLQ (the queue's
    # maxReceiveCount, set by the stack): a backfill job failing on its last delivery is
    # counted failed, so the backfill still completes.
    job_max_receives: int = Field(default=5, ge=1, le=1000)
    # The worker queue's visibility timeout (set by the stack): how long a delivery that died
    # without a word stays invisible before SQS hands the message out again.
    job_visibility_seconds: int = Field(default=5400, ge=1, le=43200)

    @field_validator("piece_length")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        # The engine's own check (an InvalidPieceLength is a ValueError, so pydantic reports it).
        return None if value is None else explicit_piece_length(value)

    @field_validator("trackers")
    @classmethod
    def _tracker_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(("http://", "https://", "udp://", "wss://")):
                raise ValueError(f"tracker must be an http(s), udp or wss URL: {url!r}")
        return value

    @field_validator("web_seeds")
    @classmethod
    def _web_seed_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(("http://", "https://", "{endpoint}", "{bucket_url}")):
                raise ValueError(f"web seed must be an http(s) URL template: {url!r}")
        return value

    # --- where it comes from -----------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Build from plain values (CDK context, CLI flags); InvalidInput says what is wrong."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as error:
            raise InvalidInput(f"invalid settings: {describe_errors(error.errors())}") from error

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build from `S3TORRENT_*` variables (what the stack sets on each function)."""
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            annotation = str(field.annotation)
            values[name] = json.loads(raw) if annotation.startswith("tuple") else raw
        return cls.from_mapping(values)

    def to_env(self) -> dict[str, str]:
        """The environment that `from_env` reads back into these same settings."""
        env: dict[str, str] = {}
        # exclude_none: a bucket scope without a region reads `{"name", "prefix"}`, as before.
        for name, value in self.model_dump(mode="json", exclude_none=True).items():
            if value is None:
                continue
            text = json.dumps(value) if isinstance(value, list) else str(value)
            if isinstance(value, bool):
                text = "true" if value else "false"
            env[ENV_PREFIX + name.upper()] = text
        return env

    # --- questions the service asks ------------------------------------------------------

    def allows(self, bucket: str, key: str = "") -> bool:
        """True when the bucket (and key) are inside the configured allowlist."""
        return any(scope.covers(bucket, key) for scope in self.buckets)

    def kept_collections(self, bucket: str, key: str) -> list[KeptCollection]:
        """The kept collections a change of s3://bucket/key changes."""
        return [kept for kept in self.collections if kept.covers(bucket, key)]

    def kept_collection(self, bucket: str, prefix: str) -> KeptCollection | None:
        """The kept collection of s3://bucket/prefix, if it is one."""
        for kept in self.collections:
            if kept.bucket == bucket and kept.prefix == prefix:
                return kept
        return None

    def is_public(self, bucket: str, key: str) -> bool:
        """True when `?torrent` on this key may be answered without a signature."""
        return any(scope.covers(bucket, key) for scope in self.public_prefixes)

    def bucket_region(self, bucket: str) -> str:
        """The region a bucket lives in: its scope's `region`, else the deployment's."""
        for scope in self.buckets:
            if scope.name == bucket and scope.region:
                return scope.region
        return self.region

    @property
    def s3_endpoint(self) -> str:
        """The base URL objects are reachable at (web seeds point there)."""
        if self.endpoint_url:
            return self.endpoint_url.rstrip("/")
        return f"https://{_s3_host(self.region)}"

    def bucket_endpoint(self, bucket: str) -> str:
        """The base URL of the endpoint serving this bucket: its own region's on AWS."""
        if self.endpoint_url:
            return self.s3_endpoint
        return f"https://{_s3_host(self.bucket_region(bucket))}"

    def bucket_url(self, bucket: str) -> str:
        """The bucket's public base URL: virtual-hosted on AWS where TLS allows, else path-style."""
        if self.endpoint_url or "." in bucket:
            # A dotted name would not match the wildcard certificate of a virtual host.
            return f"{self.bucket_endpoint(bucket)}/{bucket}"
        return f"https://{bucket}.{_s3_host(self.bucket_region(bucket))}"


def _s3_host(region: str) -> str:
    """S3's regional host name; the China regions live under their own DNS suffix."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"s3.{region}.{suffix}"
