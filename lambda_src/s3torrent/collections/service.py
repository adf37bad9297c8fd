"""Collections: make, reuse and describe the multi-file torrent of s3://BUCKET/PREFIX/.

For one collection, `make` decides, in this order (docs/collections.md):

1. Before any request: a prefix the allowlist does not cover, or whose `.torrent` would pass
   S3's key limit, is skipped.
2. The listing (ListObjectsV2, every page): no member at all is an error; keys that are not
   valid paths are left out with their reason. An object named like the prefix without its
   slash would own the same `.torrent`: refused.
3. The stored `<PREFIX>.torrent`: fresh when it records this listing's digest (and, when
   the caller states options, was made with them) -> reused, nothing read.
4. Over the caller's size limit -> skipped as too large; a torrent the engine cannot make
   (no byte at all, over 10 MB) -> InvalidInput, before any byte is read.
5. Every member hashed through ranged GETs pinned to the ETag the listing showed, except what
   the collection's hash record (`records.py`) still holds: v2 and hybrid members whose ETag
   and size are unchanged, v1 pieces before the first file that differs.
6. Written only if a new listing still has the digest that was hashed, and listed once more
   after writing: a change in between deletes what was just written (it would claim bytes
   that are gone) and answers CHANGED.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from s3torrent.collections.hashing import (
    Reuse,
    collection_files,
    hash_collection,
    plan_reuse,
    resume_v1,
)
from s3torrent.collections.listing import CollectionRef, Listing, Skipped, collect
from s3torrent.collections.records import HashRecord, HashRecords, MemberHashes, stream_record
from s3torrent.errors import InvalidInput, ObjectChanged, ObjectNotFound
from s3torrent.fanout.records import BuildManifest
from s3torrent.model import ListPage, Outcome, SkipReason, TransferCounters
from s3torrent.policy import collection_options, options_digest
from s3torrent.s3.objects import S3Objects
from s3torrent.s3.records import CollectionRecord
from s3torrent.settings import Settings
from s3torrent.torrent import (
    CollectionTorrent,
    InvalidTorrent,
    MetaVersion,
    PieceHashes,
    TorrentError,
    TorrentOptions,
    build_collection_torrent,
    choose_collection_piece_length,
    invalid_collection_keys,
    magnet_link,
    read_collection_torrent,
)

if TYPE_CHECKING:
    from s3torrent.fanout.builds import FanoutBuilds

logger = logging.getLogger(__name__)

HashProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class CollectionResult:
    """The typed result of one collection call (the handlers map it as an object's)."""

    outcome: Outcome
    ref: CollectionRef
    record: CollectionRecord | None = None
    torrent_bytes: bytes | None = None
    magnet: str | None = None
    skip_reason: SkipReason | None = None
    skipped: tuple[Skipped, ...] = ()  # keys under the prefix left out of the torrent
    counters: TransferCounters = field(default_factory=TransferCounters)
    # The listing looked at, when a skip came after it (TOO_LARGE: the API's queued-job
    # dedupe keys on it, as on an object's ETag).
    listing_digest: str | None = None

    @property
    def torrent_key(self) -> str:
        return self.ref.torrent_key


class CollectionService:
    """Makes, reuses and describes the `<PREFIX>.torrent` of every object under PREFIX/."""

    def __init__(
        self,
        settings: Settings,
        objects: S3Objects,
        records: HashRecords | None = None,
        fanout: FanoutBuilds | None = None,
        *,
        on_removed: Callable[[CollectionRef], None] | None = None,
    ) -> None:
        self.settings = settings
        self.objects = objects
        self.records = records  # what earlier builds hashed: None reads every member
        self.fanout = fanout  # spreads big builds over worker invocations (docs/fanout.md)
        self.on_removed = on_removed  # told of a torrent remove_if_empty deleted (feed index)

    def finish_fanout(
        self,
        manifest: BuildManifest,
        unit_hashes: list[PieceHashes | None],
        settings: Settings,
    ) -> str | None:
        """Write the torrent a fan-out build hashed if the listing is still the one hashed
        (None), and keep its hash record for the next, incremental, build."""
        ref = CollectionRef(manifest.bucket, manifest.key)
        version = manifest.meta_version
        options = collection_options(settings, ref.bucket, ref.prefix, version)
        files = collection_files(manifest.members)
        previous = self._previous(ref) if manifest.held or manifest.stream_offset else None
        if version is MetaVersion.V1:
            rest = unit_hashes[0]
            assert rest is not None  # the stream's rest is always read
            v1_pieces = rest.v1_pieces or b""
            if manifest.stream_offset:
                plan = resume_v1(previous, manifest.members, manifest.piece_length)
                if previous is None or plan.read_from != manifest.stream_offset:
                    return f"{ref.uri}: the hash record this build resumed from is gone"
                v1_pieces = plan.combine(previous.v1_pieces, v1_pieces)
            torrent = build_collection_torrent(
                ref.name, files, options, piece_length=manifest.piece_length, v1_pieces=v1_pieces
            )
            hash_record = stream_record(manifest.members, manifest.piece_length, v1_pieces)
        else:
            found = _with_held(manifest, unit_hashes, previous)
            if found is None:
                return f"{ref.uri}: the hash record of its unchanged members is gone"
            torrent = build_collection_torrent(
                ref.name,
                files,
                options,
                piece_length=manifest.piece_length,
                file_hashes=found,
            )
            hash_record = HashRecord(
                manifest.piece_length,
                version,
                members=tuple(
                    MemberHashes(member.key, member.etag, member.size, hashes)
                    for member, hashes in zip(manifest.members, found, strict=True)
                ),
            )
        if self.records is not None:
            self.records.save(ref, hash_record)
        read = sum(manifest.unit_sizes)
        record = _record_of(ref, manifest.etag, torrent, options, read)
        if self._store(ref, manifest.etag, torrent, record) is None:
            return f"{ref.uri} changed before its torrent was written"
        return None

    def make(
        self,
        ref: CollectionRef,
        *,
        settings: Settings | None = None,
        meta_version: MetaVersion | None = None,
        max_bytes: int | None = None,
        force: bool = False,
        write: bool = True,
        on_progress: HashProgress | None = None,
        match_options: bool = False,
        overrides: Mapping[str, Any] | None = None,
    ) -> CollectionResult:
        """Make (or reuse) the collection's torrent; see the module docstring for the order.

        `overrides` are what made `settings` from the service's (a fan-out build keeps them).
        """
        started = time.monotonic()
        settings = settings or self.settings
        counters = TransferCounters()
        if not settings.allows(ref.bucket, ref.prefix):
            return CollectionResult(Outcome.SKIPPED, ref, skip_reason=SkipReason.OUTSIDE_SCOPE)
        if ref.key_too_long:
            return CollectionResult(Outcome.SKIPPED, ref, skip_reason=SkipReason.KEY_TOO_LONG)
        options = collection_options(settings, ref.bucket, ref.prefix, meta_version)
        listing = self.list(ref, options.meta_version)
        counters.get_requests += listing.requests
        self._check_no_namesake(ref)
        if not force:
            fresh = self._stored_if_fresh(
                ref, listing, options, counters, explicit=match_options or meta_version is not None
            )
            if fresh is not None:
                return fresh
        limit = (
            settings.max_object_bytes
            if max_bytes is None
            else min(max_bytes, settings.max_object_bytes)
        )
        if listing.size > limit:
            return CollectionResult(
                Outcome.SKIPPED,
                ref,
                skip_reason=SkipReason.TOO_LARGE,
                skipped=listing.skipped,
                listing_digest=listing.digest,
            )
        try:
            piece_length = choose_collection_piece_length(
                ref.name, collection_files(listing.members), options
            )
        except TorrentError as error:
            raise InvalidInput(f"{ref.uri}: {error}") from error
        if self.fanout is not None and write and max_bytes is None:
            part_bytes = settings.fanout_part_bytes
            reuse = plan_reuse(listing.members, piece_length, options, self._previous(ref))
            if 0 < part_bytes < reuse.to_read:
                return self._start_fanout(
                    ref, listing, options, piece_length, settings, overrides, reuse
                )
        try:
            torrent = self._hash(ref, listing, options, piece_length, counters, on_progress)
        except ObjectChanged as error:
            logger.info("%s: not written, a member changed: %s", ref.uri, error)
            return self._changed(ref, listing, counters, started)
        record = _record_of(ref, listing.digest, torrent, options, counters.bytes_read)
        stored: CollectionRecord | None = None
        if write:
            stored = self._store(ref, listing.digest, torrent, record)
            if stored is None:
                return self._changed(ref, listing, counters, started)
        counters.seconds = time.monotonic() - started
        return CollectionResult(
            Outcome.CREATED,
            ref,
            record=stored or record,
            torrent_bytes=torrent.data,
            magnet=magnet_link(torrent),
            skipped=listing.skipped,
            counters=counters,
        )

    def describe(self, ref: CollectionRef) -> CollectionResult:
        """The stored torrent's record and bytes, FRESH or CHANGED against a new listing.

        ObjectNotFound when there is no collection torrent s3torrent wrote.
        """
        stored = self.objects.get_collection_torrent(ref.torrent_ref)
        if stored is None:
            raise ObjectNotFound(
                f"{ref.uri}: no collection torrent made by s3torrent at {ref.torrent_key}"
            )
        data, record = stored
        version = _version_of(record.meta_version)
        try:
            listing: Listing | None = self.list(ref, version)
        except InvalidInput:  # every member is gone
            listing = None
        fresh = listing is not None and listing.digest == record.listing_digest
        return CollectionResult(
            Outcome.FRESH if fresh else Outcome.CHANGED,
            ref,
            record=record,
            torrent_bytes=data,
            magnet=_magnet_of(data),
            skipped=listing.skipped if listing else (),
        )

    def remove_if_empty(self, ref: CollectionRef) -> bool:
        """Delete the stored collection torrent when no member is left under the prefix (a
        kept collection whose last object was deleted); True when it was deleted.

        `on_removed` (the feed index) hears of every empty prefix, the torrent deleted now or
        before: a retry after it failed once completes it."""
        listing = collect(
            ref, self._pages(ref), lambda keys: invalid_collection_keys(keys, MetaVersion.V1)
        )
        if listing.members:
            return False
        stored = self.objects.get_collection_torrent(ref.torrent_ref)
        if stored is not None:
            self.objects.delete_collection_torrent(ref.torrent_ref, stored[1].etag)
        if self.on_removed is not None:
            self.on_removed(ref)  # unlisted from the feeds
        return stored is not None

    def list(self, ref: CollectionRef, meta_version: MetaVersion) -> Listing:
        """The collection's members as S3 lists them now.

        With no member, InvalidInput (400 InvalidRequest from the API, as a directory
        marker's `?torrent` always answered): a collection needs at least one object.
        """
        listing = collect(
            ref, self._pages(ref), lambda keys: invalid_collection_keys(keys, meta_version)
        )
        if listing.members:
            return listing
        left_out = ""
        if listing.skipped:
            left_out = f" ({len(listing.skipped)} left out: {listing.skipped[0].reason})"
        message = f"{ref.uri}: no object under this prefix to make a collection of{left_out}"
        if listing.marker:
            message += " (only its directory marker)"
        raise InvalidInput(message)

    # -- the steps ----------------------------------------------------------------------------

    def _pages(self, ref: CollectionRef) -> Iterator[ListPage]:
        token: str | None = None
        while True:
            page = self.objects.list_page(
                ref.bucket,
                ref.prefix,
                token,
                request_payer=ref.request_payer,
                expected_bucket_owner=ref.expected_bucket_owner,
            )
            yield page
            token = page.next_token
            if not token:
                return

    def _check_no_namesake(self, ref: CollectionRef) -> None:
        # One LIST, not a HEAD (a 404 HEAD costs a probe GET): `base` itself sorts before
        # every key that extends it, so it is the first key listed under it if it exists.
        page = self.objects.list_page(
            ref.bucket,
            ref.base,
            None,
            max_keys=1,
            request_payer=ref.request_payer,
            expected_bucket_owner=ref.expected_bucket_owner,
        )
        if page.objects and page.objects[0].key == ref.base:
            raise InvalidInput(
                f"s3://{ref.bucket}/{ref.base} is an object, and its torrent would be"
                f" {ref.torrent_key} too: no collection torrent for {ref.uri}"
            )

    def _stored_if_fresh(
        self,
        ref: CollectionRef,
        listing: Listing,
        options: TorrentOptions,
        counters: TransferCounters,
        *,
        explicit: bool,
    ) -> CollectionResult | None:
        stored = self.objects.get_collection_torrent(ref.torrent_ref)
        counters.get_requests += 1
        if stored is None:
            return None
        data, record = stored
        if record.listing_digest != listing.digest:
            return None
        if explicit and (
            record.options_digest != options_digest(options)
            or (options.piece_length is not None and record.piece_length != options.piece_length)
        ):
            return None
        return CollectionResult(
            Outcome.FRESH,
            ref,
            record=record,
            torrent_bytes=data,
            magnet=_magnet_of(data),
            skipped=listing.skipped,
            counters=counters,
        )

    def _hash(
        self,
        ref: CollectionRef,
        listing: Listing,
        options: TorrentOptions,
        piece_length: int,
        counters: TransferCounters,
        on_progress: HashProgress | None,
    ) -> CollectionTorrent:
        try:
            torrent, record = hash_collection(
                self.objects,
                ref,
                listing.members,
                options,
                piece_length,
                counters,
                on_progress,
                previous=self._previous(ref),
            )
        except TorrentError as error:
            raise InvalidInput(f"{ref.uri}: {error}") from error
        if self.records is not None:
            # Valid whatever happens to the torrent: every hash is pinned to an ETag.
            self.records.save(ref, record)
        return torrent

    def _store(
        self,
        ref: CollectionRef,
        digest: str,
        torrent: CollectionTorrent,
        record: CollectionRecord,
    ) -> CollectionRecord | None:
        """Write the torrent if a new listing still has the digest hashed, and list once more
        after writing; None (nothing left written) when the collection changed."""
        if self._digest_now(ref, torrent.meta_version) != digest:
            return None
        stored = self.objects.put_collection_torrent(ref.torrent_ref, torrent.data, record)
        if self._digest_now(ref, torrent.meta_version) != digest:
            logger.warning("%s changed while its torrent was written: removing it", ref.uri)
            self.objects.delete_collection_torrent(ref.torrent_ref, stored.etag)
            return None
        return stored

    def _previous(self, ref: CollectionRef) -> HashRecord | None:
        return self.records.load(ref) if self.records is not None else None

    def _start_fanout(
        self,
        ref: CollectionRef,
        listing: Listing,
        options: TorrentOptions,
        piece_length: int,
        settings: Settings,
        overrides: Mapping[str, Any] | None,
        reuse: Reuse,
    ) -> CollectionResult:
        assert self.fanout is not None
        if self.fanout.running(ref.bucket, ref.prefix, listing.digest) is not None:
            # A redelivered rebuild of the same listing: its build is under way.
            return CollectionResult(Outcome.STARTED, ref, skipped=listing.skipped)
        version = MetaVersion(options.meta_version)
        manifest = BuildManifest(
            kind="collection",
            bucket=ref.bucket,
            key=ref.prefix,
            etag=listing.digest,
            size=listing.size,
            piece_length=piece_length,
            meta_version=version,
            part_bytes=settings.fanout_part_bytes,
            overrides=dict(overrides or {}),
            members=listing.members,
            held=reuse.held,
            stream_offset=reuse.stream_offset,
        )
        self.fanout.start(manifest)
        return CollectionResult(Outcome.STARTED, ref, skipped=listing.skipped)

    def _digest_now(self, ref: CollectionRef, meta_version: MetaVersion) -> str | None:
        try:
            return self.list(ref, meta_version).digest
        except InvalidInput:  # every member is gone
            return None

    @staticmethod
    def _changed(
        ref: CollectionRef, listing: Listing, counters: TransferCounters, started: float
    ) -> CollectionResult:
        counters.seconds = time.monotonic() - started
        return CollectionResult(Outcome.CHANGED, ref, skipped=listing.skipped, counters=counters)


def _with_held(
    manifest: BuildManifest, unit_hashes: list[PieceHashes | None], previous: HashRecord | None
) -> list[PieceHashes] | None:
    """Every member's hashes: the parts' and, for the members it holds, the record's (None
    when the record no longer holds one of them)."""
    known = previous.by_key() if previous is not None else {}
    found: list[PieceHashes] = []
    for member, hashes in zip(manifest.members, unit_hashes, strict=True):
        if hashes is None:
            hashes = previous.reusable(member, known) if previous is not None else None
            if hashes is None:
                return None
        found.append(hashes)
    return found


def _record_of(
    ref: CollectionRef,
    digest: str,
    torrent: CollectionTorrent,
    options: TorrentOptions,
    bytes_read: int,
) -> CollectionRecord:
    return CollectionRecord(
        bucket=ref.bucket,
        torrent_key=ref.torrent_key,
        listing_digest=digest,
        files=len(torrent.files),
        size=torrent.length,
        piece_length=torrent.piece_length,
        meta_version=str(torrent.meta_version),
        info_hash_v1=torrent.info_hash_v1,
        info_hash_v2=torrent.info_hash_v2,
        options_digest=options_digest(options),
        bytes_read=bytes_read,
    )


def _magnet_of(data: bytes) -> str | None:
    try:
        return magnet_link(read_collection_torrent(data))
    except InvalidTorrent:
        return None


def _version_of(text: str) -> MetaVersion:
    try:
        return MetaVersion(text)
    except ValueError:
        return MetaVersion.V1


def overrides_meta_version(overrides: Mapping[str, Any] | None) -> MetaVersion | None:
    """The meta version a caller asked for, if any (collections default to v1 otherwise)."""
    value = (overrides or {}).get("meta_version")
    return MetaVersion(str(value)) if value is not None else None
