"""Piece hashing: streaming in any chunk size, serial and parallel alike, BEP 3 / BEP 52."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3torrent.errors import InvalidPieceLength, InvalidTorrent, S3TorrentError
from s3torrent.hashing import (
    BLOCK_SIZE,
    MetaVersion,
    PieceHasher,
    PieceHashes,
    default_workers,
    hash_bytes,
    validate_piece_length,
)

KIB = 1024
DATA = random.Random(3).randbytes(2 * 1024 * KIB + 12_345)


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def random_chunks(data: bytes, seed: int, biggest: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        size = rng.choice([0, 1, rng.randrange(1, 100), rng.randrange(1, biggest)])
        yield data[pos : pos + size]
        pos += size


def feed(
    data_chunks: Iterator[bytes] | list[bytes],
    piece_length: int,
    version: MetaVersion,
    workers: int = 1,
    batch_bytes: int | None = None,
) -> PieceHashes:
    kwargs = {} if batch_bytes is None else {"batch_bytes": batch_bytes}
    with PieceHasher(piece_length, version, workers=workers, **kwargs) as hasher:
        for chunk in data_chunks:
            hasher.update(chunk)
        return hasher.finish()


def reference_v2_root(data: bytes, width: int | None = None) -> bytes:
    """BEP 52 straight from the text: 16 KiB block leaves, zero leaves up to `width` (2**n)."""
    leaves = [
        hashlib.sha256(data[i : i + BLOCK_SIZE]).digest() for i in range(0, len(data), BLOCK_SIZE)
    ]
    if width is None:
        width = 1
        while width < len(leaves):
            width *= 2
    layer = leaves + [bytes(32)] * (width - len(leaves))
    while len(layer) > 1:
        layer = [hashlib.sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
    return layer[0]


@pytest.mark.parametrize(
    "size", [1, 16 * KIB - 1, 16 * KIB, 16 * KIB + 1, 100_000, 2 * 1024 * KIB + 12_345]
)
@pytest.mark.parametrize("piece_length", [16 * KIB, 64 * KIB, 1024 * KIB])
def test_v1_pieces_are_sha1_of_each_piece(size: int, piece_length: int) -> None:
    data = DATA[:size]
    hashes = hash_bytes(data, piece_length, MetaVersion.V1)
    expected = b"".join(
        hashlib.sha1(data[i : i + piece_length]).digest() for i in range(0, size, piece_length)
    )
    assert hashes.v1_pieces == expected
    assert hashes.v2_pieces_root is None
    assert hashes.v2_piece_layer is None
    assert hashes.length == size
    assert hashes.num_pieces == len(expected) // 20


@pytest.mark.parametrize("size", [1, 16 * KIB, 3 * 16 * KIB + 5, 100_000, 2 * 1024 * KIB + 12_345])
@pytest.mark.parametrize("piece_length", [16 * KIB, 64 * KIB, 1024 * KIB])
def test_v2_root_is_the_bep52_merkle_root(size: int, piece_length: int) -> None:
    data = DATA[:size]
    hashes = hash_bytes(data, piece_length, MetaVersion.V2)
    assert hashes.v1_pieces is None
    assert hashes.v2_pieces_root == reference_v2_root(data)
    if size <= piece_length:
        # BEP 52: no piece layer for a file of one piece.
        assert hashes.v2_piece_layer is None
    else:
        # Each piece-layer hash is the root of its piece's blocks, the last piece padded
        # with zero leaves up to a full piece.
        pieces = [data[i : i + piece_length] for i in range(0, size, piece_length)]
        leaves_per_piece = piece_length // BLOCK_SIZE
        assert hashes.v2_piece_layer == b"".join(
            reference_v2_root(piece, leaves_per_piece) for piece in pieces
        )


def test_hybrid_is_v1_and_v2_together() -> None:
    hybrid = hash_bytes(DATA, 64 * KIB, MetaVersion.HYBRID)
    v1 = hash_bytes(DATA, 64 * KIB, MetaVersion.V1)
    v2 = hash_bytes(DATA, 64 * KIB, MetaVersion.V2)
    assert hybrid.v1_pieces == v1.v1_pieces
    assert (hybrid.v2_pieces_root, hybrid.v2_piece_layer) == (v2.v2_pieces_root, v2.v2_piece_layer)
    assert hybrid.meta_version is MetaVersion.HYBRID


@pytest.mark.parametrize("version", list(MetaVersion))
@pytest.mark.parametrize(
    "chunk_size", [1, 7, 16 * KIB - 1, 65_537, 1024 * KIB + 1, 10 * 1024 * KIB]
)
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_any_chunk_size_and_worker_count_give_the_same_hashes(
    version: MetaVersion, chunk_size: int, workers: int
) -> None:
    # Byte-sized chunks are slow in Python: keep that case to a few pieces.
    data = DATA[:100_003] if chunk_size < 100 else DATA
    expected = hash_bytes(data, 32 * KIB, version)
    # Small batches so that the parallel path really runs several tasks at once.
    got = feed(chunks(data, chunk_size), 32 * KIB, version, workers, batch_bytes=64 * KIB)
    assert got == expected


@pytest.mark.parametrize("version", list(MetaVersion))
@pytest.mark.parametrize("seed", range(4))
def test_random_chunks_parallel_equals_serial(version: MetaVersion, seed: int) -> None:
    expected = hash_bytes(DATA, 16 * KIB, version)
    got = feed(random_chunks(DATA, seed, 300 * KIB), 16 * KIB, version, 3, batch_bytes=48 * KIB)
    assert got == expected


@settings(
    max_examples=60,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the tree
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    size=st.integers(1, 300_000),
    cuts=st.lists(st.integers(0, 300_000), max_size=12),
    version=st.sampled_from(list(MetaVersion)),
    piece_length=st.sampled_from([16 * KIB, 32 * KIB, 128 * KIB]),
    workers=st.integers(1, 4),
    batch_pieces=st.integers(1, 5),
    kind=st.sampled_from(["bytes", "bytearray", "memoryview"]),
)
def test_property_chunking_and_workers_never_change_hashes(
    size: int,
    cuts: list[int],
    version: MetaVersion,
    piece_length: int,
    workers: int,
    batch_pieces: int,
    kind: str,
) -> None:
    data = DATA[:size]
    bounds = sorted({0, size, *(c for c in cuts if c < size)})
    wrap = {"bytes": bytes, "bytearray": bytearray, "memoryview": memoryview}[kind]
    parts = [wrap(data[a:b]) for a, b in itertools.pairwise(bounds)]
    got = feed(parts, piece_length, version, workers, batch_bytes=batch_pieces * piece_length)
    assert got == hash_bytes(data, piece_length, version)


def test_parallel_copies_mutable_chunks_before_returning() -> None:
    # The caller may reuse its buffer as soon as update() returns.
    buffer = bytearray(256 * KIB)
    with PieceHasher(16 * KIB, MetaVersion.HYBRID, workers=4, batch_bytes=16 * KIB) as hasher:
        for start in range(0, len(DATA), len(buffer)):
            part = DATA[start : start + len(buffer)]
            view = memoryview(buffer)[: len(part)]
            view[:] = part
            hasher.update(view)
            view[:] = bytes(len(part))  # scribble over it while tasks may still run
        got = hasher.finish()
    assert got == hash_bytes(DATA, 16 * KIB, MetaVersion.HYBRID)


def test_work_in_flight_is_bounded_by_workers_not_size() -> None:
    workers = 2
    with PieceHasher(16 * KIB, MetaVersion.HYBRID, workers=workers, batch_bytes=32 * KIB) as hasher:
        most = 0
        for chunk in chunks(DATA, 200 * KIB):
            hasher.update(chunk)
            most = max(most, len(hasher._in_flight))
            assert len(hasher._pending) < 32 * KIB
        hasher.finish()
    assert 0 < most <= 2 * workers


def test_non_byte_memoryviews_are_hashed_as_their_bytes() -> None:
    import array

    words = array.array("I", range(20_000))
    assert hash_bytes(words.tobytes(), 16 * KIB, MetaVersion.HYBRID) == feed(
        [memoryview(words)], 16 * KIB, MetaVersion.HYBRID
    )


def test_empty_chunks_are_fine_but_empty_content_is_an_error() -> None:
    with PieceHasher(16 * KIB, MetaVersion.V1) as hasher:
        hasher.update(b"")
        hasher.update(bytearray())
        assert hasher.bytes_hashed == 0
        with pytest.raises(InvalidTorrent, match="cannot make a torrent of 0 bytes"):
            hasher.finish()
    with pytest.raises(S3TorrentError):
        hash_bytes(b"", 16 * KIB, MetaVersion.V2, workers=2)


def test_bytes_hashed_counts_what_was_fed() -> None:
    with PieceHasher(16 * KIB, MetaVersion.V2, workers=2) as hasher:
        hasher.update(b"x" * 5)
        hasher.update(memoryview(b"y" * 70_000))
        assert hasher.bytes_hashed == 70_005
        assert hasher.finish().length == 70_005


def test_hasher_cannot_be_reused_after_finish() -> None:
    hasher = PieceHasher(16 * KIB, MetaVersion.V1)
    hasher.update(b"abc")
    hasher.finish()
    with pytest.raises(ValueError, match="after finish"):
        hasher.update(b"more")
    with pytest.raises(ValueError, match="finish\\(\\) called twice"):
        hasher.finish()


@pytest.mark.parametrize(
    "bad", [0, 1, 16 * KIB - 1, 16 * KIB + 1, 8 * KIB, 3 * 16 * KIB, -16 * KIB]
)
def test_piece_length_must_be_a_power_of_two_of_16_kib_or_more(bad: int) -> None:
    with pytest.raises(
        InvalidPieceLength,
        match=f"piece length must be a power of two of at least 16384 bytes: {bad}$",
    ):
        validate_piece_length(bad)
    with pytest.raises(InvalidPieceLength, match=str(bad)):
        PieceHasher(bad, MetaVersion.V1)


@pytest.mark.parametrize("good", [16 * KIB, 32 * KIB, 1024 * KIB, 16 * 1024 * KIB, 2**30])
def test_valid_piece_lengths_pass(good: int) -> None:
    assert validate_piece_length(good) == good


@pytest.mark.parametrize("bad", [True, 16384.0, "16384"])
def test_piece_length_must_be_an_int(bad: object) -> None:
    with pytest.raises(InvalidPieceLength):
        validate_piece_length(bad)  # type: ignore[arg-type]


def test_workers_must_be_positive_and_default_to_the_cpu_count() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1: 0"):
        PieceHasher(16 * KIB, MetaVersion.V1, workers=0)
    assert default_workers() >= 1


def test_meta_version_values() -> None:
    assert [v.value for v in MetaVersion] == ["1", "2", "hybrid"]
    assert MetaVersion("hybrid").has_v1 and MetaVersion("hybrid").has_v2
    assert not MetaVersion.V1.has_v2 and not MetaVersion.V2.has_v1
