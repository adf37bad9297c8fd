"""Piece hashes from a stream of bytes: BEP 3 (v1, SHA-1) and BEP 52 (v2, SHA-256 merkle).

The hasher is fed chunks of any size and never holds more than a bounded number of
batches, whatever the object's size. With `workers > 1` whole pieces are hashed on a
thread pool (hashlib releases the GIL on buffers over 2 KiB): a v1 piece and the 16 KiB
blocks of a v2 piece depend on nothing else, so only the merkle layers above the pieces
are assembled at the end.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

from s3torrent.errors import InvalidPieceLength, InvalidTorrent

BLOCK_SIZE = 16 * 1024
"""BEP 52: v2 leaves are SHA-256 hashes of 16 KiB blocks."""

MIN_PIECE_LENGTH = 16 * 1024
"""BEP 52 requires pieces of at least one block; v1 clients accept the same floor."""

BATCH_BYTES = 4 * 1024 * 1024
"""Bytes of whole pieces per hashing task: large enough that thread hand-offs cost little."""

_BORROW_MIN_BYTES = 1024 * 1024
"""Whole pieces of an immutable chunk are hashed in place (no copy) from this size on."""

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

    @property
    def num_pieces(self) -> int:
        """Number of pieces: ceil(length / piece_length)."""
        return -(-self.length // self.piece_length)


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


def default_workers() -> int:
    """Hashing threads to use by default: one per CPU."""
    return os.cpu_count() or 1


def _pad_hashes() -> tuple[bytes, ...]:
    # BEP 52: leaves past the end of the file are zero; a pad node at level k is the root
    # of a subtree of 2**k zero leaves.
    pads = [bytes(_HASH_SIZE)]
    for _ in range(63):
        pads.append(hashlib.sha256(pads[-1] + pads[-1]).digest())
    return tuple(pads)


_PAD = _pad_hashes()


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


@dataclass(frozen=True)
class _SpanHashes:
    v1: bytes
    v2: bytes
    tail_root: bytes | None  # merkle root of the span's last piece over its own blocks


def _hash_span(view: memoryview, piece_length: int, v1: bool, v2: bool) -> _SpanHashes:
    """Hash consecutive pieces; only the span's last piece may be short."""
    sha1 = hashlib.sha1
    sha256 = hashlib.sha256
    piece_level = (piece_length // BLOCK_SIZE).bit_length() - 1
    v1_out = bytearray()
    v2_out = bytearray()
    tail_root: bytes | None = None
    for start in range(0, len(view), piece_length):
        piece = view[start : start + piece_length]
        if v1:
            v1_out += sha1(piece, usedforsecurity=False).digest()
        if v2:
            leaves = [
                sha256(piece[offset : offset + BLOCK_SIZE]).digest()
                for offset in range(0, len(piece), BLOCK_SIZE)
            ]
            width = _next_pow2(len(leaves))
            root = tail_root = merkle_root(leaves, width)
            # A short last piece still stands for a full piece in the piece layer: its
            # subtree is padded with zero leaves up to piece_length / 16 KiB (BEP 52).
            for level in range(width.bit_length() - 1, piece_level):
                root = sha256(root + _PAD[level]).digest()
            v2_out += root
    return _SpanHashes(bytes(v1_out), bytes(v2_out), tail_root)


class PieceHasher:
    """Feed bytes in order with `update`, then `finish` for the piece hashes."""

    def __init__(
        self,
        piece_length: int,
        meta_version: MetaVersion,
        *,
        workers: int = 1,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self._piece_length = validate_piece_length(piece_length)
        self._meta_version = MetaVersion(meta_version)
        if workers < 1:
            raise ValueError(f"workers must be at least 1: {workers}")
        self._v1 = self._meta_version.has_v1
        self._v2 = self._meta_version.has_v2
        # A task is a whole number of pieces (at least one).
        self._batch_bytes = piece_length * max(1, batch_bytes // piece_length)
        self._borrow_min = max(piece_length, min(self._batch_bytes, _BORROW_MIN_BYTES))
        self._pending = bytearray()
        self._length = 0
        self._v1_pieces = bytearray()
        self._v2_layer = bytearray()
        self._tail_root: bytes | None = None
        self._finished = False
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: deque[Future[_SpanHashes]] = deque()
        # Memory stays bounded by workers x batch, not by the object's size.
        self._max_in_flight = 2 * workers
        if workers > 1:
            self._executor = ThreadPoolExecutor(workers, thread_name_prefix="s3torrent-hash")

    @property
    def bytes_hashed(self) -> int:
        """Bytes fed so far."""
        return self._length

    @property
    def piece_length(self) -> int:
        """The piece length being hashed with."""
        return self._piece_length

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        """Hash the next bytes; blocks while the thread pool has enough work queued."""
        if self._finished:
            raise ValueError("update() after finish()")
        view = memoryview(chunk)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        size = len(view)
        if not size:
            return
        self._length += size
        piece_length = self._piece_length
        # A task may run after update() returns: only immutable bytes can be lent to it.
        # The serial path hashes before returning, so it can borrow anything.
        can_borrow = self._executor is None or (view.readonly and isinstance(view.obj, bytes))
        pos = 0
        while pos < size:
            pending = len(self._pending)
            if pending % piece_length:
                # Complete the piece that straddles two chunks (the only bytes copied
                # when chunks are large).
                take = min(size - pos, piece_length - pending % piece_length)
            else:
                whole = (size - pos) // piece_length * piece_length
                if can_borrow and whole >= self._borrow_min:
                    if pending:
                        self._flush()
                    end = pos + whole
                    while pos < end:
                        step = min(self._batch_bytes, end - pos)
                        self._submit(view[pos : pos + step])
                        pos += step
                    continue
                take = min(size - pos, self._batch_bytes - pending)
            self._pending += view[pos : pos + take]
            pos += take
            if len(self._pending) >= self._batch_bytes:
                self._flush()

    def finish(self) -> PieceHashes:
        """Hash what is left and return the piece hashes (BEP 3 / BEP 52)."""
        if self._finished:
            raise ValueError("finish() called twice")
        try:
            if self._pending:
                self._flush()
            while self._in_flight:
                self._collect(self._in_flight.popleft().result())
        finally:
            self._finished = True
            self.close()
        if not self._length:
            raise InvalidTorrent("cannot make a torrent of 0 bytes: BitTorrent has no empty file")
        return PieceHashes(
            length=self._length,
            piece_length=self._piece_length,
            meta_version=self._meta_version,
            v1_pieces=bytes(self._v1_pieces) if self._v1 else None,
            v2_pieces_root=self._v2_root() if self._v2 else None,
            v2_piece_layer=(
                bytes(self._v2_layer) if self._v2 and self._length > self._piece_length else None
            ),
        )

    def close(self) -> None:
        """Stop the hashing threads (finish() does it; call it when abandoning a hasher)."""
        for future in self._in_flight:
            future.cancel()
        self._in_flight.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> PieceHasher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _v2_root(self) -> bytes:
        layer = self._v2_layer
        count = len(layer) // _HASH_SIZE
        if count == 1:
            # A file of one piece: its root is over its own blocks, padded to a power of
            # two of blocks, not to a whole piece (what libtorrent writes).
            assert self._tail_root is not None
            return self._tail_root
        piece_level = (self._piece_length // BLOCK_SIZE).bit_length() - 1
        nodes = [bytes(layer[i : i + _HASH_SIZE]) for i in range(0, len(layer), _HASH_SIZE)]
        return merkle_root(nodes, _next_pow2(count), piece_level)

    def _flush(self) -> None:
        buffer, self._pending = self._pending, bytearray()
        # The buffer is handed over whole; a fresh one takes the next bytes.
        self._submit(memoryview(buffer))

    def _submit(self, view: memoryview) -> None:
        if self._executor is None:
            self._collect(_hash_span(view, self._piece_length, self._v1, self._v2))
            return
        self._in_flight.append(
            self._executor.submit(_hash_span, view, self._piece_length, self._v1, self._v2)
        )
        while len(self._in_flight) > self._max_in_flight:
            self._collect(self._in_flight.popleft().result())

    def _collect(self, span: _SpanHashes) -> None:
        self._v1_pieces += span.v1
        self._v2_layer += span.v2
        self._tail_root = span.tail_root


def hash_bytes(
    data: bytes, piece_length: int, meta_version: MetaVersion, *, workers: int = 1
) -> PieceHashes:
    """Piece hashes of `data` in memory."""
    with PieceHasher(piece_length, meta_version, workers=workers) as hasher:
        hasher.update(data)
        return hasher.finish()
