"""Piece hashes of one file: BEP 3 (v1, SHA-1 per piece) and BEP 52 (v2, SHA-256 merkle).

A v1 piece hash and the 16 KiB block hashes of a v2 piece depend on that piece's bytes
only, so the object is hashed as independent *parts* (runs of whole pieces): each part is
fed in order by whoever reads it, on any thread, and writes its piece hashes into slots
indexed by piece number. Only the merkle layers above the pieces wait for the end. Nothing
here is ever handed more than one chunk at a time, so memory does not grow with the file.
hashlib releases the GIL on buffers over 2 KiB: parts fed from several threads hash on
several cores.
"""

from __future__ import annotations

import enum
import hashlib
import threading
from dataclasses import dataclass
from typing import Any

from s3torrent.torrent.errors import InvalidPieceLength, InvalidTorrent

BLOCK_SIZE = 16 * 1024
"""BEP 52: v2 leaves are SHA-256 hashes of 16 KiB blocks."""

MIN_PIECE_LENGTH = 16 * 1024
"""BEP 52 requires pieces of at least one block; v1 clients accept the same floor."""

_HASH_SIZE = 32


class MetaVersion(enum.StrEnum):
    """Which metainfo to build: BEP 3 (v1), BEP 52 (v2), or both in one info dict."""

    V1 = "1"
    V2 = "2"
    HYBRID = "hybrid"

    @property
    def has_v1(self) -> bool:
        """True when the torrent carries v1 (SHA-1) pieces."""
        return self is not MetaVersion.V2

    @property
    def has_v2(self) -> bool:
        """True when the torrent carries a v2 (SHA-256 merkle) file tree."""
        return self is not MetaVersion.V1


@dataclass(frozen=True)
class PieceHashes:
    """Everything the metainfo needs from the content of one file."""

    length: int
    piece_length: int
    meta_version: MetaVersion
    v1_pieces: bytes | None
    v2_pieces_root: bytes | None
    v2_piece_layer: bytes | None
    v1_padded_last_piece: bytes | None = None
    """With `pad_last_piece`: SHA-1 of a short last piece zero-filled to a whole piece."""

    @property
    def num_pieces(self) -> int:
        """Number of pieces: ceil(length / piece_length)."""
        return -(-self.length // self.piece_length)


@dataclass(frozen=True)
class PartHashes:
    """The hashes of one run of whole pieces of a file: what a fan-out part hands over.

    `PieceHashBuilder.part_hashes` takes them out of the builder that hashed the run;
    `PieceHashBuilder.add_part_hashes` puts them into another one (the assembler's), as if
    that builder had hashed the run itself.
    """

    first_piece: int
    count: int
    v1: bytes  # 20 bytes per piece (v1 and hybrid), else empty
    v2: bytes  # 32 bytes per piece: the piece layer's nodes (v2 and hybrid), else empty
    tail_root: bytes | None = None  # v2: the last piece's own root, when the run holds it
    v1_padded_last: bytes | None = None  # `pad_last_piece`: when the run holds the last piece


def validate_piece_length(piece_length: int) -> int:
    """Return `piece_length` if it is a power of two of at least 16 KiB (BEP 3, BEP 52)."""
    if (
        isinstance(piece_length, bool)
        or not isinstance(piece_length, int)
        or piece_length < MIN_PIECE_LENGTH
        or piece_length & (piece_length - 1)
    ):
        raise InvalidPieceLength(
            f"piece length must be a power of two of at least {MIN_PIECE_LENGTH} bytes:"
            f" {piece_length}"
        )
    return piece_length


def _pad_hashes() -> tuple[bytes, ...]:
    # BEP 52: leaves past the end of the file are zero; a pad node at level k is the root
    # of a subtree of 2**k zero leaves.
    pads = [bytes(_HASH_SIZE)]
    for _ in range(63):
        pads.append(hashlib.sha256(pads[-1] + pads[-1]).digest())
    return tuple(pads)


_PAD = _pad_hashes()

_ZEROS = memoryview(bytes(1024 * 1024))


def _update_with_zeros(sha1: Any, count: int) -> None:
    while count > 0:
        take = min(count, len(_ZEROS))
        sha1.update(_ZEROS[:take])
        count -= take


def _next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def merkle_root(nodes: list[bytes], width: int, level: int = 0) -> bytes:
    """Root of a tree whose layer `level` holds `nodes` padded to `width` (a power of two)."""
    layer = list(nodes)
    sha256 = hashlib.sha256
    while width > 1:
        if len(layer) % 2:
            layer.append(_PAD[level])
        layer = [sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
        width //= 2
        level += 1
    return layer[0]


def _bytes_view(chunk: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(chunk)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


class PieceHashBuilder:
    """The piece hashes of one file of `length` bytes, filled in part by part.

    `part(start, stop)` hands out a `PartHasher` for the bytes [start, stop), where `start`
    is a piece boundary and `stop` one too (or the end of the file). Parts may be fed on
    different threads, in any order; each writes only its own pieces' slots. `finish()`
    checks every piece was hashed and assembles the merkle layers above the pieces.

    `pad_last_piece` (v1 and hybrid) also gives the SHA-1 of a short last piece followed by
    zeros up to a whole piece: that file's last piece in a multi-file torrent whose files
    are each padded to a piece boundary (BEP 47), next to the usual, unpadded one.
    """

    def __init__(
        self,
        length: int,
        piece_length: int,
        meta_version: MetaVersion,
        *,
        pad_last_piece: bool = False,
    ) -> None:
        self.piece_length = validate_piece_length(piece_length)
        self.meta_version = MetaVersion(meta_version)
        if length < 1:
            raise InvalidTorrent("cannot make a torrent of 0 bytes: BitTorrent has no empty file")
        self.length = length
        self.num_pieces = -(-length // piece_length)
        self.v1 = self.meta_version.has_v1
        self.v2 = self.meta_version.has_v2
        # The levels of the v2 tree: leaves are level 0, a full piece's root is piece_level.
        self.piece_level = (piece_length // BLOCK_SIZE).bit_length() - 1
        self._v1_slots = bytearray(20 * self.num_pieces if self.v1 else 0)
        self._v2_slots = bytearray(_HASH_SIZE * self.num_pieces if self.v2 else 0)
        self._tail_root: bytes | None = None
        self._tail_pad = (
            -length % piece_length if pad_last_piece and self.meta_version.has_v1 else 0
        )
        self._v1_padded_last: bytes | None = None
        # Slice assignment into distinct slots needs no lock; the flags are read together.
        self._lock = threading.Lock()
        self._hashed = bytearray(self.num_pieces)  # 1 once a piece's hashes are in

    def part(self, start: int, stop: int) -> PartHasher:
        """A hasher for bytes [start, stop): whole pieces, the file's last one maybe short."""
        if start % self.piece_length or not 0 <= start < stop <= self.length:
            raise ValueError(f"not a run of whole pieces of this file: [{start}, {stop})")
        if stop != self.length and stop % self.piece_length:
            raise ValueError(f"a part must end on a piece boundary: {stop}")
        return PartHasher(self, start, stop)

    def part_hashes(self, start: int, stop: int) -> PartHashes:
        """The hashes of the part [start, stop) (as for `part`), once it has been fed."""
        self.part(start, stop)  # the same bounds
        first = start // self.piece_length
        end = -(-stop // self.piece_length)
        with self._lock:
            missing = end - first - self._hashed[first:end].count(1)
        if missing:
            raise ValueError(f"{missing} pieces of [{start}, {stop}) not hashed")
        last = end == self.num_pieces
        return PartHashes(
            first_piece=first,
            count=end - first,
            v1=bytes(self._v1_slots[first * 20 : end * 20]),
            v2=bytes(self._v2_slots[first * _HASH_SIZE : end * _HASH_SIZE]),
            tail_root=self._tail_root if last and self.v2 else None,
            v1_padded_last=self._v1_padded_last if last else None,
        )

    def add_part_hashes(self, hashes: PartHashes) -> None:
        """Take a part's hashes from another builder of the same file, piece length, meta
        version and padding (InvalidTorrent when they cannot be from one)."""
        first, end = hashes.first_piece, hashes.first_piece + hashes.count
        last = end == self.num_pieces
        if (
            not 0 <= first < end <= self.num_pieces
            or len(hashes.v1) != (20 * hashes.count if self.v1 else 0)
            or len(hashes.v2) != (_HASH_SIZE * hashes.count if self.v2 else 0)
            or (last and self.v2 and hashes.tail_root is None)
            or (last and self._tail_pad and hashes.v1_padded_last is None)
        ):
            raise InvalidTorrent(
                f"the hashes of pieces {first}..{end - 1} do not fit a file of"
                f" {self.num_pieces} pieces of {self.piece_length} bytes ({self.meta_version})"
            )
        self._v1_slots[first * 20 : end * 20] = hashes.v1
        self._v2_slots[first * _HASH_SIZE : end * _HASH_SIZE] = hashes.v2
        if last:
            self._tail_root = hashes.tail_root if self.v2 else None
            self._v1_padded_last = hashes.v1_padded_last if self._tail_pad else None
        with self._lock:
            self._hashed[first:end] = b"\x01" * hashes.count

    def finish(self) -> PieceHashes:
        """The piece hashes, once every part has been fed all its bytes."""
        with self._lock:
            done = self.num_pieces - self._hashed.count(0)
        if done != self.num_pieces:
            raise ValueError(f"{self.num_pieces - done} of {self.num_pieces} pieces not hashed")
        return PieceHashes(
            length=self.length,
            piece_length=self.piece_length,
            meta_version=self.meta_version,
            v1_pieces=bytes(self._v1_slots) if self.v1 else None,
            v2_pieces_root=self._v2_root() if self.v2 else None,
            v2_piece_layer=(bytes(self._v2_slots) if self.v2 and self.num_pieces > 1 else None),
            v1_padded_last_piece=self._v1_padded_last,
        )

    def _v2_root(self) -> bytes:
        if self.num_pieces == 1:
            # A file of one piece: its root is over its own blocks, padded to a power of
            # two of blocks, not to a whole piece (what libtorrent writes).
            assert self._tail_root is not None
            return self._tail_root
        slots = self._v2_slots
        nodes = [bytes(slots[i : i + _HASH_SIZE]) for i in range(0, len(slots), _HASH_SIZE)]
        return merkle_root(nodes, _next_pow2(self.num_pieces), self.piece_level)

    def _v1_digest(self, index: int, sha1: Any) -> bytes:
        digest: bytes = sha1.digest()
        if self._tail_pad and index == self.num_pieces - 1:
            _update_with_zeros(sha1, self._tail_pad)
            self._v1_padded_last = sha1.digest()
        return digest

    def _piece_done(self, index: int, v1_digest: bytes | None, leaves: list[bytes]) -> None:
        if v1_digest is not None:
            self._v1_slots[index * 20 : index * 20 + 20] = v1_digest
        if self.v2:
            width = _next_pow2(len(leaves))
            root = merkle_root(leaves, width)
            if index == self.num_pieces - 1:
                self._tail_root = root
            # A short last piece still stands for a full piece in the piece layer: its
            # subtree is padded with zero leaves up to piece_length / 16 KiB (BEP 52).
            for level in range(width.bit_length() - 1, self.piece_level):
                root = hashlib.sha256(root + _PAD[level]).digest()
            self._v2_slots[index * _HASH_SIZE : (index + 1) * _HASH_SIZE] = root
        with self._lock:
            self._hashed[index] = 1


class PartHasher:
    """Hashes one part's bytes, fed in order by `write` in chunks of any size.

    Whole pieces inside a chunk are hashed straight from the caller's buffer (no copy);
    a piece split across chunks keeps a running SHA-1 and its finished 16 KiB leaves, and
    only a 16 KiB block split across chunks is copied. Every byte is hashed before `write`
    returns, so the caller may reuse its buffer at once.
    """

    __slots__ = ("_block", "_builder", "_in_piece", "_index", "_leaves", "_pos", "_sha1", "_stop")

    def __init__(self, builder: PieceHashBuilder, start: int, stop: int) -> None:
        self._builder = builder
        self._pos = start  # offset in the file of the next byte
        self._stop = stop
        self._index = start // builder.piece_length  # the piece being hashed
        self._in_piece = 0  # bytes of that piece seen so far
        self._sha1: Any = None  # running SHA-1 of a piece split across chunks
        self._leaves: list[bytes] = []
        self._block = bytearray()  # a v2 block split across chunks

    @property
    def position(self) -> int:
        """Offset in the file of the next byte this part expects."""
        return self._pos

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Hash the part's next bytes (ValueError past the part's end)."""
        view = _bytes_view(chunk)
        size = len(view)
        if self._pos + size > self._stop:
            raise ValueError(
                f"{self._pos + size - self._stop} bytes past the end of the part at {self._stop}"
            )
        builder = self._builder
        piece_length = builder.piece_length
        pos = 0
        while pos < size:
            piece_size = min(piece_length, builder.length - self._index * piece_length)
            if not self._in_piece and size - pos >= piece_size:
                self._whole_piece(view[pos : pos + piece_size])
                pos += piece_size
                continue
            take = min(size - pos, piece_size - self._in_piece)
            self._piece_bytes(view[pos : pos + take])
            pos += take
            self._in_piece += take
            if self._in_piece == piece_size:
                self._end_split_piece()
        self._pos += size

    def _whole_piece(self, piece: memoryview) -> None:
        builder = self._builder
        v1_digest = (
            builder._v1_digest(self._index, hashlib.sha1(piece, usedforsecurity=False))
            if builder.v1
            else None
        )
        leaves: list[bytes] = []
        if builder.v2:
            sha256 = hashlib.sha256
            leaves = [
                sha256(piece[offset : offset + BLOCK_SIZE]).digest()
                for offset in range(0, len(piece), BLOCK_SIZE)
            ]
        builder._piece_done(self._index, v1_digest, leaves)
        self._index += 1

    def _piece_bytes(self, data: memoryview) -> None:
        builder = self._builder
        if builder.v1:
            if self._sha1 is None:
                self._sha1 = hashlib.sha1(usedforsecurity=False)
            self._sha1.update(data)
        if not builder.v2:
            return
        pos = 0
        if self._block:
            take = min(len(data), BLOCK_SIZE - len(self._block))
            self._block += data[:take]
            pos = take
            if len(self._block) == BLOCK_SIZE:
                self._leaves.append(hashlib.sha256(self._block).digest())
                self._block = bytearray()
        whole_end = pos + (len(data) - pos) // BLOCK_SIZE * BLOCK_SIZE
        sha256 = hashlib.sha256
        self._leaves.extend(
            sha256(data[offset : offset + BLOCK_SIZE]).digest()
            for offset in range(pos, whole_end, BLOCK_SIZE)
        )
        if whole_end < len(data):
            self._block += data[whole_end:]

    def _end_split_piece(self) -> None:
        if self._block:  # the file's last block, shorter than 16 KiB
            self._leaves.append(hashlib.sha256(self._block).digest())
            self._block = bytearray()
        v1_digest = (
            self._builder._v1_digest(self._index, self._sha1) if self._sha1 is not None else None
        )
        self._builder._piece_done(self._index, v1_digest, self._leaves)
        self._index += 1
        self._in_piece = 0
        self._sha1 = None
        self._leaves = []


def hash_bytes(
    data: bytes | bytearray | memoryview, piece_length: int, meta_version: MetaVersion
) -> PieceHashes:
    """Piece hashes of `data` in memory, as one part on this thread (the serial path)."""
    view = _bytes_view(data)
    builder = PieceHashBuilder(len(view), piece_length, meta_version)
    builder.part(0, len(view)).write(view)
    return builder.finish()
