"""TorrentService: for one object, skip, reuse, take the store's torrent, or compute one.

Every entry point (S3 events, the API, backfills, the CLI) calls this class; handlers only
map its typed results. The decisions, in order, for `make_torrent`:

1. Key-only skips, before any request: directory marker, a `.torrent` key, a key too long
   for its `.torrent`, a bucket/prefix outside the allowlist.
2. HeadObject: 0 bytes, archived and not restored, SSE-C.
3. The stored `<key>.torrent`: fresh (built from this ETag, with these options) -> reused.
4. Too large for the caller's path (checked after 3, so a fresh torrent of a huge object
   is still served by the API).
5. Native (GetObjectTorrent, verified against the object's bytes) or computed.
6. Write `<key>.torrent` only if a new HeadObject still shows the ETag that was hashed,
   and look once more after writing (a change in between is settled, not left behind).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from s3torrent.collections import CollectionRef, CollectionResult, CollectionService
from s3torrent.collections.records import HashRecords
from s3torrent.collections.service import overrides_meta_version
from s3torrent.errors import (
    AccessDenied,
    InvalidInput,
    NativeTorrentUnavailable,
    ObjectChanged,
    ObjectNotFound,
    S3TorrentError,
    UnsupportedObject,
)
from s3torrent.fanout import BuildManifest, BuildState, FanoutBuilds, FanoutStore
from s3torrent.model import (
    ObjectInfo,
    ObjectRef,
    Outcome,
    SkipReason,
    TorrentRecord,
    TorrentResult,
    TransferCounters,
)
from s3torrent.native import NativeTorrents
from s3torrent.policy import (
    OVERRIDABLE,
    key_skip_reason,
    object_skip_reason,
    options_match,
    torrent_options,
    torrent_source_of,
)
from s3torrent.s3.objects import S3Objects, is_retryable
from s3torrent.s3.reader import read_parts
from s3torrent.settings import Settings
from s3torrent.torrent import (
    InvalidTorrent,
    MetaVersion,
    PieceHashBuilder,
    PieceHashes,
    Torrent,
    TorrentError,
    TorrentOptions,
    TorrentTooLarge,
    build_torrent,
    fit_piece_length,
    magnet_link,
    read_collection_torrent,
    read_torrent,
    torrent_name_for_key,
)

if TYPE_CHECKING:  # at run time: job_queue loads observability, and with it Powertools' logger
    from s3torrent.job_queue import JobQueue

logger = logging.getLogger(__name__)


# An object rewritten while its torrent was being written is remade this many times at most
# (each further change sends its own event anyway).
MAX_REMAKES = 2


HashProgress = Callable[[int, int], None]
"""Called with (bytes hashed so far, object size) as a computed torrent advances."""


class TorrentIndex(Protocol):
    """Where torrents are listed as they are written and deleted (publishing's feed index)."""

    def record_torrent(self, result: TorrentResult) -> None: ...

    def forget_torrent(self, ref: ObjectRef) -> None: ...

    def record_collection(self, result: CollectionResult) -> None: ...

    def forget_collection(self, bucket: str, prefix: str) -> None: ...


class TorrentService:
    """Makes, reuses and removes the `<key>.torrent` next to each object."""

    def __init__(
        self,
        settings: Settings,
        objects: S3Objects,
        index: TorrentIndex | None = None,
        hash_records: HashRecords | None = None,
        *,
        fanout_store: FanoutStore | None = None,
        worker_queue: JobQueue | None = None,
    ) -> None:
        self.settings = settings
        self.objects = objects
        self.index = index  # None: nothing is listed (the CLI, a deployment without a table)
        self.hash_records = hash_records  # collections' records; None: every build reads all
        self.native = NativeTorrents(objects, self.hash_object)
        # Work over `fanout_part_bytes` spreads over worker invocations where the deployment
        # has a queue and a table for it (docs/fanout.md); elsewhere one process hashes it all.
        self.fanout = (
            FanoutBuilds(
                objects,
                fanout_store,
                worker_queue,
                self,
                # Every delivery of a part that dies unheard (killed at its timeout, out of
                # memory) holds its message for the queue's visibility timeout.
                delivery_seconds=settings.job_visibility_seconds,
                deliveries=settings.job_max_receives,
            )
            if fanout_store is not None and worker_queue is not None
            else None
        )

    # -- public -----------------------------------------------------------------------------

    def settings_for(self, overrides: Mapping[str, Any] | None) -> Settings:
        """These settings with per-request overrides, validated (InvalidInput otherwise)."""
        if not overrides:
            return self.settings
        unknown = sorted(set(overrides) - OVERRIDABLE)
        if unknown:
            raise InvalidInput(
                f"unknown torrent options: {', '.join(unknown)}"
                f" (allowed: {', '.join(sorted(OVERRIDABLE))})"
            )
        values = self.settings.model_dump()
        values.update(overrides)
        return Settings.from_mapping(values)

    def is_custom(self, overrides: Mapping[str, Any] | None) -> bool:
        """True when per-request overrides ask for a torrent other than the settings make."""
        return bool(overrides) and self.settings_for(overrides) != self.settings

    def make_torrent(
        self,
        ref: ObjectRef,
        *,
        overrides: Mapping[str, Any] | None = None,
        max_bytes: int | None = None,
        force: bool = False,
        write: bool = True,
        on_progress: HashProgress | None = None,
        match_options: bool = False,
        _depth: int = 0,
    ) -> TorrentResult:
        """Make (or reuse) the torrent of one object; see the module docstring for the order.

        A stored torrent of the current ETag is reused as it is, unless the caller states the
        options it wants (`overrides`, or `match_options` for the CLI's flags) and it differs.
        """
        started = time.monotonic()
        counters = TransferCounters()
        settings = self.settings_for(overrides)
        skip = key_skip_reason(settings, ref.bucket, ref.key)
        if skip is not None:
            return self._skipped(ref, skip, counters)
        try:
            name = torrent_name_for_key(ref.key)
        except TorrentError as error:  # a key whose last segment cannot name a torrent
            raise InvalidInput(f"{ref.uri}: {error}") from error
        options = torrent_options(settings, ref.bucket, ref.key)
        try:
            info = self.objects.head_object(ref)
        except UnsupportedObject as error:
            return self._skipped(ref, _skip_reason(error), counters)
        skip = object_skip_reason(info)
        if skip is not None:
            return self._skipped(ref, skip, counters)
        if not force:
            fresh = self._stored_if_fresh(
                ref,
                info,
                settings,
                options,
                counters,
                explicit_options=bool(overrides) or match_options,
            )
            if fresh is not None:
                return fresh
        try:
            # Before any byte is read: a piece length whose torrent clients load (under
            # 10 MB, pieces up to 128 MiB), or no torrent at all (a file of 16 TiB or more).
            options = replace(options, piece_length=fit_piece_length(name, info.size, options))
        except TorrentTooLarge:
            return self._skipped(
                ref, SkipReason.TOO_LARGE_FOR_CLIENTS, counters, source_etag=info.etag
            )
        limit = settings.max_object_bytes
        if max_bytes is not None:
            limit = min(limit, max_bytes)
        if info.size > limit:
            return self._skipped(ref, SkipReason.TOO_LARGE, counters, source_etag=info.etag)
        if self.fans_out(settings, info.size) and max_bytes is None and write:
            return self._start_fanout(info, options, settings, overrides, counters)
        try:
            torrent, source = self._produce(info, name, settings, options, counters, on_progress)
            if write:
                record = self._write_if_current(info, torrent, source)
                if record is None:
                    return self._changed(ref, counters, started)
                settled = self._settle_after_write(ref, info, overrides, _depth)
                if settled is not None:
                    return settled
            else:
                record = None
        except ObjectChanged as error:
            logger.info("not written, the object changed: %s", error)
            return self._changed(ref, counters, started)
        except UnsupportedObject as error:  # e.g. InvalidObjectState on GET
            return self._skipped(ref, _skip_reason(error), counters)
        counters.seconds = time.monotonic() - started
        result = TorrentResult(
            outcome=Outcome.CREATED,
            ref=ref,
            torrent_key=ref.torrent_key,
            record=record,
            torrent_bytes=torrent.data,
            magnet=magnet_link(torrent),
            source=source,
            counters=counters,
        )
        if record is not None:
            self.publish(result)
        return result

    def fans_out(self, settings: Settings, size: int) -> bool:
        """True when `size` bytes are spread over worker invocations (docs/fanout.md)."""
        part_bytes = settings.fanout_part_bytes
        return (
            self.fanout is not None
            and 0 < part_bytes < size
            and settings.torrent_source != "native"
        )

    def build_state(self, bucket: str, key: str) -> BuildState | None:
        """The latest fan-out build of an object (or a collection's prefix), if any."""
        return self.fanout.latest(bucket, key) if self.fanout is not None else None

    def finish_fanout(
        self, manifest: BuildManifest, unit_hashes: list[PieceHashes | None]
    ) -> str | None:
        """Write the torrent a fan-out build hashed, if its source is still what was hashed;
        None once written, else why not."""
        settings = self.settings_for(manifest.overrides or None)
        if manifest.kind == "collection":
            why = self.collections.finish_fanout(manifest, unit_hashes, settings)
            if why is None:
                self.publish_collection(CollectionRef(manifest.bucket, manifest.key))
            return why
        ref = ObjectRef(manifest.bucket, manifest.key)
        options = replace(
            torrent_options(settings, ref.bucket, ref.key),
            meta_version=manifest.meta_version,
            piece_length=manifest.piece_length,
        )
        hashes = unit_hashes[0]
        assert hashes is not None  # an object's one unit is always read
        torrent = build_torrent(torrent_name_for_key(ref.key), hashes, options)
        info = ObjectInfo(ref, manifest.size, manifest.etag, manifest.version_id, None)
        record = self._write_if_current(info, torrent, "computed")
        if record is None:
            return f"{ref.uri} changed before its torrent was written"
        if self._settle_after_write(ref, info, manifest.overrides or None, 0) is not None:
            return f"{ref.uri} changed while its torrent was written"
        counters = TransferCounters(bytes_read=manifest.size)
        result = TorrentResult(
            outcome=Outcome.CREATED,
            ref=ref,
            torrent_key=ref.torrent_key,
            record=record,
            torrent_bytes=torrent.data,
            magnet=magnet_link(torrent),
            source="computed",
            counters=counters,
        )
        self.publish(result)
        return None

    def _start_fanout(
        self,
        info: ObjectInfo,
        options: TorrentOptions,
        settings: Settings,
        overrides: Mapping[str, Any] | None,
        counters: TransferCounters,
    ) -> TorrentResult:
        """Queue the parts of a build of `info` (`settings`: the service's with `overrides`)."""
        assert self.fanout is not None and options.piece_length is not None
        ref = info.ref
        if self.fanout.running(ref.bucket, ref.key, info.etag) is None:
            manifest = BuildManifest(
                kind="object",
                bucket=ref.bucket,
                key=ref.key,
                etag=info.etag,
                size=info.size,
                piece_length=options.piece_length,
                meta_version=MetaVersion(options.meta_version),
                part_bytes=settings.fanout_part_bytes,
                version_id=info.version_id,
                overrides=dict(overrides or {}),
            )
            self.fanout.start(manifest)
        # else: a redelivered event of the same version; its build is under way
        return TorrentResult(
            outcome=Outcome.STARTED,
            ref=ref,
            torrent_key=ref.torrent_key,
            counters=counters,
            source_etag=info.etag,
        )

    def publish(self, result: TorrentResult) -> None:
        """List a stored torrent in the feed index (idempotent: the worker calls it again for
        a torrent it finds fresh, so a retried message completes the index)."""
        if self.index is not None and result.record is not None:
            self.index.record_torrent(result)

    def publish_collection(self, written: CollectionResult | CollectionRef) -> None:
        """List a collection torrent just written in the feed index: from the result that
        wrote it, or (a fan-out build's, which has none) read back with one GET.

        Best effort, logged: the torrent is written whatever the index says, and no retry
        would list it (a collection found fresh is not listed again); its next rebuild does.
        """
        if self.index is None:
            return
        ref = written if isinstance(written, CollectionRef) else written.ref
        try:
            if isinstance(written, CollectionRef):
                stored = self.objects.get_collection_torrent(written.torrent_ref)
                if stored is None:  # deleted since (its members went): nothing to list
                    return
                data, record = stored
                magnet = magnet_link(read_collection_torrent(data))
                written = CollectionResult(
                    Outcome.CREATED, ref, record=record, torrent_bytes=data, magnet=magnet
                )
            if written.record is not None:
                self.index.record_collection(written)
        except (S3TorrentError, ClientError, InvalidTorrent) as error:
            logger.warning("%s: not listed in the feeds: %s", ref.uri, error)

    def _forget_collection(self, ref: CollectionRef) -> None:
        if self.index is not None:
            self.index.forget_collection(ref.bucket, ref.prefix)

    @cached_property
    def collections(self) -> CollectionService:
        """The multi-file torrents of prefixes (s3torrent/collections/)."""
        return CollectionService(
            self.settings,
            self.objects,
            self.hash_records,
            self.fanout,
            on_removed=self._forget_collection,
        )

    def make_collection(
        self,
        ref: CollectionRef,
        *,
        overrides: Mapping[str, Any] | None = None,
        max_bytes: int | None = None,
        force: bool = False,
        write: bool = True,
        on_progress: HashProgress | None = None,
        match_options: bool = False,
    ) -> CollectionResult:
        """Make (or reuse) the torrent of every object under a prefix (`<PREFIX>.torrent`).

        Collections are v1 unless the overrides ask for a meta version (policy.py says why).
        A torrent written is listed in the feed index (publish_collection).
        """
        result = self.collections.make(
            ref,
            settings=self.settings_for(overrides),
            meta_version=overrides_meta_version(overrides),
            max_bytes=max_bytes,
            force=force,
            write=write,
            on_progress=on_progress,
            match_options=match_options,
            overrides=overrides,
        )
        if write and result.outcome is Outcome.CREATED:
            self.publish_collection(result)
        return result

    def remove_torrent(self, ref: ObjectRef) -> TorrentResult:
        """On ObjectRemoved: delete our `<key>.torrent` if, and only if, the source is gone.

        DELETED or ABSENT when it is gone. When the object exists again (events came out of
        order, or an old version was deleted), nothing is deleted: FRESH when the stored
        torrent matches it, else CHANGED (its own ObjectCreated event makes the torrent).
        """
        counters = TransferCounters()
        skip = key_skip_reason(self.settings, ref.bucket, ref.key)
        if skip is not None:
            return self._skipped(ref, skip, counters)
        current_ref = replace(ref, version_id=None)
        current = self._current(current_ref)
        if current is not None:
            record = self.objects.head_torrent(ref)
            fresh = record is not None and record.is_fresh_for(current)
            return TorrentResult(
                outcome=Outcome.FRESH if fresh else Outcome.CHANGED,
                ref=ref,
                torrent_key=ref.torrent_key,
                record=record,
                counters=counters,
            )
        deleted = self.objects.delete_torrent(ref)
        if deleted and self._current(current_ref) is not None:
            # The object came back between our check and the delete, and its torrent may
            # have been the one deleted: make it again rather than leave it missing.
            logger.warning("%s came back while its torrent was deleted: remaking it", ref.uri)
            return self.make_torrent(current_ref)
        if self.index is not None:  # ABSENT too: a torrent someone else deleted is gone as well
            self.index.forget_torrent(ref)
        return TorrentResult(
            outcome=Outcome.DELETED if deleted else Outcome.ABSENT,
            ref=ref,
            torrent_key=ref.torrent_key,
            counters=counters,
        )

    def describe(self, ref: ObjectRef) -> TorrentResult:
        """The stored torrent's record, bytes and magnet, without hashing anything.

        FRESH when it was built from the object's current ETag, CHANGED when the object
        changed since (a rebuild is due). ObjectNotFound when the object or its torrent
        does not exist.
        """
        info = self.objects.head_object(ref)
        stored = self.objects.get_torrent(ref)
        if stored is None:
            raise ObjectNotFound(f"{ref.uri}: no torrent made by s3torrent at {ref.torrent_key}")
        data, record = stored
        try:
            torrent = read_torrent(data)
        except InvalidTorrent as error:
            raise ObjectNotFound(f"{ref.uri}: the stored torrent is unreadable: {error}") from error
        return TorrentResult(
            outcome=Outcome.FRESH if record.is_fresh_for(info) else Outcome.CHANGED,
            ref=ref,
            torrent_key=ref.torrent_key,
            record=record,
            torrent_bytes=data,
            magnet=magnet_link(torrent),
            source=torrent_source_of(torrent),
        )

    # -- the steps ----------------------------------------------------------------------------

    def _stored_if_fresh(
        self,
        ref: ObjectRef,
        info: ObjectInfo,
        settings: Settings,
        options: TorrentOptions,
        counters: TransferCounters,
        *,
        explicit_options: bool,
    ) -> TorrentResult | None:
        # One GET (not HEAD + GET): a fresh torrent's bytes are what the caller wants.
        stored = self.objects.get_torrent(ref)
        counters.get_requests += 1
        if stored is None:
            return None
        data, record = stored
        if not record.is_fresh_for(info):
            return None
        try:
            torrent = read_torrent(data)
        except InvalidTorrent:
            logger.warning("%s: stored torrent is unreadable, rebuilding it", ref.uri)
            return None
        # Fresh means built from the current ETag (docs/design.md), whatever options made it: a v2
        # torrent someone asked for stays until its object changes. Only a caller asking for
        # options of its own (POST /torrents, the CLI's flags) gets them rebuilt if they differ.
        if explicit_options and not options_match(torrent, options, settings):
            return None
        return TorrentResult(
            outcome=Outcome.FRESH,
            ref=ref,
            torrent_key=ref.torrent_key,
            record=record,
            torrent_bytes=data,
            magnet=magnet_link(torrent),
            source=torrent_source_of(torrent),
            counters=counters,
        )

    def _produce(
        self,
        info: ObjectInfo,
        name: str,
        settings: Settings,
        options: TorrentOptions,
        counters: TransferCounters,
        on_progress: HashProgress | None,
    ) -> tuple[Torrent, str]:
        if settings.torrent_source != "compute":
            try:
                return self.native.fetch(info, counters), "native"
            except (NativeTorrentUnavailable, AccessDenied) as error:
                # AccessDenied: a role without s3:GetObjectTorrent still computes on `auto`.
                if settings.torrent_source == "native":
                    raise
                logger.info("%s: computing the torrent: %s", info.ref.uri, error)
        return self._compute(info, name, settings, options, counters, on_progress), "computed"

    def _compute(
        self,
        info: ObjectInfo,
        name: str,
        settings: Settings,
        options: TorrentOptions,
        counters: TransferCounters,
        on_progress: HashProgress | None,
    ) -> Torrent:
        piece_length = options.piece_length or fit_piece_length(name, info.size, options)
        hashes = self.hash_object(info, piece_length, options.meta_version, counters, on_progress)
        return build_torrent(name, hashes, replace(options, piece_length=piece_length))

    def hash_object(
        self,
        info: ObjectInfo,
        piece_length: int,
        meta_version: MetaVersion,
        counters: TransferCounters,
        on_progress: HashProgress | None = None,
    ) -> PieceHashes:
        """Hash exactly the object `info` describes: parallel ranged GETs, each thread
        hashing the parts it reads (s3/reader.py)."""
        builder = PieceHashBuilder(info.size, piece_length, meta_version)
        read_parts(
            self.objects.range_source(info),
            info.size,
            builder.part,
            self.objects.reader,
            counters,
            align=piece_length,
            is_retryable=is_retryable,
            on_progress=on_progress,
        )
        return builder.finish()

    def _write_if_current(
        self, info: ObjectInfo, torrent: Torrent, source: str
    ) -> TorrentRecord | None:
        """Write `<key>.torrent` if the object still is what was hashed (else None)."""
        ref = info.ref
        current = self._current(replace(ref, version_id=None))
        if current is None or current.etag != info.etag:
            return None
        if info.version_id and current.version_id and current.version_id != info.version_id:
            return None
        return self.objects.put_torrent(ref, info, torrent, source=source)

    def _settle_after_write(
        self,
        ref: ObjectRef,
        info: ObjectInfo,
        overrides: Mapping[str, Any] | None,
        depth: int,
    ) -> TorrentResult | None:
        """Check the object once more after the write; None when it is still what was hashed.

        Closes the gap between the ETag check and the PutObject: had the object been
        overwritten (and its own event already handled) or deleted (and its ObjectRemoved
        already handled) in that gap, the torrent just written would be the wrong one and
        nothing else would ever correct it.
        """
        current = self._current(replace(ref, version_id=None))
        if current is not None and current.etag == info.etag:
            return None
        if current is None:
            logger.warning("%s was deleted while its torrent was written: removing it", ref.uri)
            self.objects.delete_torrent(ref)
            return TorrentResult(outcome=Outcome.CHANGED, ref=ref, torrent_key=ref.torrent_key)
        if depth >= MAX_REMAKES:
            return TorrentResult(outcome=Outcome.CHANGED, ref=ref, torrent_key=ref.torrent_key)
        logger.warning("%s changed while its torrent was written: remaking it", ref.uri)
        return self.make_torrent(
            replace(ref, version_id=None), overrides=overrides, _depth=depth + 1
        )

    # -- small helpers -----------------------------------------------------------------------

    def _current(self, ref: ObjectRef) -> ObjectInfo | None:
        try:
            return self.objects.head_object(ref)
        except ObjectNotFound:
            return None

    @staticmethod
    def _skipped(
        ref: ObjectRef,
        reason: SkipReason,
        counters: TransferCounters,
        *,
        source_etag: str | None = None,
    ) -> TorrentResult:
        return TorrentResult(
            outcome=Outcome.SKIPPED,
            ref=ref,
            torrent_key=ref.torrent_key,
            skip_reason=reason,
            counters=counters,
            source_etag=source_etag,
        )

    @staticmethod
    def _changed(ref: ObjectRef, counters: TransferCounters, started: float) -> TorrentResult:
        counters.seconds = time.monotonic() - started
        return TorrentResult(
            outcome=Outcome.CHANGED, ref=ref, torrent_key=ref.torrent_key, counters=counters
        )


def _skip_reason(error: UnsupportedObject) -> SkipReason:
    try:
        return SkipReason(error.reason)
    except ValueError:
        raise error from None
