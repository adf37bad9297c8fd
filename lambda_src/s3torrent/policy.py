"""The rules every way in shares: which keys and objects can have a torrent, and what a
torrent of s3://bucket/key carries besides its hashes.

The service applies them to one object, the backfill planner to a listing, the API and the
CLI to a caller's options; none of that needs a request, so this module makes none.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from urllib.parse import quote

from s3torrent import __version__
from s3torrent.errors import InvalidInput
from s3torrent.model import MAX_KEY_BYTES, TORRENT_SUFFIX, ObjectInfo, SkipReason
from s3torrent.settings import Settings
from s3torrent.torrent import MetaVersion, Torrent, TorrentOptions

CREATED_BY = f"s3torrent {__version__}"

# Per-request options a caller (API body, CLI flags, job message) may set.
OVERRIDABLE = frozenset(
    {
        "meta_version",
        "piece_length",
        "trackers",
        "web_seeds",
        "private",
        "comment",
        "source_tag",
        "torrent_source",
    }
)

ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
ARCHIVE_TIERS = frozenset({"ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS"})


def key_skip_reason(settings: Settings, bucket: str, key: str) -> SkipReason | None:
    """Why this key can never get a torrent, decided from the name alone (no request)."""
    if key.endswith(TORRENT_SUFFIX):
        return SkipReason.TORRENT_KEY
    if key.endswith("/"):
        return SkipReason.DIRECTORY_MARKER
    if len((key + TORRENT_SUFFIX).encode("utf-8")) > MAX_KEY_BYTES:
        return SkipReason.KEY_TOO_LONG
    if not settings.allows(bucket, key):
        return SkipReason.OUTSIDE_SCOPE
    return None


def is_archived(storage_class: str | None, archive_status: str | None, restored: bool) -> bool:
    """True when GetObject would fail until the object is restored."""
    if restored:
        return False
    return storage_class in ARCHIVE_CLASSES or archive_status in ARCHIVE_TIERS


def object_skip_reason(info: ObjectInfo) -> SkipReason | None:
    """Why this object (as HeadObject describes it) can never get a torrent."""
    if info.size == 0:
        return SkipReason.EMPTY
    if is_archived(info.storage_class, info.archive_status, info.restored):
        return SkipReason.ARCHIVED
    if info.sse_customer:
        return SkipReason.SSE_C
    return None


def expand_web_seed(template: str, settings: Settings, bucket: str, key: str) -> str:
    """One BEP 19 web seed URL from a settings template (placeholders: settings.py)."""
    folder = key[: key.rfind("/") + 1]
    values = {
        "bucket_url": settings.bucket_url(bucket),
        "bucket": bucket,
        "key": quote(key, safe="/"),
        "folder": quote(folder, safe="/"),
        "region": settings.bucket_region(bucket),
        "endpoint": settings.bucket_endpoint(bucket),
    }
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError) as error:
        raise InvalidInput(
            f"web seed template {template!r}: unknown or malformed placeholder ({error})"
        ) from error


def torrent_options(settings: Settings, bucket: str, key: str) -> TorrentOptions:
    """What the settings say a torrent of s3://bucket/key carries besides its hashes."""
    return TorrentOptions(
        meta_version=MetaVersion(settings.meta_version),
        piece_length=settings.piece_length,
        trackers=tuple((url,) for url in settings.trackers),
        web_seeds=tuple(expand_web_seed(t, settings, bucket, key) for t in settings.web_seeds),
        private=settings.private,
        source=settings.source_tag,
        comment=settings.comment,
        created_by=CREATED_BY,
        creation_date=None,  # none, so that a rebuild of the same object is byte-identical
    )


def torrent_source_of(torrent: Torrent) -> str:
    """'computed' for a torrent s3torrent built, 'native' for one the store served."""
    created_by = torrent.created_by or ""
    return "computed" if created_by.split(" ", 1)[0] == "s3torrent" else "native"


def options_match(stored: Torrent, want: TorrentOptions, settings: Settings) -> bool:
    """True when a stored torrent is what these settings would make (its ETag aside)."""
    if torrent_source_of(stored) == "native":
        # The store's own torrent carries the store's options; it stays while wanted.
        return settings.torrent_source != "compute"
    if settings.torrent_source == "native":
        return False
    return (
        stored.meta_version == want.meta_version
        and (want.piece_length is None or stored.piece_length == want.piece_length)
        and stored.trackers == want.trackers
        and stored.web_seeds == want.web_seeds
        and stored.private == want.private
        and stored.comment == want.comment
        and stored.source == want.source
    )


# --- collections (multi-file torrents of a prefix, docs/collections.md) ---------------------

COLLECTION_META_VERSION = MetaVersion.V1
"""Collections are v1 unless asked otherwise: aria2 never finishes a hybrid multi-file
download through a web seed (it asks the seed for the pad files) and Transmission 3.00
cannot open hybrid multi-file torrents, while v1 without pad files works in every client
tried (docs/collections.md)."""


def collection_options(
    settings: Settings, bucket: str, prefix: str, meta_version: MetaVersion | None = None
) -> TorrentOptions:
    """What a collection torrent of s3://bucket/prefix/ carries besides its hashes.

    Its web seeds are the templates expanded for the key `prefix` without its slash, so
    `{folder}` is the prefix's *parent* folder: BEP 19 clients append `name/path` to it and
    land on each member (`…/datasets/` + `set1/a/b.bin`).
    """
    base = torrent_options(settings, bucket, prefix.removesuffix("/"))
    return replace(base, meta_version=meta_version or COLLECTION_META_VERSION)


def options_digest(options: TorrentOptions) -> str:
    """SHA-256 (hex) of what a torrent carries besides its hashes, piece length aside."""
    text = repr(
        (
            str(options.meta_version),
            options.trackers,
            options.web_seeds,
            options.private,
            options.comment,
            options.source,
        )
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
