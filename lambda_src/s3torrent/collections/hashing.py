"""Hashing a collection's members with the engine (`s3torrent.torrent`), fed by ranged GETs.

v1: the pieces run across files, so the members are read as one stream
(`ConcatenatedSource`) into one `PieceHashBuilder`. v2 and hybrid: every file starts on a
piece boundary, so each member is read and hashed on its own (`collection_file_builder`), and
the engine lays them out in libtorrent's order with its pad files. Every range is pinned to
the ETag the listing showed (If-Match): a member changed mid-build fails with ObjectChanged.
What the previous build's record still holds is not read again: unchanged members (v2,
hybrid), the v1 pieces before the first file that differs (`plan_v1_resume`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from s3torrent.collections.listing import CollectionRef, Member
from s3torrent.collections.reading import ConcatenatedSource
from s3torrent.collections.records import HashRecord, MemberHashes, stream_record
from s3torrent.model import ObjectInfo, TransferCounters
from s3torrent.s3.objects import S3Objects, is_retryable
from s3torrent.s3.reader import PartSink, RangeBody, RangeSource, read_parts
from s3torrent.torrent import (
    CollectionFile,
    CollectionTorrent,
    MetaVersion,
    PieceHashBuilder,
    PieceHashes,
    TorrentOptions,
    V1Resume,
    build_collection_torrent,
    collection_file_builder,
    hash_collection_file,
    plan_v1_resume,
)

HashProgress = Callable[[int, int], None]


def collection_files(members: Sequence[Member]) -> list[CollectionFile]:
    """The engine's view of the members, in listing order (the ETag as the change tag)."""
    return [CollectionFile(member.path, member.size, member.etag) for member in members]


def member_info(ref: CollectionRef, member: Member) -> ObjectInfo:
    """What the listing showed of one member: the ETag every range is pinned to."""
    return ObjectInfo(
        ref=ref.member_ref(member.key),
        size=member.size,
        etag=member.etag,
        version_id=None,
        last_modified=member.last_modified,
    )


def hash_collection(
    objects: S3Objects,
    ref: CollectionRef,
    members: Sequence[Member],
    options: TorrentOptions,
    piece_length: int,
    counters: TransferCounters,
    on_progress: HashProgress | None = None,
    previous: HashRecord | None = None,
) -> tuple[CollectionTorrent, HashRecord]:
    """Read what `previous` does not hold and build the collection's torrent (`piece_length`
    already chosen); also the record of this build, for the next one."""
    files = collection_files(members)
    infos = [member_info(ref, member) for member in members]
    version = MetaVersion(options.meta_version)
    if previous is not None and not previous.matches(piece_length, version):
        previous = None
    total = sum(info.size for info in infos)

    def read(
        source: RangeSource, size: int, sink_for: Callable[[int, int], PartSink], done: int
    ) -> None:
        progress = None
        if on_progress is not None:
            report = on_progress

            def progress(bytes_done: int, _size: int) -> None:
                report(done + bytes_done, total)

        read_parts(
            source,
            size,
            sink_for,
            objects.reader,
            counters,
            align=piece_length,
            is_retryable=is_retryable,
            on_progress=progress,
        )

    if version is MetaVersion.V1:
        plan = plan_v1_resume(_stream_files(previous), _stream_files_of(members), piece_length)
        stored = previous.v1_pieces if previous is not None else b""
        rest = b""
        if plan.read_from < plan.length:
            builder = PieceHashBuilder(plan.length - plan.read_from, piece_length, MetaVersion.V1)
            stream = ConcatenatedSource(infos, objects.range_source)
            read(
                OffsetSource(stream, plan.read_from),
                plan.length - plan.read_from,
                builder.part,
                plan.read_from,
            )
            rest = builder.finish().v1_pieces or b""
        v1_pieces = plan.combine(stored, rest)
        torrent = build_collection_torrent(
            ref.name, files, options, piece_length=piece_length, v1_pieces=v1_pieces
        )
        return torrent, stream_record(members, piece_length, v1_pieces)
    known = previous.by_key() if previous is not None else {}
    found: dict[int, PieceHashes] = {}
    small: list[int] = []  # one GET each: read several at once (a GET's latency dominates)
    large: list[int] = []  # several GETs each: one after another, each with the full window
    for index, member in enumerate(members):
        reused = previous.reusable(member, known) if previous is not None else None
        if reused is not None:
            found[index] = reused
        elif not member.size:
            found[index] = hash_collection_file(b"", piece_length, version)
        else:
            (small if member.size <= objects.reader.part_size else large).append(index)
    done = 0

    def hash_member(index: int, member_counters: TransferCounters) -> PieceHashes:
        info = infos[index]
        builder = collection_file_builder(info.size, piece_length, version)
        read_parts(
            objects.range_source(info),
            info.size,
            builder.part,
            objects.reader,
            member_counters,
            align=piece_length,
            is_retryable=is_retryable,
        )
        return builder.finish()

    if small:
        with ThreadPoolExecutor(
            min(objects.reader.window, len(small)), thread_name_prefix="s3torrent-member"
        ) as pool:
            each = {index: TransferCounters() for index in small}
            futures = {pool.submit(hash_member, index, each[index]): index for index in small}
            try:
                for future in as_completed(futures):
                    index = futures[future]
                    found[index] = future.result()
                    counters.add(each[index])
                    done += infos[index].size
                    if on_progress is not None:
                        on_progress(done, total)  # may stop the build (the deadline)
            except BaseException:
                pool.shutdown(cancel_futures=True)  # the first failure: no new member starts
                raise
    for index in large:
        info = infos[index]
        file_builder = collection_file_builder(info.size, piece_length, version)
        read(objects.range_source(info), info.size, file_builder.part, done)
        found[index] = file_builder.finish()
        done += info.size
    file_hashes = [found[index] for index in range(len(members))]
    torrent = build_collection_torrent(
        ref.name, files, options, piece_length=piece_length, file_hashes=file_hashes
    )
    record = HashRecord(
        piece_length,
        version,
        members=tuple(
            MemberHashes(member.key, member.etag, member.size, hashes)
            for member, hashes in zip(members, file_hashes, strict=True)
        ),
    )
    return torrent, record


@dataclass(frozen=True)
class Reuse:
    """What a build of these members can take from the previous record instead of reading."""

    held: tuple[int, ...] = ()  # v2, hybrid: members whose stored hashes still hold
    stream_offset: int = 0  # v1: the stream's bytes before this are in the stored pieces
    to_read: int = 0  # bytes left to read


def plan_reuse(
    members: Sequence[Member],
    piece_length: int,
    options: TorrentOptions,
    previous: HashRecord | None,
) -> Reuse:
    """What `hash_collection` would reuse and read for these members with this record."""
    version = MetaVersion(options.meta_version)
    if previous is not None and not previous.matches(piece_length, version):
        previous = None
    if version is MetaVersion.V1:
        plan = plan_v1_resume(_stream_files(previous), _stream_files_of(members), piece_length)
        return Reuse(stream_offset=plan.read_from, to_read=plan.length - plan.read_from)
    if previous is None:
        return Reuse(to_read=sum(member.size for member in members))
    known = previous.by_key()
    held = tuple(
        index
        for index, member in enumerate(members)
        if member.size and previous.reusable(member, known) is not None
    )
    kept = set(held)
    to_read = sum(member.size for index, member in enumerate(members) if index not in kept)
    return Reuse(held=held, to_read=to_read)


def resume_v1(
    previous: HashRecord | None, members: Sequence[Member], piece_length: int
) -> V1Resume:
    """`plan_v1_resume` of these members against a record (v1 collections)."""
    return plan_v1_resume(_stream_files(previous), _stream_files_of(members), piece_length)


def _stream_files(record: HashRecord | None) -> list[CollectionFile]:
    if record is None:
        return []
    return [CollectionFile((file.key,), file.size, file.etag) for file in record.stream]


def _stream_files_of(members: Sequence[Member]) -> list[CollectionFile]:
    return [CollectionFile((member.key,), member.size, member.etag) for member in members]


class OffsetSource:
    """The bytes of `source` from `offset` on, as a source of their own (v1 resume)."""

    def __init__(self, source: RangeSource, offset: int) -> None:
        self._source = source
        self._offset = offset

    def open_range(self, start: int, end: int) -> RangeBody:
        return self._source.open_range(start + self._offset, end + self._offset)
