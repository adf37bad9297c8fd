"""The store's own torrent (GetObjectTorrent), trusted only once it is checked against the object.

Stores that serve `?torrent` are not all right: some S3 emulators answer with the object's own
bytes, and radosgw 16.2 serves torrents whose piece hashes after the first are wrong
(docs/design.md). A native torrent reaches a user only when it decodes, describes this object
(its length; its name is the key or the key's last segment) and its piece hashes match the
object's bytes: all of them, or enough sampled pieces to make a wrong torrent vanishingly
unlikely to pass.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from s3torrent.errors import NativeTorrentUnavailable, ObjectChanged
from s3torrent.model import ObjectInfo, TransferCounters
from s3torrent.s3.objects import S3Objects
from s3torrent.torrent import InvalidTorrent, MetaVersion, PieceHashes, Torrent, read_torrent

# Native torrents: every piece is checked up to this size (the read is cheap next to a
# wrong torrent reaching users); above it, the first, the last and random pieces. A store
# that gets one piece wrong tends to get them all wrong (radosgw 16.2: all but the first).
NATIVE_VERIFY_ALL_BYTES = 64 * 1024 * 1024
NATIVE_SAMPLE_PIECES = 16

HashObject = Callable[[ObjectInfo, int, MetaVersion, TransferCounters], PieceHashes]
"""Hashes exactly the object `info` describes (TorrentService.hash_object)."""


class NativeTorrents:
    """Fetches and checks the store's torrent of an object."""

    def __init__(self, objects: S3Objects, hash_object: HashObject) -> None:
        self.objects = objects
        self._hash_object = hash_object

    def fetch(self, info: ObjectInfo, counters: TransferCounters) -> Torrent:
        """The store's own torrent, trusted only once it is checked against the object."""
        ref = info.ref
        data = self.objects.get_object_torrent(ref)
        counters.get_requests += 1
        try:
            torrent = read_torrent(data)
        except InvalidTorrent as error:
            raise NativeTorrentUnavailable(
                f"GetObjectTorrent {ref.uri}: the store's answer is not a valid torrent: {error}"
            ) from error
        problem = self._native_problem(torrent, info, counters)
        if problem is not None:
            raise NativeTorrentUnavailable(
                f"GetObjectTorrent {ref.uri}: the store's torrent does not describe the"
                f" object: {problem}"
            )
        return torrent

    def _native_problem(
        self, torrent: Torrent, info: ObjectInfo, counters: TransferCounters
    ) -> str | None:
        key = info.ref.key
        if torrent.length != info.size:
            return f"its length is {torrent.length}, the object has {info.size} bytes"
        if torrent.name not in (key, key.rsplit("/", 1)[-1]):
            return f"its name {torrent.name!r} is neither the key nor its last segment"
        if torrent.v1_pieces is None:
            return "it has no v1 piece hashes to check"
        if info.size <= NATIVE_VERIFY_ALL_BYTES or torrent.num_pieces <= NATIVE_SAMPLE_PIECES:
            return self._check_all_pieces(torrent, info, counters)
        return self._check_sampled_pieces(torrent, info, counters)

    def _check_all_pieces(
        self, torrent: Torrent, info: ObjectInfo, counters: TransferCounters
    ) -> str | None:
        pieces = self._hash_object(info, torrent.piece_length, MetaVersion.V1, counters).v1_pieces
        assert pieces is not None and torrent.v1_pieces is not None
        for index in range(torrent.num_pieces):
            span = slice(index * 20, index * 20 + 20)
            if pieces[span] != torrent.v1_pieces[span]:
                return f"piece {index} of {torrent.num_pieces} has the wrong hash"
        return None

    def _check_sampled_pieces(
        self, torrent: Torrent, info: ObjectInfo, counters: TransferCounters
    ) -> str | None:
        count = torrent.num_pieces
        middle = random.SystemRandom().sample(range(1, count - 1), NATIVE_SAMPLE_PIECES - 2)
        for index in [0, count - 1, *middle]:
            start = index * torrent.piece_length
            end = start + torrent.piece_size(index) - 1
            data = self.objects.read_range(info, start, end)
            counters.get_requests += 1
            counters.bytes_read += len(data)
            if len(data) != end - start + 1:
                raise ObjectChanged(f"{info.ref.uri}: short read of piece {index}")
            if hashlib.sha1(data, usedforsecurity=False).digest() != torrent.v1_piece_hash(index):
                return f"piece {index} of {count} has the wrong hash"
        return None
