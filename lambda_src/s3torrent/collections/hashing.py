"""Hashing a collection's members with the engine (`s3torrent.torrent`), fed by ranged GETs.

v1: the pieces run across files, so the members are read as one stream
(`ConcatenatedSource`) into one `PieceHashBuilder`. v2 and hybrid: every file starts on a
piece boundary, so each member is read and hashed on its own (`collection_file_builder`), and
the engine lays them out in libtorrent's order with its pad files. Every range is pinned to
the ETag the listing showed (If-Match): a member changed mid-build fails with ObjectChanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from s3torrent.collections.listing import CollectionRef, Member
from s3torrent.collections.reading import ConcatenatedSource
from s3torrent.model import ObjectInfo, TransferCounters
from s3torrent.s3.objects import S3Objects, is_retryable
from s3torrent.s3.reader import PartSink, RangeSource, read_parts
from s3torrent.torrent import (
    CollectionFile,
    CollectionTorrent,
    MetaVersion,
    PieceHashBuilder,
    PieceHashes,
    TorrentOptions,
    build_collection_torrent,
    collection_file_builder,
    hash_collection_file,
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
) -> CollectionTorrent:
    """Read every member and build the collection's torrent (`piece_length` already chosen)."""
    files = collection_files(members)
    infos = [member_info(ref, member) for member in members]
    version = MetaVersion(options.meta_version)
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
        builder = PieceHashBuilder(total, piece_length, MetaVersion.V1)
        read(ConcatenatedSource(infos, objects.range_source), total, builder.part, 0)
        return build_collection_torrent(
            ref.name,
            files,
            options,
            piece_length=piece_length,
            v1_pieces=builder.finish().v1_pieces,
        )
    file_hashes: list[PieceHashes] = []
    done = 0
    for info in infos:
        if not info.size:
            file_hashes.append(hash_collection_file(b"", piece_length, version))
            continue
        file_builder = collection_file_builder(info.size, piece_length, version)
        read(objects.range_source(info), info.size, file_builder.part, done)
        file_hashes.append(file_builder.finish())
        done += info.size
    return build_collection_torrent(
        ref.name, files, options, piece_length=piece_length, file_hashes=file_hashes
    )
