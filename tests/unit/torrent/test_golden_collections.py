"""Golden tests: multi-file torrents against libtorrent's, over random trees made at test time.

The reference is libtorrent's `create_torrent` over the same files on disk, added in the same
order with the same piece length and flags:

    fs = lt.file_storage(); fs.add_file("set/a/b.bin", size)  # ... in listing order
    ct = lt.create_torrent(fs, piece_length, flags)  # v1_only / v2_only / 0 (hybrid)
    lt.set_piece_hashes(ct, folder)
    lt.bencode(ct.generate())

Our info dict must be byte-identical, the whole file equal but for libtorrent's creation
date, and libtorrent must load ours (it checks every piece layer against its root).

One exception, a libtorrent bug: `create_torrent` sorts a hybrid's `files` by whole path
(`0.x/b` before `0/a`, as `.` < `/`) while its loader wants them in the file tree's order
(`0/a` first, segment by segment) and refuses its own torrent ("the v1 and v2 file metadata
does not match"). We write the loadable order; for those trees the reference is libtorrent's
torrent with its `files` (and their pieces) put in tree order.
"""

from __future__ import annotations

import itertools
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from s3torrent.torrent import (
    CollectionFile,
    CollectionTorrent,
    MetaVersion,
    PieceHashes,
    TorrentOptions,
    build_collection_torrent,
    collection_file_builder,
    collection_torrent_size,
    hash_collection_file,
    hash_collection_stream,
    magnet_link,
    read_collection_torrent,
)
from s3torrent.torrent.bencode import decode, dict_spans

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import libtorrent as lt

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KIB = 1024
FLAGS = {
    MetaVersion.V1: lt.create_torrent.v1_only,
    MetaVersion.V2: lt.create_torrent.v2_only,
    MetaVersion.HYBRID: 0,
}
# Segments meant to trip ordering and escaping: a space, `+`, `%`, `-` and `.` sort before
# `/`, upper case before lower, multi-byte UTF-8 after ASCII.
SEGMENT_CHARS = [*"abcAB01 +%-._~!", "ü", "é", "中", "😀"]
NAME = "set 1+ü"


def ascii_folded(text: str) -> str:
    return text.translate({code: code + 32 for code in range(ord("A"), ord("Z") + 1)})


def random_tree(rng: random.Random, piece_length: int) -> list[CollectionFile]:
    """Files with nested folders, 0-byte files and sizes around block and piece boundaries."""
    sizes = [
        0,
        1,
        16 * KIB - 1,
        16 * KIB,
        16 * KIB + 1,
        piece_length - 1,
        piece_length,
        piece_length + 1,
        2 * piece_length + 7,
        3 * piece_length,
    ]
    folders = [()] + [
        tuple(
            "".join(rng.choice(SEGMENT_CHARS) for _ in range(rng.randint(1, 4)))
            for _ in range(rng.randint(1, 3))
        )
        for _ in range(4)
    ]
    files: dict[tuple[str, ...], CollectionFile] = {}
    for _ in range(rng.randint(1, 12)):
        folder = rng.choice(folders)
        leaf = "".join(rng.choice(SEGMENT_CHARS) for _ in range(rng.randint(1, 5)))
        path = (*folder, leaf)
        if leaf in {".", ".."} or any(segment in {".", ".."} for segment in path):
            continue
        size = rng.choice(sizes) if rng.random() < 0.8 else rng.randint(0, 3 * piece_length)
        files[path] = CollectionFile(path, size)
    listed = [file for file in files.values()]
    # Drop a file that is also a folder of another (no file system holds both).
    folders_used = {file.path[:end] for file in listed for end in range(1, len(file.path))}
    listed = [file for file in listed if file.path not in folders_used]
    # And paths equal but for ASCII case: libtorrent renames the second (see test_paths.py).
    folded: dict[str, CollectionFile] = {}
    for file in listed:
        folded.setdefault(ascii_folded("/".join(file.path)), file)
    listed = list(folded.values())
    if not any(file.length for file in listed):
        listed.append(CollectionFile(("last",), 5))
    rng.shuffle(listed)  # v1 must keep the order it is given, whatever it is
    return listed


def write_tree(folder: Path, files: Sequence[CollectionFile], seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    contents: dict[str, bytes] = {}
    for file in files:
        data = rng.randbytes(file.length)
        path = folder / NAME / Path(*file.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        contents["/".join(file.path)] = data
    return contents


def libtorrent_collection(
    folder: Path, files: Sequence[CollectionFile], piece_length: int, version: MetaVersion
) -> bytes:
    storage = lt.file_storage()
    for file in files:
        storage.add_file("/".join((NAME, *file.path)), file.length)
    ct = lt.create_torrent(storage, piece_length, FLAGS[version])
    lt.set_piece_hashes(ct, str(folder))
    return bytes(lt.bencode(ct.generate()))


def whole_path_order_differs(files: Sequence[CollectionFile]) -> bool:
    def whole(file: CollectionFile) -> bytes:
        return "/".join(file.path).encode()

    return sorted(files, key=whole) != sorted(files, key=lambda file: file.sort_key)


def in_tree_order(reference: bytes, piece_length: int) -> bytes:
    """libtorrent's hybrid torrent with its files (each with its pad) and pieces in tree order."""
    decoded = lt.bdecode(reference)
    info = decoded[b"info"]
    groups: list[list[dict[bytes, Any]]] = []
    for entry in info[b"files"]:
        if entry.get(b"attr") == b"p":
            groups[-1].append(entry)
        else:
            groups.append([entry])
    pieces: list[bytes] = []
    offset = 0
    for group in groups:
        count = sum(entry[b"length"] for entry in group) // piece_length
        pieces.append(info[b"pieces"][offset * 20 : (offset + count) * 20])
        offset += count
    order = sorted(range(len(groups)), key=lambda i: groups[i][0][b"path"])
    info[b"files"] = [entry for i in order for entry in groups[i]]
    info[b"pieces"] = b"".join(pieces[i] for i in order)
    return bytes(lt.bencode(decoded))


def raw_info(data: bytes) -> bytes:
    start, end = dict_spans(data)[b"info"]
    return data[start:end]


def per_file_hashes(
    files: Sequence[CollectionFile],
    contents: dict[str, bytes],
    piece_length: int,
    version: MetaVersion,
    rng: random.Random,
) -> list[PieceHashes]:
    """Each file hashed on its own, in parts of whole pieces fed in odd chunk sizes."""
    result = []
    for file in files:
        data = contents["/".join(file.path)]
        if not data:
            result.append(hash_collection_file(data, piece_length, version))
            continue
        builder = collection_file_builder(len(data), piece_length, version)
        cuts = sorted({0, len(data), *(piece_length * rng.randint(0, 3) for _ in range(2))})
        cuts = [cut for cut in cuts if cut <= len(data)]
        for start, stop in itertools.pairwise(cuts):
            part = builder.part(start, stop)
            position = start
            while position < stop:
                step = min(stop - position, rng.randint(1, 40_000))
                part.write(data[position : position + step])
                position += step
        result.append(builder.finish())
    return result


def build_ours(
    files: Sequence[CollectionFile],
    contents: dict[str, bytes],
    piece_length: int,
    version: MetaVersion,
    rng: random.Random,
    options: TorrentOptions | None = None,
) -> CollectionTorrent:
    options = options or TorrentOptions(meta_version=version, created_by=None)
    if version is MetaVersion.V1:
        data = [contents["/".join(file.path)] for file in files]
        return build_collection_torrent(
            NAME,
            files,
            options,
            piece_length=piece_length,
            v1_pieces=hash_collection_stream(files, data, piece_length),
        )
    return build_collection_torrent(
        NAME,
        files,
        options,
        piece_length=piece_length,
        file_hashes=per_file_hashes(files, contents, piece_length, version, rng),
    )


def check_loads_in_libtorrent(ours: CollectionTorrent) -> None:
    info = lt.torrent_info(ours.data)
    hashes = info.info_hashes()
    assert (str(hashes.v1) if hashes.has_v1() else None) == ours.info_hash_v1
    assert (str(hashes.v2) if hashes.has_v2() else None) == ours.info_hash_v2
    storage = info.files()
    listed = [
        (tuple(storage.file_path(i).split("/")[1:]), storage.file_size(i))
        for i in range(storage.num_files())
        if not storage.file_flags(i) & lt.file_storage.flag_pad_file
    ]
    assert listed == [(file.path, file.length) for file in ours.files]
    assert info.name() == ours.name
    assert info.num_pieces() == ours.num_pieces
    assert info.piece_length() == ours.piece_length


CASES = [
    pytest.param(seed, piece_length, version, id=f"{version}-{piece_length // KIB}k-{seed}")
    for version in MetaVersion
    for piece_length in (16 * KIB, 32 * KIB, 64 * KIB)
    for seed in range(15)
]


@pytest.mark.parametrize(("seed", "piece_length", "version"), CASES)
def test_info_dict_is_libtorrents(
    tmp_path: Path, seed: int, piece_length: int, version: MetaVersion
) -> None:
    rng = random.Random(f"{seed}-{piece_length}-{version}")
    files = random_tree(rng, piece_length)
    contents = write_tree(tmp_path, files, seed)
    reference = libtorrent_collection(tmp_path, files, piece_length, version)
    ours = build_ours(files, contents, piece_length, version, rng)
    references = [reference]
    if version is MetaVersion.HYBRID and whole_path_order_differs(files):
        with pytest.raises(RuntimeError, match="v1 and v2 file metadata does not match"):
            lt.torrent_info(reference)
        reference = in_tree_order(reference, piece_length)
        references = [reference]

    assert ours.info == raw_info(reference)
    expected = decode(reference)
    assert isinstance(expected, dict)
    expected.pop(b"creation date")
    assert decode(ours.data) == expected
    check_loads_in_libtorrent(ours)
    # The size known before hashing is the size written.
    options = TorrentOptions(meta_version=version, created_by=None)
    size = collection_torrent_size(NAME, files, piece_length, options)
    assert size.bytes == len(ours.data)
    # Items and nesting as libtorrent counts them (its depth limit is exclusive).
    limits = {"max_decode_tokens": size.items, "max_decode_depth": size.depth + 1}
    lt.torrent_info(ours.data, limits)
    with pytest.raises(RuntimeError, match="item count limit exceeded"):
        lt.torrent_info(ours.data, {**limits, "max_decode_tokens": size.items - 1})
    with pytest.raises(RuntimeError, match="nesting depth exceeded"):
        lt.torrent_info(ours.data, {**limits, "max_decode_depth": size.depth})
    # Read back, ours and libtorrent's alike.
    for data in (ours.data, *references):
        read = read_collection_torrent(data)
        assert read.files == ours.files
        assert read.info == ours.info
        assert read.v1_pieces == ours.v1_pieces
        assert read.v2_roots == ours.v2_roots
        assert read.v2_piece_layers == ours.v2_piece_layers
        assert read.num_pieces == ours.num_pieces
        assert (read.info_hash_v1, read.info_hash_v2) == (ours.info_hash_v1, ours.info_hash_v2)


@pytest.mark.parametrize("version", list(MetaVersion))
def test_top_level_matches_libtorrents_with_options(tmp_path: Path, version: MetaVersion) -> None:
    rng = random.Random(99)
    files = random_tree(rng, 16 * KIB)
    contents = write_tree(tmp_path, files, 99)
    storage = lt.file_storage()
    for file in files:
        storage.add_file("/".join((NAME, *file.path)), file.length)
    ct = lt.create_torrent(storage, 16 * KIB, FLAGS[version])
    ct.add_tracker("http://tracker.example/announce", 0)
    ct.add_tracker("udp://backup.example:6969", 1)
    ct.add_url_seed("http://seed.example/bucket/datasets/")
    ct.set_priv(True)
    ct.set_comment("a comment")
    ct.set_creator("s3torrent test")
    lt.set_piece_hashes(ct, str(tmp_path))
    reference = bytes(lt.bencode(ct.generate()))
    decoded = decode(reference)
    assert isinstance(decoded, dict)
    creation_date = decoded[b"creation date"]
    assert isinstance(creation_date, int)
    options = TorrentOptions(
        meta_version=version,
        trackers=(("http://tracker.example/announce",), ("udp://backup.example:6969",)),
        web_seeds=("http://seed.example/bucket/datasets/",),
        private=True,
        comment="a comment",
        created_by="s3torrent test",
        creation_date=creation_date,
    )
    ours = build_ours(files, contents, 16 * KIB, version, rng, options)
    assert ours.data == reference
    assert collection_torrent_size(NAME, files, 16 * KIB, options).bytes == len(reference)
    check_loads_in_libtorrent(ours)
    read = read_collection_torrent(ours.data)
    assert read.trackers == options.trackers
    assert read.web_seeds == options.web_seeds
    assert read.private
    link = magnet_link(ours)
    assert f"xl={ours.length}" in link
    assert "dn=set%201%2B%C3%BC" in link


def test_hybrid_files_in_the_order_libtorrent_loads(tmp_path: Path) -> None:
    # `0.x` < `0/` as whole paths, `0` < `0.x` segment by segment: libtorrent's hybrid lists
    # `0.x/b` first and cannot load it; ours lists `0/a` first and loads, same file tree.
    files = [
        CollectionFile(("0", "a"), 5),
        CollectionFile(("0.x", "b"), 5),
        CollectionFile(("01",), 5),
    ]
    contents = write_tree(tmp_path, files, 4)
    reference = libtorrent_collection(tmp_path, files, 16 * KIB, MetaVersion.HYBRID)
    with pytest.raises(RuntimeError, match="v1 and v2 file metadata does not match"):
        lt.torrent_info(reference)
    ours = build_ours(files, contents, 16 * KIB, MetaVersion.HYBRID, random.Random(4))
    assert [file.path for file in ours.files] == [("0", "a"), ("0.x", "b"), ("01",)]
    assert ours.info == raw_info(in_tree_order(reference, 16 * KIB))
    check_loads_in_libtorrent(ours)
    # v2 alone has no `files` list: libtorrent's is ours, and lists in the same order.
    v2 = build_ours(files, contents, 16 * KIB, MetaVersion.V2, random.Random(4))
    assert v2.info == raw_info(libtorrent_collection(tmp_path, files, 16 * KIB, MetaVersion.V2))
    check_loads_in_libtorrent(v2)


def test_libtorrent_rejects_a_corrupted_piece_layer(tmp_path: Path) -> None:
    # What makes "libtorrent loads it" evidence that our per-file piece layers are right.
    files = [CollectionFile(("a",), 3 * 16 * KIB + 5), CollectionFile(("b",), 7)]
    contents = write_tree(tmp_path, files, 1)
    ours = build_ours(files, contents, 16 * KIB, MetaVersion.V2, random.Random(1))
    assert ours.v2_piece_layers is not None
    layer = ours.v2_piece_layers[0]
    assert layer is not None
    corrupt = ours.data.replace(layer, b"\x00" + layer[1:])
    with pytest.raises(RuntimeError, match="piece layer"):
        lt.torrent_info(corrupt)


def test_zero_byte_files_in_each_format(tmp_path: Path) -> None:
    # What libtorrent does with 0-byte files, pinned: listed, no root, no pad, no layer.
    files = [
        CollectionFile(("empty",), 0),
        CollectionFile(("b",), 5),
        CollectionFile(("a", "empty"), 0),
    ]
    contents = write_tree(tmp_path, files, 2)
    for version in MetaVersion:
        reference = decode(libtorrent_collection(tmp_path, files, 16 * KIB, version))
        assert isinstance(reference, dict)
        info = reference[b"info"]
        assert isinstance(info, dict)
        if version.has_v1:
            entries = info[b"files"]
            assert isinstance(entries, list)
            pads = [entry for entry in entries if isinstance(entry, dict) and b"attr" in entry]
            expected_v1 = (
                [[b"empty"], [b"b"], [b"a", b"empty"]]
                if version is MetaVersion.V1
                else [[b"a", b"empty"], [b"b"], [b".pad", b"16379"], [b"empty"]]
            )
            assert [e[b"path"] for e in entries if isinstance(e, dict)] == expected_v1
            assert len(pads) == (1 if version.has_v2 else 0)
        if version.has_v2:
            tree = info[b"file tree"]
            assert isinstance(tree, dict)
            assert tree[b"empty"] == {b"": {b"length": 0}}
        ours = build_ours(files, contents, 16 * KIB, version, random.Random(2))
        assert ours.info == raw_info(libtorrent_collection(tmp_path, files, 16 * KIB, version))


def test_one_file_collections_get_no_pad(tmp_path: Path) -> None:
    # libtorrent pads files only when there are two or more: a one-file hybrid collection
    # has the short last piece of a single-file torrent.
    files = [CollectionFile(("d", "only.bin"), 16 * KIB + 3)]
    contents = write_tree(tmp_path, files, 3)
    for version in MetaVersion:
        reference = libtorrent_collection(tmp_path, files, 16 * KIB, version)
        ours = build_ours(files, contents, 16 * KIB, version, random.Random(3))
        assert ours.info == raw_info(reference)
        assert b".pad" not in ours.info
        assert ours.num_pieces == 2
        check_loads_in_libtorrent(ours)
