"""Collections: per-file reuse (v2, hybrid), v1 resume from stored pieces, input checks, and
reading multi-file torrents strictly. Byte-identity with libtorrent is
test_golden_collections.py; these check rebuilds against from-scratch builds and libtorrent."""

from __future__ import annotations

import dataclasses
import json
import random
import warnings
from pathlib import Path

import pytest

from s3torrent.torrent import (
    CollectionFile,
    InvalidTorrent,
    MetaVersion,
    PieceHashes,
    StreamSlice,
    TorrentOptions,
    build_collection_torrent,
    hash_bytes,
    hash_collection_file,
    hash_collection_stream,
    plan_v1_resume,
    read_collection_torrent,
    read_torrent,
    stream_slices,
)
from s3torrent.torrent.bencode import decode, encode
from tests.unit.torrent.test_golden_collections import (
    NAME,
    libtorrent_collection,
    raw_info,
    write_tree,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import libtorrent as lt

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KIB = 1024
PIECE = 16 * KIB
OPTIONS = {
    version: TorrentOptions(meta_version=version, created_by=None) for version in MetaVersion
}


def contents_of(files: list[CollectionFile], seed: int) -> dict[tuple[str, ...], bytes]:
    rng = random.Random(seed)
    return {file.path: rng.randbytes(file.length) for file in files}


def v2_build(
    files: list[CollectionFile],
    hashes: list[PieceHashes],
    version: MetaVersion,
    piece_length: int = PIECE,
) -> bytes:
    return build_collection_torrent(
        NAME, files, OPTIONS[version], piece_length=piece_length, file_hashes=hashes
    ).data


def v1_build(files: list[CollectionFile], pieces: bytes, piece_length: int = PIECE) -> bytes:
    return build_collection_torrent(
        NAME, files, OPTIONS[MetaVersion.V1], piece_length=piece_length, v1_pieces=pieces
    ).data


# --- per-file reuse (v2, hybrid) --------------------------------------------------------------


@pytest.mark.parametrize("version", [MetaVersion.V2, MetaVersion.HYBRID])
def test_rebuild_reuses_stored_file_hashes(tmp_path: Path, version: MetaVersion) -> None:
    old = [
        CollectionFile(("a.bin",), 3 * PIECE + 5, tag="e1"),
        CollectionFile(("d", "b.bin"), 0, tag="e2"),
        CollectionFile(("d", "c.bin"), PIECE, tag="e3"),
        CollectionFile(("z.bin",), 7, tag="e4"),
    ]
    data = contents_of(old, 1)
    # Records as a store would keep them: JSON with the bytes as hex.
    records: dict[tuple[str, str], str] = {}
    for file in old:
        hashes = hash_collection_file(data[file.path], PIECE, version)
        records[("/".join(file.path), file.tag)] = json.dumps(
            {
                k: v.hex() if isinstance(v, bytes) else v
                for k, v in dataclasses.asdict(hashes).items()
            }
        )

    # a.bin changed, z.bin removed, new.bin added (it sorts between the others).
    new = [
        CollectionFile(("a.bin",), 2 * PIECE + 1, tag="e5"),
        CollectionFile(("d", "b.bin"), 0, tag="e2"),
        CollectionFile(("d", "c.bin"), PIECE, tag="e3"),
        CollectionFile(("c", "new.bin"), PIECE + 9, tag="e6"),
    ]
    data.update(contents_of(new[:1] + new[3:], 2))
    hashed: list[str] = []
    hashes_in_order = []
    for file in new:
        record = records.get(("/".join(file.path), file.tag))
        if record is None:
            hashed.append("/".join(file.path))
            hashes_in_order.append(hash_collection_file(data[file.path], PIECE, version))
        else:
            fields = json.loads(record)
            hashes_in_order.append(
                PieceHashes(
                    **{
                        k: bytes.fromhex(v) if isinstance(v, str) and k != "meta_version" else v
                        for k, v in fields.items()
                    }
                )
            )
    assert hashed == ["a.bin", "c/new.bin"]
    reused = v2_build(new, hashes_in_order, version)
    scratch = [hash_collection_file(data[file.path], PIECE, version) for file in new]
    assert reused == v2_build(new, scratch, version)
    for file in new:
        path = tmp_path / NAME / Path(*file.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[file.path])
    reference = libtorrent_collection(tmp_path, new, PIECE, version)
    assert raw_info(reused) == raw_info(reference)


def test_a_record_serves_with_and_without_pad_files(tmp_path: Path) -> None:
    # The same stored record builds a one-file hybrid collection (no pad, short last piece)
    # and a two-file one (padded last piece).
    files = [CollectionFile(("a",), PIECE + 3), CollectionFile(("b",), 1)]
    write_tree(tmp_path, files, 5)
    data = {f.path: (tmp_path / NAME / Path(*f.path)).read_bytes() for f in files}
    record = hash_collection_file(data[("a",)], PIECE, MetaVersion.HYBRID)
    assert record.v1_padded_last_piece is not None
    one = v2_build(files[:1], [record], MetaVersion.HYBRID)
    two = v2_build(
        files,
        [record, hash_collection_file(data[("b",)], PIECE, MetaVersion.HYBRID)],
        MetaVersion.HYBRID,
    )
    assert raw_info(two) == raw_info(
        libtorrent_collection(tmp_path, files, PIECE, MetaVersion.HYBRID)
    )
    (tmp_path / NAME / "b").unlink()
    assert raw_info(one) == raw_info(
        libtorrent_collection(tmp_path, files[:1], PIECE, MetaVersion.HYBRID)
    )


def test_padded_last_piece_is_sha1_of_the_zero_filled_piece() -> None:
    data = random.Random(3).randbytes(2 * PIECE + 100)
    hashes = hash_collection_file(data, PIECE, MetaVersion.HYBRID)
    padded = data[2 * PIECE :] + bytes(PIECE - 100)
    assert hashes.v1_padded_last_piece == hash_bytes(padded, PIECE, MetaVersion.V1).v1_pieces
    # The usual pieces are those of a single file.
    single = hash_bytes(data, PIECE, MetaVersion.HYBRID)
    assert hashes.v1_pieces == single.v1_pieces
    assert hashes.v2_pieces_root == single.v2_pieces_root
    # A file of whole pieces needs no padded piece; a 0-byte file has no hashes at all.
    assert (
        hash_collection_file(data[: 2 * PIECE], PIECE, MetaVersion.HYBRID).v1_padded_last_piece
        is None
    )
    empty = hash_collection_file(b"", PIECE, MetaVersion.HYBRID)
    assert (empty.length, empty.v1_pieces, empty.v2_pieces_root) == (0, None, None)


# --- v1: the stream, and resuming it ----------------------------------------------------------


def test_stream_slices_map_a_range_to_file_bytes() -> None:
    files = [CollectionFile(("a",), 10), CollectionFile(("e",), 0), CollectionFile(("b",), 5)]
    assert stream_slices(files, 0, 15) == [StreamSlice(0, 0, 10), StreamSlice(2, 0, 5)]
    assert stream_slices(files, 8, 12) == [StreamSlice(0, 8, 2), StreamSlice(2, 0, 2)]
    assert stream_slices(files, 10, 15) == [StreamSlice(2, 0, 5)]
    assert stream_slices(files, 15, 15) == []
    with pytest.raises(ValueError, match="not a range"):
        stream_slices(files, 0, 16)


class RecordingReader:
    """Reads stream ranges from the files' contents, remembering what was read."""

    def __init__(self, files: list[CollectionFile], data: dict[tuple[str, ...], bytes]) -> None:
        self.files = files
        self.data = data
        self.read: list[tuple[str, int, int]] = []

    def stream(self, start: int, stop: int) -> bytes:
        out = bytearray()
        for piece in stream_slices(self.files, start, stop):
            file = self.files[piece.index]
            self.read.append(("/".join(file.path), piece.offset, piece.size))
            out += self.data[file.path][piece.offset : piece.offset + piece.size]
        return bytes(out)


def resumed_v1(
    old: list[CollectionFile],
    new: list[CollectionFile],
    data: dict[tuple[str, ...], bytes],
    stored: bytes,
) -> tuple[bytes, RecordingReader, int]:
    plan = plan_v1_resume(old, new, PIECE)
    reader = RecordingReader(new, data)
    rest = b""
    if plan.read_from < plan.length:
        chunk = reader.stream(plan.read_from, plan.length)
        rest = hash_bytes(chunk, PIECE, MetaVersion.V1).v1_pieces or b""
    return v1_build(new, plan.combine(stored, rest)), reader, plan.read_from


def full_v1(files: list[CollectionFile], data: dict[tuple[str, ...], bytes]) -> tuple[bytes, bytes]:
    pieces = hash_collection_stream(files, [data[f.path] for f in files], PIECE)
    return pieces, v1_build(files, pieces)


@pytest.mark.parametrize(
    ("old_tail", "boundary_reads"),
    [
        (5, [("a", 2 * PIECE, 100), ("b", 0, 5)]),
        (PIECE, [("b", PIECE - 100, 100)]),
        (3 * PIECE - 1, [("b", 3 * PIECE - 100, 99)]),
        (2 * PIECE - 100, []),  # the old stream ends on a piece boundary: nothing re-read
    ],
)
def test_v1_resume_after_appending_a_last_file(
    tmp_path: Path, old_tail: int, boundary_reads: list[tuple[str, int, int]]
) -> None:
    old = [CollectionFile(("a",), 2 * PIECE + 100, "1"), CollectionFile(("b",), old_tail, "2")]
    new = [*old, CollectionFile(("c", "new"), PIECE + 77, "3")]
    data = contents_of(new, 7)
    stored, _ = full_v1(old, data)
    torrent, reader, read_from = resumed_v1(old, new, data, stored)
    assert torrent == full_v1(new, data)[1]
    # Only the boundary piece (the old stream's short last piece) and the new file are read.
    old_length = 2 * PIECE + 100 + old_tail
    assert read_from == old_length // PIECE * PIECE
    assert reader.read == [*boundary_reads, ("c/new", 0, PIECE + 77)]
    write_tree(tmp_path, new, 0)
    for file in new:
        (tmp_path / NAME / Path(*file.path)).write_bytes(data[file.path])
    assert raw_info(torrent) == raw_info(
        libtorrent_collection(tmp_path, new, PIECE, MetaVersion.V1)
    )


def test_v1_resume_other_changes() -> None:
    a, b, c = (
        CollectionFile(("a",), PIECE + 1, "1"),
        CollectionFile(("b",), 2 * PIECE, "2"),
        CollectionFile(("c",), 300, "3"),
    )
    data = contents_of([a, b, c], 8)
    stored, _ = full_v1([a, b, c], data)
    # Unchanged: nothing to read, every piece kept.
    torrent, reader, read_from = resumed_v1([a, b, c], [a, b, c], data, stored)
    assert reader.read == [] and read_from == a.length + b.length + c.length
    assert torrent == full_v1([a, b, c], data)[1]
    # A middle file changed: pieces wholly inside `a` are kept, the rest re-read.
    b2 = CollectionFile(("b",), 2 * PIECE, "2'")
    data2 = {**data, ("b",): random.Random(9).randbytes(2 * PIECE)}
    torrent, reader, read_from = resumed_v1([a, b, c], [a, b2, c], data2, stored)
    assert read_from == PIECE
    assert torrent == full_v1([a, b2, c], data2)[1]
    # The last file removed: the stream's new last piece is re-read.
    torrent, reader, read_from = resumed_v1([a, b, c], [a, b], data, stored)
    assert read_from == 3 * PIECE and reader.read == [("b", 2 * PIECE - 1, 1)]
    assert torrent == full_v1([a, b], data)[1]
    # A file inserted first: nothing is kept.
    z = CollectionFile(("0",), 10, "0")
    data3 = {**data, ("0",): b"z" * 10}
    plan = plan_v1_resume([a, b, c], [z, a, b, c], PIECE)
    assert (plan.valid_pieces, plan.read_from) == (0, 0)
    assert resumed_v1([a, b, c], [z, a, b, c], data3, stored)[0] == full_v1([z, a, b, c], data3)[1]
    with pytest.raises(ValueError, match="stored pieces"):
        plan_v1_resume([a, b, c], [a, b2, c], PIECE).combine(b"", b"")


# --- what cannot be built ---------------------------------------------------------------------


def test_build_refuses_bad_file_lists() -> None:
    def build(files: list[CollectionFile]) -> None:
        pieces = bytes(20 * max(1, -(-sum(f.length for f in files) // PIECE)))
        build_collection_torrent(
            NAME, files, OPTIONS[MetaVersion.V1], piece_length=PIECE, v1_pieces=pieces
        )

    with pytest.raises(InvalidTorrent, match="at least one file"):
        build([])
    with pytest.raises(InvalidTorrent, match="every file is empty"):
        build([CollectionFile(("a",), 0), CollectionFile(("b",), 0)])
    with pytest.raises(InvalidTorrent, match="the same path twice"):
        build([CollectionFile(("a",), 1), CollectionFile(("a",), 2)])
    with pytest.raises(InvalidTorrent, match="both a file and a folder: 'a'"):
        build([CollectionFile(("a",), 1), CollectionFile(("a", "b"), 2)])
    for path in [(), ("",), ("a", "."), ("..",), ("a/b",), ("a\x00",)]:
        with pytest.raises(InvalidTorrent, match="not a file path"):
            build([CollectionFile(path, 1)])
    with pytest.raises(InvalidTorrent, match="non-negative"):
        build([CollectionFile(("a",), -1)])
    with pytest.raises(InvalidTorrent, match="one path segment"):
        build_collection_torrent(
            "a/b",
            [CollectionFile(("a",), 1)],
            OPTIONS[MetaVersion.V1],
            piece_length=PIECE,
            v1_pieces=bytes(20),
        )


def test_build_refuses_hashes_that_do_not_fit() -> None:
    files = [CollectionFile(("a",), PIECE + 1), CollectionFile(("b",), 3)]
    data = contents_of(files, 4)
    hybrid = [hash_collection_file(data[f.path], PIECE, MetaVersion.HYBRID) for f in files]
    with pytest.raises(InvalidTorrent, match="v1 pieces must be 40 bytes: 60"):
        v1_build(files, bytes(60))
    with pytest.raises(InvalidTorrent, match="built from the stream's v1_pieces only"):
        build_collection_torrent(
            NAME, files, OPTIONS[MetaVersion.V1], piece_length=PIECE, file_hashes=hybrid
        )
    with pytest.raises(InvalidTorrent, match="1 file hashes for 2 files"):
        v2_build(files, hybrid[:1], MetaVersion.HYBRID)
    with pytest.raises(InvalidTorrent, match="hashes of 3 bytes"):
        v2_build(files, hybrid[::-1], MetaVersion.HYBRID)
    v2_only = [hash_collection_file(data[f.path], PIECE, MetaVersion.V2) for f in files]
    with pytest.raises(InvalidTorrent, match="v1 hashes missing"):
        v2_build(files, v2_only, MetaVersion.HYBRID)
    unpadded = [hash_bytes(data[f.path], PIECE, MetaVersion.HYBRID) for f in files]
    with pytest.raises(InvalidTorrent, match="pad_last_piece"):
        v2_build(files, unpadded, MetaVersion.HYBRID)
    with pytest.raises(InvalidTorrent, match="piece length 32768 asked"):
        build_collection_torrent(
            NAME,
            files,
            TorrentOptions(meta_version=MetaVersion.V2, piece_length=2 * PIECE),
            piece_length=PIECE,
            file_hashes=v2_only,
        )


# --- reading ----------------------------------------------------------------------------------


def built(version: MetaVersion) -> bytes:
    files = [
        CollectionFile(("d", "a"), 2 * PIECE + 1),
        CollectionFile(("b",), 5),
        CollectionFile(("0e",), 0),
    ]
    data = contents_of(files, 6)
    if version is MetaVersion.V1:
        return v1_build(files, hash_collection_stream(files, [data[f.path] for f in files], PIECE))
    return v2_build(
        files, [hash_collection_file(data[f.path], PIECE, version) for f in files], version
    )


def mutated(data: bytes, change: object) -> bytes:
    top = decode(data)
    assert isinstance(top, dict)
    change(top)  # type: ignore[operator]
    return encode(top)


def test_single_and_multi_file_readers_point_at_each_other() -> None:
    with pytest.raises(InvalidTorrent, match="read them with read_collection_torrent"):
        read_torrent(built(MetaVersion.HYBRID))
    single = encode(
        {b"info": {b"name": b"x", b"piece length": PIECE, b"length": 1, b"pieces": bytes(20)}}
    )
    with pytest.raises(InvalidTorrent, match="read it with read_torrent"):
        read_collection_torrent(single)


def _info(top: dict[bytes, object]) -> dict[bytes, object]:
    info = top[b"info"]
    assert isinstance(info, dict)
    return info


def _files(top: dict[bytes, object]) -> list[dict[bytes, object]]:
    files = _info(top)[b"files"]
    assert isinstance(files, list)
    return files


@pytest.mark.parametrize(
    ("version", "change", "message"),
    [
        (
            MetaVersion.V1,
            lambda t: _info(t).__setitem__(b"pieces", bytes(20)),
            "info.pieces must be 3 hashes",
        ),
        (MetaVersion.V1, lambda t: _files(t)[0].__setitem__(b"length", -1), "must not be negative"),
        (MetaVersion.V1, lambda t: _files(t)[0].__setitem__(b"path", []), "non-empty list"),
        (MetaVersion.V1, lambda t: _files(t)[0].__setitem__(b"path", [b"\xff"]), "not UTF-8"),
        (MetaVersion.HYBRID, lambda t: _files(t).reverse(), "pad file of"),
        (MetaVersion.HYBRID, lambda t: _files(t).pop(2), "does not start on a piece boundary"),
        (MetaVersion.HYBRID, lambda t: _files(t).pop(), "last file is not padded"),
        (
            MetaVersion.HYBRID,
            lambda t: _files(t)[0].__setitem__(b"path", [b"zz"]),
            "info.files and the file tree differ",
        ),
        (MetaVersion.V2, lambda t: t.__setitem__(b"piece layers", {}), "piece layer missing"),
        (
            MetaVersion.V2,
            lambda t: _info(t).__setitem__(b"meta version", 3),
            "unsupported info.meta version",
        ),
        (
            MetaVersion.V2,
            lambda t: _info(t).__setitem__(
                b"file tree", {b"e": {b"": {b"length": 0}}, b"f": {b"": {b"length": 0}}}
            ),
            "at least one byte",
        ),
        (
            MetaVersion.V2,
            lambda t: _info(t).__setitem__(
                b"file tree", {b"e": {b"": {b"length": 1, b"pieces root": bytes(31)}}}
            ),
            "32 bytes: 31",
        ),
    ],
)
def test_read_refuses_bad_collections(version: MetaVersion, change: object, message: str) -> None:
    data = built(version)
    read_collection_torrent(data)
    with pytest.raises(InvalidTorrent, match=message):
        read_collection_torrent(mutated(data, change))


def test_read_refuses_a_corrupt_piece_layer() -> None:
    data = built(MetaVersion.V2)
    torrent = read_collection_torrent(data)
    assert torrent.v2_piece_layers is not None
    layer = next(layer for layer in torrent.v2_piece_layers if layer is not None)
    with pytest.raises(InvalidTorrent, match="does not hash to its root"):
        read_collection_torrent(data.replace(layer, bytes(1) + layer[1:]))
    with pytest.raises(RuntimeError):
        lt.torrent_info(data.replace(layer, bytes(1) + layer[1:]))
