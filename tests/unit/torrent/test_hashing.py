"""Piece hashing: BEP 3 / BEP 52 from the text, and parts fed in any chunks, on any thread,
in any order, always giving exactly the serial `hash_bytes` result."""

from __future__ import annotations

import array
import hashlib
import itertools
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3torrent.torrent.errors import InvalidPieceLength, InvalidTorrent
from s3torrent.torrent.hashing import (
    BLOCK_SIZE,
    MetaVersion,
    PieceHashBuilder,
    PieceHashes,
    hash_bytes,
    merkle_root,
    validate_piece_length,
)

KIB = 1024
DATA = random.Random(3).randbytes(2 * 1024 * KIB + 12_345)


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def random_chunks(data: bytes, seed: int, biggest: int) -> Iterator[bytes]:
    """Chunks of random sizes: empty, one byte, a few bytes, up to `biggest`."""
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        size = rng.choice([0, 1, rng.randrange(1, 100), rng.randrange(1, biggest)])
        yield data[pos : pos + size]
        pos += size


def split_parts(size: int, piece_length: int, pieces_per_part: list[int]) -> list[tuple[int, int]]:
    """[start, stop) of parts of the given numbers of pieces (cycled), covering `size`."""
    parts = []
    start = 0
    for count in itertools.cycle(pieces_per_part):
        if start >= size:
            break
        stop = min(size, start + count * piece_length)
        parts.append((start, stop))
        start = stop
    return parts


def hash_in_parts(
    data: bytes,
    piece_length: int,
    version: MetaVersion,
    parts: list[tuple[int, int]],
    chunk_size: int,
    threads: int,
    seed: int,
) -> PieceHashes:
    """Feed each part on a pool of threads, parts taken in shuffled order."""
    builder = PieceHashBuilder(len(data), piece_length, version)
    order = list(parts)
    random.Random(seed).shuffle(order)

    def feed(part: tuple[int, int]) -> None:
        start, stop = part
        hasher = builder.part(start, stop)
        for chunk in chunks(data[start:stop], chunk_size):
            hasher.write(chunk)
        assert hasher.position == stop

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(feed, order))
    return builder.finish()


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


# --- BEP 3 / BEP 52 from the text --------------------------------------------------------


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
    assert hashes.piece_length == piece_length
    assert hashes.meta_version is MetaVersion.V1
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


def test_merkle_root_pads_with_zero_subtrees() -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    assert merkle_root(leaves, 8) == reference_v2_root_of_leaves(leaves, 8)
    # Starting one level up: the pads are roots of two zero leaves, not zero hashes.
    pad1 = hashlib.sha256(bytes(64)).digest()
    left = hashlib.sha256(leaves[0] + leaves[1]).digest()
    right = hashlib.sha256(leaves[2] + pad1).digest()
    assert merkle_root(leaves, 4, level=1) == hashlib.sha256(left + right).digest()


def reference_v2_root_of_leaves(leaves: list[bytes], width: int) -> bytes:
    layer = leaves + [bytes(32)] * (width - len(leaves))
    while len(layer) > 1:
        layer = [hashlib.sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
    return layer[0]


def test_hybrid_is_v1_and_v2_together() -> None:
    hybrid = hash_bytes(DATA, 64 * KIB, MetaVersion.HYBRID)
    v1 = hash_bytes(DATA, 64 * KIB, MetaVersion.V1)
    v2 = hash_bytes(DATA, 64 * KIB, MetaVersion.V2)
    assert hybrid.v1_pieces == v1.v1_pieces
    assert (hybrid.v2_pieces_root, hybrid.v2_piece_layer) == (v2.v2_pieces_root, v2.v2_piece_layer)
    assert hybrid.v1_pieces is not None and hybrid.v2_pieces_root is not None
    assert hybrid.meta_version is MetaVersion.HYBRID


# --- any chunking of a part --------------------------------------------------------------


@pytest.mark.parametrize("version", list(MetaVersion))
@pytest.mark.parametrize(
    "chunk_size",
    [
        1,  # every byte on its own
        7,
        BLOCK_SIZE - 1,  # a block straddles two chunks
        BLOCK_SIZE + 1,
        32 * KIB - 1,  # a piece straddles two chunks
        32 * KIB + 1,
        3 * 32 * KIB + 5,  # whole pieces and a bit in one chunk
        len(DATA),  # the whole file in one write
    ],
)
def test_any_chunk_size_gives_the_serial_hashes(version: MetaVersion, chunk_size: int) -> None:
    # Byte-sized chunks are slow in Python: keep those to a few pieces.
    data = DATA[:70_003] if chunk_size < 100 else DATA
    builder = PieceHashBuilder(len(data), 32 * KIB, version)
    hasher = builder.part(0, len(data))
    for chunk in chunks(data, chunk_size):
        hasher.write(chunk)
    assert builder.finish() == hash_bytes(data, 32 * KIB, version)


@pytest.mark.parametrize("version", list(MetaVersion))
@pytest.mark.parametrize("seed", range(4))
def test_random_chunks_give_the_serial_hashes(version: MetaVersion, seed: int) -> None:
    builder = PieceHashBuilder(len(DATA), 16 * KIB, version)
    hasher = builder.part(0, len(DATA))
    for chunk in random_chunks(DATA, seed, 100 * KIB):
        hasher.write(chunk)
    assert builder.finish() == hash_bytes(DATA, 16 * KIB, version)


def test_the_caller_may_reuse_its_buffer_as_soon_as_write_returns() -> None:
    # Chunks that split blocks and pieces: whatever the hasher keeps, it must have copied.
    buffer = bytearray(40 * KIB + 3)
    builder = PieceHashBuilder(len(DATA), 32 * KIB, MetaVersion.HYBRID)
    hasher = builder.part(0, len(DATA))
    for start in range(0, len(DATA), len(buffer)):
        piece = DATA[start : start + len(buffer)]
        view = memoryview(buffer)[: len(piece)]
        view[:] = piece
        hasher.write(view)
        view[:] = bytes(len(piece))  # scribble over it
    assert builder.finish() == hash_bytes(DATA, 32 * KIB, MetaVersion.HYBRID)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_bytearray_and_memoryview_chunks_hash_alike(kind: type) -> None:
    data = DATA[:300_001]
    builder = PieceHashBuilder(len(data), 64 * KIB, MetaVersion.HYBRID)
    hasher = builder.part(0, len(data))
    for chunk in chunks(data, 50_000):
        hasher.write(kind(chunk))
    assert builder.finish() == hash_bytes(data, 64 * KIB, MetaVersion.HYBRID)


def test_non_byte_memoryviews_are_hashed_as_their_bytes() -> None:
    words = array.array("I", range(20_000))
    expected = hash_bytes(words.tobytes(), 16 * KIB, MetaVersion.HYBRID)
    assert hash_bytes(memoryview(words), 16 * KIB, MetaVersion.HYBRID) == expected
    builder = PieceHashBuilder(len(words.tobytes()), 16 * KIB, MetaVersion.HYBRID)
    hasher = builder.part(0, builder.length)
    view = memoryview(words)
    hasher.write(view[:5_000])  # 20,000 bytes: a piece and a bit
    hasher.write(view[5_000:])
    assert builder.finish() == expected


def test_empty_writes_change_nothing() -> None:
    data = DATA[:50_000]
    builder = PieceHashBuilder(len(data), 16 * KIB, MetaVersion.HYBRID)
    hasher = builder.part(0, len(data))
    hasher.write(b"")
    assert hasher.position == 0
    hasher.write(data[:20_000])
    hasher.write(bytearray())
    hasher.write(memoryview(b""))
    hasher.write(data[20_000:])
    hasher.write(b"")  # at the end of the part too
    assert hasher.position == len(data)
    assert builder.finish() == hash_bytes(data, 16 * KIB, MetaVersion.HYBRID)


# --- parts on threads, in any order ------------------------------------------------------


@pytest.mark.parametrize("version", list(MetaVersion))
@pytest.mark.parametrize(
    "size",
    [
        1,
        BLOCK_SIZE - 1,
        BLOCK_SIZE + 1,
        32 * KIB - 1,
        32 * KIB + 1,
        5 * 32 * KIB,  # whole pieces only
        7 * 32 * KIB + 12_345,
        len(DATA),
    ],
)
def test_parts_on_threads_in_shuffled_order_give_the_serial_hashes(
    version: MetaVersion, size: int
) -> None:
    data = DATA[:size]
    parts = split_parts(size, 32 * KIB, [1, 3, 2])
    got = hash_in_parts(data, 32 * KIB, version, parts, 40 * KIB + 7, threads=4, seed=size)
    assert got == hash_bytes(data, 32 * KIB, version)


def test_parts_written_in_interleaved_chunks_from_several_threads() -> None:
    # Every part is fed at the same time, a chunk each in turn (a barrier per round).
    data = DATA[: 8 * 64 * KIB + 999]
    piece = 64 * KIB
    builder = PieceHashBuilder(len(data), piece, MetaVersion.HYBRID)
    parts = split_parts(len(data), piece, [2])
    rounds = max(-(-(stop - start) // 10_000) for start, stop in parts)
    barrier = threading.Barrier(len(parts))

    def feed(start: int, stop: int) -> None:
        hasher = builder.part(start, stop)
        pieces = list(chunks(data[start:stop], 10_000))
        for turn in range(rounds):
            if turn < len(pieces):
                hasher.write(pieces[turn])
            barrier.wait(5)

    threads = [threading.Thread(target=feed, args=part) for part in parts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert builder.finish() == hash_bytes(data, piece, MetaVersion.HYBRID)


@settings(
    max_examples=50,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the tree
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    size=st.integers(1, 400_000),
    piece_length=st.sampled_from([16 * KIB, 32 * KIB, 128 * KIB]),
    version=st.sampled_from(list(MetaVersion)),
    pieces_per_part=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    cuts=st.lists(st.integers(1, 400_000), max_size=8),
    threads=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_property_any_parts_any_chunks_any_order_give_the_serial_hashes(
    size: int,
    piece_length: int,
    version: MetaVersion,
    pieces_per_part: list[int],
    cuts: list[int],
    threads: int,
    seed: int,
) -> None:
    data = DATA[:size]
    parts = split_parts(size, piece_length, pieces_per_part)
    builder = PieceHashBuilder(size, piece_length, version)
    order = list(parts)
    random.Random(seed).shuffle(order)

    def feed(part: tuple[int, int]) -> None:
        start, stop = part
        # Each part cut at the same relative offsets (those that fall inside it).
        bounds = sorted({start, stop, *(start + c for c in cuts if start + c < stop)})
        hasher = builder.part(start, stop)
        for a, b in itertools.pairwise(bounds):
            hasher.write(memoryview(data)[a:b])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(feed, order))
    assert builder.finish() == hash_bytes(data, piece_length, version)


# --- misuse --------------------------------------------------------------------------------


def test_writing_past_the_end_of_a_part_raises_and_hashes_nothing() -> None:
    data = DATA[: 3 * 16 * KIB]
    builder = PieceHashBuilder(len(data), 16 * KIB, MetaVersion.HYBRID)
    first = builder.part(0, 16 * KIB)
    first.write(data[:10_000])
    with pytest.raises(ValueError, match="1 bytes past the end of the part at 16384"):
        first.write(data[10_000 : 16 * KIB + 1])
    assert first.position == 10_000  # the refused chunk was not taken in part
    first.write(data[10_000 : 16 * KIB])
    with pytest.raises(ValueError, match="past the end"):
        first.write(b"x")
    rest = builder.part(16 * KIB, len(data))
    rest.write(data[16 * KIB :])
    assert builder.finish() == hash_bytes(data, 16 * KIB, MetaVersion.HYBRID)


def test_writing_past_the_end_of_the_file_raises() -> None:
    builder = PieceHashBuilder(100, 16 * KIB, MetaVersion.V1)
    with pytest.raises(ValueError, match="past the end"):
        builder.part(0, 100).write(bytes(101))


@pytest.mark.parametrize("version", list(MetaVersion))
def test_finish_with_a_missing_part_raises(version: MetaVersion) -> None:
    data = DATA[: 4 * 16 * KIB + 5]  # 5 pieces
    builder = PieceHashBuilder(len(data), 16 * KIB, version)
    builder.part(0, 2 * 16 * KIB).write(data[: 2 * 16 * KIB])
    builder.part(4 * 16 * KIB, len(data)).write(data[4 * 16 * KIB :])
    with pytest.raises(ValueError, match="2 of 5 pieces not hashed"):
        builder.finish()


def test_finish_with_a_part_fed_short_raises() -> None:
    data = DATA[:100_000]
    builder = PieceHashBuilder(len(data), 16 * KIB, MetaVersion.V2)
    builder.part(0, len(data)).write(data[:-1])  # the last (short) piece lacks a byte
    with pytest.raises(ValueError, match="1 of 7 pieces not hashed"):
        builder.finish()


def test_finish_with_a_part_hashed_twice_and_another_missing_raises() -> None:
    data = DATA[: 2 * 16 * KIB]
    builder = PieceHashBuilder(len(data), 16 * KIB, MetaVersion.V1)
    builder.part(0, 16 * KIB).write(data[: 16 * KIB])
    builder.part(0, 16 * KIB).write(data[: 16 * KIB])  # the same part again
    with pytest.raises(ValueError, match="not hashed"):
        builder.finish()  # piece 1 was never hashed


@pytest.mark.parametrize(
    ("start", "stop", "match"),
    [
        (1, 16 * KIB, "not a run of whole pieces"),  # start off a piece boundary
        (16 * KIB - 1, 32 * KIB, "not a run of whole pieces"),
        (0, 16 * KIB + 1, "must end on a piece boundary"),  # stop off a boundary
        (16 * KIB, 32 * KIB - 1, "must end on a piece boundary"),
        (0, 0, "not a run of whole pieces"),  # empty
        (32 * KIB, 16 * KIB, "not a run of whole pieces"),  # backwards
        (-16 * KIB, 16 * KIB, "not a run of whole pieces"),  # before the file
        (0, 100_001, "not a run of whole pieces"),  # past the end of the file
        (112 * KIB, 112 * KIB + 16 * KIB, "not a run of whole pieces"),  # starts past the end
    ],
)
def test_part_refuses_bounds_that_are_not_whole_pieces(start: int, stop: int, match: str) -> None:
    builder = PieceHashBuilder(100_000, 16 * KIB, MetaVersion.HYBRID)
    with pytest.raises(ValueError, match=match):
        builder.part(start, stop)


def test_part_may_end_at_the_end_of_the_file_off_a_piece_boundary() -> None:
    builder = PieceHashBuilder(100_000, 16 * KIB, MetaVersion.HYBRID)
    last = builder.part(96 * KIB, 100_000)
    assert last.position == 96 * KIB
    whole = builder.part(0, 96 * KIB)
    whole.write(DATA[: 96 * KIB])
    last.write(DATA[96 * KIB : 100_000])
    assert last.position == 100_000
    assert builder.finish() == hash_bytes(DATA[:100_000], 16 * KIB, MetaVersion.HYBRID)


@pytest.mark.parametrize("version", list(MetaVersion))
def test_empty_content_is_an_error(version: MetaVersion) -> None:
    with pytest.raises(InvalidTorrent, match="cannot make a torrent of 0 bytes"):
        PieceHashBuilder(0, 16 * KIB, version)
    with pytest.raises(InvalidTorrent, match="cannot make a torrent of 0 bytes"):
        hash_bytes(b"", 16 * KIB, version)
    with pytest.raises(InvalidTorrent):
        PieceHashBuilder(-1, 16 * KIB, version)


# --- piece lengths and meta versions -------------------------------------------------------


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
        PieceHashBuilder(100, bad, MetaVersion.V1)
    with pytest.raises(InvalidPieceLength, match=str(bad)):
        hash_bytes(b"abc", bad, MetaVersion.V2)


@pytest.mark.parametrize("good", [16 * KIB, 32 * KIB, 1024 * KIB, 16 * 1024 * KIB, 2**30])
def test_valid_piece_lengths_pass(good: int) -> None:
    assert validate_piece_length(good) == good
    assert PieceHashBuilder(1, good, MetaVersion.V1).piece_length == good


@pytest.mark.parametrize("bad", [True, 16384.0, "16384"])
def test_piece_length_must_be_an_int(bad: object) -> None:
    with pytest.raises(InvalidPieceLength):
        validate_piece_length(bad)  # type: ignore[arg-type]


def test_meta_version_values() -> None:
    assert [v.value for v in MetaVersion] == ["1", "2", "hybrid"]
    assert MetaVersion("hybrid").has_v1 and MetaVersion("hybrid").has_v2
    assert MetaVersion.V1.has_v1 and not MetaVersion.V1.has_v2
    assert MetaVersion.V2.has_v2 and not MetaVersion.V2.has_v1
    # The builder takes the string values too.
    assert PieceHashBuilder(1, 16 * KIB, "2").meta_version is MetaVersion.V2  # type: ignore[arg-type]
