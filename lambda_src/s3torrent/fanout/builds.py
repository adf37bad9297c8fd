"""Fan-out builds: one torrent hashed by many worker invocations at once (docs/fanout.md).

`start` writes the build's manifest and status, then queues one `s3torrent.part` message per
part on the worker queue. `run_part` hashes one part (every range pinned with If-Match to the
ETag in the manifest), stores its hashes and counts it done in one conditional update; the
invocation whose count completes the build assembles the torrent from the part records and
hands it to the `Finisher`, which writes it only if the source is still what was hashed.

Failures: a part that raises something worth retrying comes back (SQS); on its last
delivery, or for anything never worth retrying, the build is marked `failed` with the reason.
A source changed or deleted mid-build fails it at the first part that sees it (412/404), and
the assembly checks once more. A duplicate delivery counts nothing (the set of counted
parts); an assembler that died is replaced by the next delivery of any counted part. Records
are keyed by the build, never by the object, so no later build can mix them with new bytes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from s3torrent.collections.hashing import OffsetSource, member_info
from s3torrent.collections.listing import CollectionRef
from s3torrent.collections.reading import ConcatenatedSource
from s3torrent.errors import ObjectChanged, ObjectNotFound, S3TorrentError
from s3torrent.fanout.plan import Slice, part_slices
from s3torrent.fanout.records import BuildManifest, UnreadableRecord, decode_part, encode_part
from s3torrent.fanout.store import BuildState, FanoutStore
from s3torrent.messages import PartMessage
from s3torrent.model import ObjectInfo, ObjectRef, TransferCounters
from s3torrent.s3.objects import S3Objects, is_retryable
from s3torrent.s3.reader import RangeSource, read_parts
from s3torrent.torrent import (
    MetaVersion,
    PartHashes,
    PieceHashBuilder,
    PieceHashes,
    collection_file_builder,
    hash_collection_file,
)

if TYPE_CHECKING:  # at run time: job_queue loads observability, and with it Powertools' logger
    from s3torrent.job_queue import JobQueue

logger = logging.getLogger(__name__)

HashProgress = Callable[[int, int], None]

STALE_SLACK_SECONDS = 300


class Finisher(Protocol):
    """Writes the torrent a build's hashes make, if its source is still what was hashed."""

    def finish_fanout(
        self, manifest: BuildManifest, unit_hashes: list[PieceHashes | None]
    ) -> str | None:
        """None once written; else why nothing was written. A unit's hashes are None where
        the manifest says the collection's hash record holds them (`held`)."""
        ...


class FanoutBuilds:
    """Starts builds, runs their parts, assembles them."""

    def __init__(
        self,
        objects: S3Objects,
        store: FanoutStore,
        queue: JobQueue,
        finisher: Finisher,
        *,
        delivery_seconds: float = 5400,
        deliveries: int = 5,
    ) -> None:
        self.objects = objects
        self.store = store
        self.queue = queue
        self.finisher = finisher
        # Past every delivery of every part (plus slack for queueing and clock skew), a
        # running build with no part counted has lost one to the dead-letter queue.
        self.stale_after = deliveries * delivery_seconds + STALE_SLACK_SECONDS

    def latest(self, bucket: str, key: str) -> BuildState | None:
        """The latest build of an object (or a collection's prefix); a running one with no
        part counted for longer than every delivery could take is reported failed."""
        state = self.store.latest(bucket, key)
        if state is None or state.status != "running":
            return state
        quiet = self.store.clock() - state.updated_at
        if quiet > self.stale_after:
            reason = f"no part finished for {quiet:.0f} s: see the worker's dead-letter queue"
            return replace(state, status="failed", reason=reason)
        return state

    def running(self, bucket: str, key: str, etag: str) -> BuildState | None:
        """A build of this very version (ETag, or a collection's listing digest) under way:
        a redelivered event must not start a second one."""
        state = self.latest(bucket, key)
        return (
            state
            if state is not None and state.status == "running" and state.etag == etag
            else None
        )

    def start(self, manifest: BuildManifest) -> str:
        """Record the build and queue its parts; its id."""
        build_id = uuid.uuid4().hex
        self.store.create(build_id, manifest)
        bodies = [
            PartMessage(build_id=build_id, part=index).to_body() for index in range(manifest.parts)
        ]
        rejected = self.queue.send_all(bodies)
        if rejected:  # never for bodies this small; fail loudly rather than hang
            reason = f"the worker queue refused {len(rejected)} part messages: {rejected[0][1]}"
            self.store.end(build_id, "failed", reason)
            raise S3TorrentError(reason)
        logger.info(
            "fan-out build started",
            extra={"uri": manifest.uri, "build_id": build_id, "parts": manifest.parts},
        )
        return build_id

    def run_part(
        self,
        build_id: str,
        index: int,
        *,
        last_delivery: bool = False,
        on_progress: HashProgress | None = None,
    ) -> TransferCounters:
        """Hash part `index` of the build, count it, and assemble if it was the last one.

        Raises only what is worth another delivery; the build is marked failed first when
        this is the last one.
        """
        counters = TransferCounters()
        state = self.store.get(build_id)
        if state is None or state.status != "running":
            logger.info(
                "part of a build that is not running: nothing to do",
                extra={"build_id": build_id, "part": index, "status": state and state.status},
            )
            return counters
        if index in state.done_parts:  # a duplicate delivery
            if state.complete:  # its assembler may have died: assembling is idempotent
                self._assemble(state)
            return counters
        manifest = self.store.manifest(build_id)
        if manifest is None or not 0 <= index < manifest.parts:
            self.store.end(build_id, "failed", f"part {index}: the build's manifest is unreadable")
            return counters
        try:
            hashes = self._hash_part(manifest, index, counters, on_progress)
        except (ObjectChanged, ObjectNotFound) as error:
            self._fail(state, f"{manifest.uri} changed or was deleted mid-build: {error}")
            return counters
        except S3TorrentError as error:
            if error.retryable and not last_delivery:
                raise
            self._fail(state, f"part {index} failed: {error}")
            if error.retryable:
                raise  # to the dead-letter queue, with the message
            return counters
        except Exception as error:
            if last_delivery:
                self._fail(state, f"part {index} failed: {type(error).__name__}: {error}")
            raise
        self.store.save_part(build_id, index, encode_part(hashes))
        counted = self.store.count_part(build_id, index)
        if counted is None:  # counted by a concurrent delivery, or the build ended meanwhile
            again = self.store.get(build_id)
            if again is not None and again.status == "running":
                if again.complete:
                    self._assemble(again)
            else:  # ended (and its records deleted) while this part hashed: no stray record
                self.store.delete_part(build_id, index)
            return counters
        logger.info(
            "part hashed",
            extra={
                "build_id": build_id,
                "part": index,
                "parts_done": counted.parts_done,
                "parts": counted.parts,
                "bytes": counters.bytes_read,
            },
        )
        if counted.complete:
            self._assemble(counted)
        return counters

    # -- hashing one part --------------------------------------------------------------------

    def _hash_part(
        self,
        manifest: BuildManifest,
        index: int,
        counters: TransferCounters,
        on_progress: HashProgress | None,
    ) -> list[tuple[int, PartHashes]]:
        slices = part_slices(manifest.unit_sizes, manifest.piece_length, manifest.part_bytes, index)
        window = self.objects.reader.window
        small: list[Slice] = []  # one GET each
        large: list[Slice] = []  # several GETs each
        for piece in slices:
            one_get = piece.stop - piece.start <= self.objects.reader.part_size
            (small if one_get else large).append(piece)
        found: dict[Slice, PartHashes] = {}
        if small:  # one GET each: several at once (a GET's latency dominates)
            with ThreadPoolExecutor(min(window, len(small)), "s3torrent-part") as pool:
                each = [TransferCounters() for _ in small]
                hashed = pool.map(
                    lambda job: self._hash_slice(manifest, job[0], job[1], None),
                    zip(small, each, strict=True),
                )
                for piece, hashes in zip(small, hashed, strict=True):
                    found[piece] = hashes
                for part_counters in each:
                    counters.add(part_counters)
        for piece in large:  # several GETs each, one slice after another with the full window
            found[piece] = self._hash_slice(manifest, piece, counters, on_progress)
        return [(piece.unit, found[piece]) for piece in slices]

    def _hash_slice(
        self,
        manifest: BuildManifest,
        piece: Slice,
        counters: TransferCounters,
        on_progress: HashProgress | None,
    ) -> PartHashes:
        builder = unit_builder(manifest, piece.unit)
        read_parts(
            OffsetSource(self._unit_source(manifest, piece.unit), piece.start),
            piece.stop - piece.start,
            lambda start, stop: builder.part(piece.start + start, piece.start + stop),
            self.objects.reader,
            counters,
            align=manifest.piece_length,
            is_retryable=is_retryable,
            on_progress=on_progress,
        )
        return builder.part_hashes(piece.start, piece.stop)

    def _unit_source(self, manifest: BuildManifest, unit: int) -> RangeSource:
        if manifest.kind == "object":
            # No version id: If-Match on the ETag alone, so an overwrite fails the next
            # range at once (412) instead of reading a version that is no longer current.
            info = ObjectInfo(
                ObjectRef(manifest.bucket, manifest.key), manifest.size, manifest.etag, None, None
            )
            return self.objects.range_source(info)
        ref = CollectionRef(manifest.bucket, manifest.key)
        if manifest.meta_version is MetaVersion.V1:
            infos = [member_info(ref, member) for member in manifest.members]
            stream = ConcatenatedSource(infos, self.objects.range_source)
            return (
                OffsetSource(stream, manifest.stream_offset) if manifest.stream_offset else stream
            )
        return self.objects.range_source(member_info(ref, manifest.members[unit]))

    # -- the end of a build ------------------------------------------------------------------

    def _assemble(self, state: BuildState) -> None:
        manifest = self.store.manifest(state.build_id)
        if manifest is None:
            self._fail(state, "the build's manifest is gone")
            return
        try:
            unit_hashes = assemble_hashes(
                manifest, self.store.load_parts(state.build_id, manifest.parts)
            )
        except (UnreadableRecord, ValueError) as error:
            self._fail(state, f"the parts' hashes do not assemble: {error}")
            return
        problem = self.finisher.finish_fanout(manifest, unit_hashes)
        if problem is None:
            self.store.end(state.build_id, "done")
            logger.info(
                "fan-out build done", extra={"uri": manifest.uri, "build_id": state.build_id}
            )
        else:
            self.store.end(state.build_id, "failed", problem)
            logger.warning(
                "fan-out build wrote nothing",
                extra={"uri": manifest.uri, "build_id": state.build_id, "reason": problem},
            )
        self.store.forget(state.build_id, manifest.parts)

    def _fail(self, state: BuildState, reason: str) -> None:
        if self.store.end(state.build_id, "failed", reason):
            logger.warning(
                "fan-out build failed",
                extra={
                    "uri": f"s3://{state.bucket}/{state.key}",
                    "build_id": state.build_id,
                    "reason": reason,
                },
            )
            self.store.forget(state.build_id, state.parts)


def unit_builder(manifest: BuildManifest, unit: int) -> PieceHashBuilder:
    """The builder of one unit (`plan.py`), as a single pass would make it."""
    size = manifest.unit_sizes[unit]
    if manifest.kind == "collection" and manifest.meta_version.has_v2:
        return collection_file_builder(size, manifest.piece_length, manifest.meta_version)
    return PieceHashBuilder(size, manifest.piece_length, manifest.meta_version)


def assemble_hashes(
    manifest: BuildManifest, records: Sequence[bytes | None]
) -> list[PieceHashes | None]:
    """Every unit's hashes from the parts' records (ValueError when one is missing); None for
    the members the collection's hash record holds."""
    sizes = manifest.unit_sizes
    held = set(manifest.held)
    builders = {unit: unit_builder(manifest, unit) for unit, size in enumerate(sizes) if size}
    for index, record in enumerate(records):
        if record is None:
            raise ValueError(f"part {index}'s hashes are missing")
        for unit, hashes in decode_part(record):
            if unit not in builders:
                raise ValueError(f"part {index} names unit {unit}, which has no piece")
            builders[unit].add_part_hashes(hashes)
    return [
        None
        if unit in held
        else builders[unit].finish()
        if size
        else hash_collection_file(b"", manifest.piece_length, manifest.meta_version)
        for unit, size in enumerate(sizes)
    ]
