"""Keys that cannot be files of a collection: exactly the paths libtorrent rewrites on load.

libtorrent (the wheel) is the reference: a v1 torrent listing candidate paths is loaded and
every path it lists differently from the torrent is one `path_problem` must name, and no other.
"""

from __future__ import annotations

import random
import warnings

import pytest

from s3torrent.torrent import (
    CollectionFile,
    MetaVersion,
    TorrentOptions,
    build_collection_torrent,
    hash_collection_file,
    invalid_collection_keys,
    path_problem,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import libtorrent as lt

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def paths_libtorrent_lists(paths: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Load a v1 torrent of these paths (1 byte each) and return the paths libtorrent lists."""
    files = [
        {b"length": 1, b"path": [segment.encode("utf-8") for segment in path]} for path in paths
    ]
    piece = 1 << 24
    info = {
        b"name": b"set",
        b"piece length": piece,
        b"pieces": bytes(20 * -(-len(files) // piece)),
        b"files": files,
    }
    storage = lt.torrent_info(lt.bencode({b"info": info})).files()
    return [tuple(storage.file_path(i).split("/")[1:]) for i in range(storage.num_files())]


def code_points() -> list[int]:
    rng = random.Random(5)
    rest = [c for c in range(0x3000, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    return [
        *range(0x01, 0x3000),
        *range(0xFE00, 0x10000),
        *(0x1D173, 0x1D17A, 0xE0001, 0xE007F, 0x10FFFD),
        *rng.sample(rest, 3000),
    ]


def test_characters_match_what_libtorrent_rewrites() -> None:
    points = [c for c in code_points() if c != ord("/")]
    paths = [(f"a{chr(c)}b{i}",) for i, c in enumerate(points)]
    listed = paths_libtorrent_lists(paths)
    for code, path, seen in zip(points, paths, listed, strict=True):
        problem = path_problem(path, MetaVersion.V1)
        assert (seen == path) == (problem is None), (hex(code), seen, problem)
        if problem is not None:
            assert f"U+{code:04X}" in problem


@pytest.mark.parametrize("char", ["x", "é", "中", "😀"])
def test_segments_longer_than_240_bytes_are_refused(char: str) -> None:
    width = len(char.encode("utf-8"))
    fits = char * (240 // width)
    longer = char * (240 // width + 1)
    stem = char * ((240 - 4) // width)
    paths = [(fits,), ("d", stem + ".bin"), (longer,), ("d", longer + ".tar.gz")]
    listed = paths_libtorrent_lists(paths)
    # Up to 240 bytes: kept by libtorrent and by us; beyond, libtorrent truncates.
    assert listed[:2] == paths[:2]
    assert [path_problem(path, MetaVersion.V1) for path in paths[:2]] == [None, None]
    assert listed[2] != paths[2] and listed[3] != paths[3]
    assert path_problem((longer,), MetaVersion.V1) == (
        f"a path segment of {len(longer.encode())} bytes (libtorrent truncates beyond 240)"
    )


def test_libtorrent_keeps_a_few_longer_segments_by_accident() -> None:
    # Its truncation keeps an extension of up to 4 bytes past 240: 240 bytes + `.bin` (244)
    # comes out as it went in, while 238 + `.bin` (242) is cut to 240. We refuse every
    # segment over 240 bytes, which is simpler to explain and costs these few.
    kept = ("x" * 240 + ".bin",)
    cut = ("x" * 238 + ".bin",)
    listed = paths_libtorrent_lists([kept, cut])
    assert listed[0] == kept
    assert listed[1] == ("x" * 238 + ".b",)  # 242 bytes cut to 240
    assert path_problem(kept, MetaVersion.V1) is not None


def test_empty_and_dot_segments_are_renamed() -> None:
    paths = [("a", "", "b"), (".",), ("..", "c"), ("d", "."), ("ok", ".hidden"), ("...",)]
    listed = paths_libtorrent_lists(paths)
    # `.` becomes `_`, which is also the folder `..` became: so it is renamed once more.
    assert listed == [
        ("a", "_", "b"),
        ("_.1",),
        ("_", "c"),
        ("d", "_"),
        ("ok", ".hidden"),
        ("...",),
    ]
    assert [path_problem(path, MetaVersion.V1) is None for path in paths] == [
        False,
        False,
        False,
        False,
        True,
        True,
    ]


def test_a_file_that_is_also_a_folder_and_case_twins_are_renamed() -> None:
    paths = [("a",), ("a", "b"), ("x.b",), ("X.b",), ("é",), ("É",), ("d", "q"), ("D", "r")]
    listed = paths_libtorrent_lists(paths)
    assert listed == [
        ("a.1",),
        ("a", "b"),
        ("x.b",),
        ("X.1.b",),
        ("é",),
        ("É",),
        ("d", "q"),
        ("D", "r"),
    ]
    keys = ["/".join(path) for path in paths]
    assert invalid_collection_keys(keys) == {
        "a": "also a folder of other keys (libtorrent renames the file)",
        "x.b": "equal to 'X.b' but for case (libtorrent renames it)",
    }


@pytest.mark.parametrize("version", [MetaVersion.V2, MetaVersion.HYBRID])
def test_case_twins_in_v2_keep_the_first_in_utf8_order(version: MetaVersion) -> None:
    # In a v2 tree `A` sorts before `a`: libtorrent renames `a`, the one we leave out.
    files = [CollectionFile(("a",), 3), CollectionFile(("A",), 4)]
    hashes = [hash_collection_file(bytes(f.length), 16384, version) for f in files]
    data = build_collection_torrent(
        "set", files, TorrentOptions(meta_version=version), piece_length=16384, file_hashes=hashes
    ).data
    storage = lt.torrent_info(data).files()
    listed = [
        storage.file_path(i)
        for i in range(storage.num_files())
        if not storage.file_flags(i) & lt.file_storage.flag_pad_file
    ]
    assert listed == ["set/A", "set/a.1"]
    assert list(invalid_collection_keys(["a", "A"], version)) == ["a"]


def test_invalid_collection_keys_give_a_reason_each() -> None:
    keys = [
        "ok.bin",
        "folder/",
        "",
        "a//b",
        "x/../y",
        "nul\x00.bin",
        "back\\slash",
        "tab\tname",
        "rtl\u202eexe.txt",
        "ok.bin",
        "sp ace+plus%25/ü.bin",
        "win:dows*?.txt",
        "/".join("d" * 96),
    ]
    problems = invalid_collection_keys(keys, MetaVersion.HYBRID)
    assert problems == {
        "folder/": "a folder marker, not a file",
        "": "a folder marker, not a file",
        "a//b": "an empty path segment (libtorrent renames it '_')",
        "x/../y": "a '..' path segment (libtorrent renames it '_')",
        "nul\x00.bin": "character U+0000 in 'nul\\x00.bin' (libtorrent removes it)",
        "back\\slash": "character U+005C in 'back\\\\slash' (libtorrent removes it)",
        "tab\tname": "control character U+0009 in 'tab\\tname' (libtorrent writes '_')",
        "rtl\u202eexe.txt": "character U+202E in 'rtl\\u202eexe.txt' (libtorrent removes it)",
        "ok.bin": "listed twice",
        "/".join("d" * 96): "96 path segments: deeper than libtorrent reads in a v2 file tree (95)",
    }
    # v1 lists paths flat: depth is no problem there.
    assert "/".join("d" * 96) not in invalid_collection_keys(keys, MetaVersion.V1)
