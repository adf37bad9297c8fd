"""Metainfo: building single-file torrents, and reading torrents from anywhere strictly."""

from __future__ import annotations

import hashlib
import random
import warnings
from pathlib import Path

import pytest

from s3torrent.torrent.bencode import decode, encode
from s3torrent.torrent.errors import InvalidPieceLength, InvalidTorrent
from s3torrent.torrent.hashing import MetaVersion, PieceHashes, hash_bytes
from s3torrent.torrent.metainfo import (
    MAX_AUTO_PIECE_LENGTH,
    MIN_PIECE_LENGTH,
    Torrent,
    TorrentOptions,
    build_torrent,
    choose_piece_length,
    torrent_name_for_key,
    validate_piece_length,
)
from s3torrent.torrent.reading import read_torrent

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import libtorrent as lt

KIB = 1024
DATA = random.Random(5).randbytes(200_000)


def make(
    version: MetaVersion = MetaVersion.V1,
    size: int = len(DATA),
    piece_length: int = 16 * KIB,
    **options: object,
) -> Torrent:
    hashes = hash_bytes(DATA[:size], piece_length, version)
    return build_torrent("object.bin", hashes, TorrentOptions(meta_version=version, **options))  # type: ignore[arg-type]


def reencode(torrent: Torrent, mutate_info: object = None, **top_changes: object) -> bytes:
    """The torrent's bytes with some fields changed (None deletes)."""
    top = decode(torrent.data)
    assert isinstance(top, dict)
    info = top[b"info"]
    assert isinstance(info, dict)
    if callable(mutate_info):
        mutate_info(info)
    for key, value in top_changes.items():
        raw = key.replace("_", " ").encode()
        if value is None:
            top.pop(raw, None)
        else:
            top[raw] = value  # type: ignore[assignment]
    return encode(top)


# --- choose_piece_length ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1, 16 * KIB),
        (2_684_355, 16 * KIB),
        (2_684_356, 32 * KIB),
        (100 * 1024 * KIB, 128 * KIB),
        (2**30, 512 * KIB),
        (2**40, 16 * 1024 * KIB),
        (5 * 2**40, 16 * 1024 * KIB),
        (2**60, MAX_AUTO_PIECE_LENGTH),
    ],
)
def test_choose_piece_length(size: int, expected: int) -> None:
    assert choose_piece_length(size) == expected


def test_chosen_piece_lengths_are_valid_and_grow_with_size() -> None:
    sizes = sorted(random.Random(1).sample(range(1, 2**44), 200))
    lengths = [choose_piece_length(s) for s in sizes]
    assert lengths == sorted(lengths)
    assert all(validate_piece_length(n) == n for n in lengths)
    assert all(MIN_PIECE_LENGTH <= n <= MAX_AUTO_PIECE_LENGTH for n in lengths)


@pytest.mark.parametrize("size", [0, -1, True])
def test_choose_piece_length_needs_a_positive_size(size: int) -> None:
    with pytest.raises(InvalidTorrent, match="cannot choose a piece length"):
        choose_piece_length(size)


def test_validate_piece_length_carries_the_value() -> None:
    with pytest.raises(
        InvalidPieceLength,
        match=r"^piece length must be a power of two of at least 16384 bytes: 12345$",
    ):
        validate_piece_length(12345)


# --- build_torrent ------------------------------------------------------------------------


@pytest.mark.parametrize("version", list(MetaVersion))
def test_build_and_read_back(version: MetaVersion) -> None:
    torrent = make(
        version,
        trackers=(("http://a/announce", "http://b/announce"), ("udp://c:80",)),
        web_seeds=("https://bucket.s3.amazonaws.com/dir/",),
        private=True,
        source="s3",
        comment="made for a test",
        creation_date=1_700_000_000,
    )
    again = read_torrent(torrent.data)
    assert again == torrent
    assert again.meta_version is version
    assert (again.info_hash_v1 is None) == (version is MetaVersion.V2)
    assert (again.info_hash_v2 is None) == (version is MetaVersion.V1)
    if torrent.info_hash_v1:
        assert torrent.info_hash_v1 == hashlib.sha1(torrent.info).hexdigest()
    if torrent.info_hash_v2:
        assert torrent.info_hash_v2 == hashlib.sha256(torrent.info).hexdigest()
    assert torrent.info in torrent.data


def test_minimal_v1_torrent_has_only_what_was_asked() -> None:
    torrent = make(created_by=None)
    top = decode(torrent.data)
    assert isinstance(top, dict)
    assert list(top) == [b"info"]
    info = decode(torrent.info)
    assert isinstance(info, dict)
    assert list(info) == [b"length", b"name", b"piece length", b"pieces"]


def test_private_false_writes_no_private_key() -> None:
    # BEP 27: `private: 0` would change the info hash for nothing.
    info = decode(make(private=False).info)
    assert isinstance(info, dict)
    assert b"private" not in info
    private_info = decode(make(private=True).info)
    assert isinstance(private_info, dict)
    assert private_info[b"private"] == 1


def test_created_by_defaults_to_s3torrent_and_no_date() -> None:
    top = decode(make().data)
    assert isinstance(top, dict)
    assert top[b"created by"] == b"s3torrent"
    assert b"creation date" not in top


def test_output_is_reproducible() -> None:
    assert make(MetaVersion.HYBRID).data == make(MetaVersion.HYBRID).data


def test_source_changes_the_info_hash() -> None:
    assert make(source="a").info_hash_v1 != make(source="b").info_hash_v1


def test_trackers_and_web_seeds_shape() -> None:
    one = decode(make(trackers=(("http://t/",),), web_seeds=("http://s/",)).data)
    assert isinstance(one, dict)
    assert one[b"announce"] == b"http://t/"
    assert b"announce-list" not in one
    assert one[b"url-list"] == b"http://s/"
    many = decode(make(trackers=(("http://t/",), ("http://u/",)), web_seeds=("a", "b")).data)
    assert isinstance(many, dict)
    assert many[b"announce"] == b"http://t/"
    assert many[b"announce-list"] == [[b"http://t/"], [b"http://u/"]]
    assert many[b"url-list"] == [b"a", b"b"]


@pytest.mark.parametrize("version", [MetaVersion.V2, MetaVersion.HYBRID])
def test_piece_layers_only_for_files_larger_than_a_piece(version: MetaVersion) -> None:
    small = decode(make(version, size=16 * KIB).data)
    assert isinstance(small, dict)
    assert small[b"piece layers"] == {}
    exact = decode(make(version, size=32 * KIB, piece_length=32 * KIB).data)
    assert isinstance(exact, dict)
    assert exact[b"piece layers"] == {}
    big = make(version, size=32 * KIB + 1)
    layers = decode(big.data)
    assert isinstance(layers, dict)
    assert layers[b"piece layers"] == {big.v2_pieces_root: big.v2_piece_layer}


@pytest.mark.parametrize("name", ["", "a/b", "/", ".", "..", "nul\x00byte"])
def test_build_rejects_names_that_are_not_one_path_segment(name: str) -> None:
    hashes = hash_bytes(b"x", 16 * KIB, MetaVersion.V1)
    with pytest.raises(InvalidTorrent, match="torrent name must"):
        build_torrent(name, hashes, TorrentOptions())


def test_build_accepts_unicode_and_spaces_in_names() -> None:
    hashes = hash_bytes(b"x", 16 * KIB, MetaVersion.V2)
    torrent = build_torrent("résumé final.pdf", hashes, TorrentOptions(MetaVersion.V2))
    assert read_torrent(torrent.data).name == "résumé final.pdf"


def test_build_rejects_mismatched_piece_length() -> None:
    hashes = hash_bytes(b"x", 16 * KIB, MetaVersion.V1)
    with pytest.raises(InvalidTorrent, match="piece length 32768 asked, content hashed with 16384"):
        build_torrent("a", hashes, TorrentOptions(piece_length=32 * KIB))


def test_build_rejects_hashes_of_the_wrong_version() -> None:
    v1 = hash_bytes(b"x", 16 * KIB, MetaVersion.V1)
    with pytest.raises(InvalidTorrent, match="meta version 2 needs v2 piece hashes"):
        build_torrent("a", v1, TorrentOptions(MetaVersion.V2))
    # A hybrid hash serves any version.
    hybrid = hash_bytes(b"x", 16 * KIB, MetaVersion.HYBRID)
    for version in MetaVersion:
        assert build_torrent("a", hybrid, TorrentOptions(version)).meta_version is version


def test_build_rejects_empty_content_and_bad_tracker_tiers() -> None:
    empty = PieceHashes(0, 16 * KIB, MetaVersion.V1, b"", None, None)
    with pytest.raises(InvalidTorrent, match="at least one byte"):
        build_torrent("a", empty, TorrentOptions())
    hashes = hash_bytes(b"x", 16 * KIB, MetaVersion.V1)
    with pytest.raises(InvalidTorrent, match="tracker tiers"):
        build_torrent("a", hashes, TorrentOptions(trackers=((),)))
    with pytest.raises(InvalidTorrent, match="tracker tiers"):
        build_torrent("a", hashes, TorrentOptions(trackers=(("",),)))
    with pytest.raises(InvalidTorrent, match="web seeds"):
        build_torrent("a", hashes, TorrentOptions(web_seeds=("",)))


@pytest.mark.parametrize(
    ("key", "name"),
    [("a.bin", "a.bin"), ("dir/sub/a b.bin", "a b.bin"), ("x//y", "y"), ("é/ü", "ü")],
)
def test_torrent_name_for_key(key: str, name: str) -> None:
    assert torrent_name_for_key(key) == name


@pytest.mark.parametrize("key", ["", "dir/", "a/.."])
def test_torrent_name_for_key_rejects_keys_without_a_name(key: str) -> None:
    with pytest.raises(InvalidTorrent, match="torrent name must"):
        torrent_name_for_key(key)


def test_piece_accessors() -> None:
    torrent = make(size=40_000)
    assert torrent.num_pieces == 3
    assert [torrent.piece_size(i) for i in range(3)] == [16 * KIB, 16 * KIB, 40_000 - 32 * KIB]
    assert torrent.v1_piece_hash(2) == hashlib.sha1(DATA[32 * KIB : 40_000]).digest()
    with pytest.raises(IndexError):
        torrent.piece_size(3)
    with pytest.raises(InvalidTorrent, match="v2-only"):
        make(MetaVersion.V2).v1_piece_hash(0)


# --- read_torrent -------------------------------------------------------------------------


def set_in(key: bytes, value: object) -> object:
    def mutate(info: dict[bytes, object]) -> None:
        if value is None:
            del info[key]
        else:
            info[key] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (set_in(b"pieces", b"x" * 21), "info.pieces must be a multiple of 20 bytes long: 21"),
        (set_in(b"pieces", b"x" * 20), "info.pieces holds 1 hashes, a length of 200000"),
        (set_in(b"pieces", 5), "info.pieces must be a byte string: int"),
        (set_in(b"length", 0), "info.length must be positive: 0"),
        (set_in(b"length", b"1"), "info.length must be an integer"),
        (set_in(b"piece length", 12345), "power of two of at least 16384 bytes: 12345"),
        (set_in(b"piece length", 8192), "power of two of at least 16384 bytes: 8192"),
        (set_in(b"name", None), "info.name must be a string"),
        (set_in(b"name", b""), "info.name is empty"),
        (set_in(b"name", b"\xff"), "info.name is not UTF-8"),
        (set_in(b"pieces", None), "neither pieces"),
        (
            set_in(b"files", [{b"length": 1, b"path": [b"a"]}]),
            "multi-file torrents are not supported",
        ),
        (set_in(b"private", b"1"), "info.private must be an integer"),
    ],
)
def test_read_rejects_bad_v1_info(mutate: object, message: str) -> None:
    with pytest.raises(InvalidTorrent, match=message):
        read_torrent(reencode(make(), mutate))


def tree_of(length: int, root: bytes, name: bytes = b"object.bin") -> dict[bytes, object]:
    return {name: {b"": {b"length": length, b"pieces root": root}}}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (set_in(b"meta version", 3), "unsupported info.meta version: 3"),
        (set_in(b"file tree", {}), "file tree is missing or empty"),
        (
            set_in(b"file tree", {**tree_of(1, bytes(32)), **tree_of(1, bytes(32), b"other")}),
            "multi-file torrents are not supported",
        ),
        (
            set_in(b"file tree", {b"dir": tree_of(1, bytes(32))}),
            "multi-file torrents are not supported",
        ),
        (set_in(b"file tree", tree_of(200_000, bytes(32), b"x")), "differs from info.name"),
        (set_in(b"file tree", tree_of(200_000, bytes(31))), "pieces root must be 32 bytes: 31"),
        (set_in(b"file tree", tree_of(0, bytes(32))), "file tree length must be positive: 0"),
        (set_in(b"file tree", tree_of(200_000, bytes(32))), "piece layers are missing"),
        (set_in(b"length", 199_999), "info.length 199999 differs from the file tree's 200000"),
    ],
)
def test_read_rejects_bad_v2_info(mutate: object, message: str) -> None:
    with pytest.raises(InvalidTorrent, match=message):
        read_torrent(reencode(make(MetaVersion.HYBRID), mutate))


def test_read_rejects_bad_piece_layers() -> None:
    torrent = make(MetaVersion.V2)
    root = torrent.v2_pieces_root
    layer = torrent.v2_piece_layer
    assert root is not None and layer is not None
    short = reencode(torrent, piece_layers={root: layer[:-32]})
    with pytest.raises(InvalidTorrent, match="piece layer must be 13 hashes of 32 bytes"):
        read_torrent(short)
    wrong = reencode(torrent, piece_layers={root: bytes(32) + layer[32:]})
    with pytest.raises(InvalidTorrent, match="piece layer does not hash to the pieces root"):
        read_torrent(wrong)
    missing = reencode(torrent, piece_layers=None)
    with pytest.raises(InvalidTorrent, match="piece layers are missing"):
        read_torrent(missing)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a torrent: offset 0: truncated input"),
        (b"i1e", "the top level is not a dict"),
        (b"de", "no info dict"),
        (b"d4:infoi1ee", "no info dict"),
        (b"d4:infod4:name1:aee junk", "not a torrent: trailing data"),
        (b"<Error><Code>NoSuchKey</Code></Error>", "not a torrent"),
    ],
)
def test_read_rejects_what_is_not_a_torrent(data: bytes, message: str) -> None:
    with pytest.raises(InvalidTorrent, match=message):
        read_torrent(data)


def test_read_takes_the_info_hash_from_the_raw_bytes() -> None:
    # radosgw-style: top-level keys out of order, extra keys; the name is the whole key.
    pieces = b"".join(
        hashlib.sha1(DATA[i : i + 512 * KIB]).digest() for i in range(0, len(DATA), 512 * KIB)
    )
    info = (
        b"d6:lengthi200000e4:name14:dir/object.bin12:piece lengthi524288e6:pieces20:"
        + pieces
        + b"e"
    )
    data = (
        b"d8:announce17:http://tracker/an13:announce-listll17:http://tracker/anee"
        b"10:created by3:rgw8:encoding5:UTF-813:creation datei1700000000e4:info" + info + b"e"
    )
    torrent = read_torrent(data)
    assert torrent.name == "dir/object.bin"
    assert torrent.info == info
    assert torrent.info_hash_v1 == hashlib.sha1(info).hexdigest()
    assert torrent.trackers == (("http://tracker/an",),)
    assert torrent.created_by == "rgw"
    assert torrent.creation_date == 1_700_000_000
    assert torrent.v1_pieces == pieces
    assert torrent.meta_version is MetaVersion.V1


def test_read_accepts_a_single_url_list_string_and_private() -> None:
    torrent = make(web_seeds=("http://one/",), private=True)
    again = read_torrent(torrent.data)
    assert again.web_seeds == ("http://one/",)
    assert again.private


@pytest.mark.parametrize("version", list(MetaVersion))
@pytest.mark.parametrize("size", [1, 16 * KIB, 100_000, 200_000])
def test_read_accepts_libtorrents_output(tmp_path: Path, version: MetaVersion, size: int) -> None:
    path = tmp_path / "object.bin"
    path.write_bytes(DATA[:size])
    flags = {
        MetaVersion.V1: lt.create_torrent.v1_only,
        MetaVersion.V2: lt.create_torrent.v2_only,
        MetaVersion.HYBRID: 0,
    }[version]
    ct = lt.create_torrent(lt.list_files(str(path)), 32 * KIB, flags)
    ct.add_tracker("http://tracker/announce", 0)
    ct.add_url_seed("http://seed/")
    ct.set_creator("libtorrent")
    lt.set_piece_hashes(ct, str(tmp_path))
    data = bytes(lt.bencode(ct.generate()))
    info = lt.torrent_info(data)
    torrent = read_torrent(data)
    assert torrent.meta_version is version
    assert torrent.length == size
    assert torrent.name == "object.bin"
    assert torrent.trackers == (("http://tracker/announce",),)
    assert torrent.web_seeds == ("http://seed/",)
    assert torrent.created_by == "libtorrent"
    if version.has_v1:
        assert torrent.info_hash_v1 == str(info.info_hashes().v1)
    if version.has_v2:
        assert torrent.info_hash_v2 == str(info.info_hashes().v2)
    ours = build_torrent(
        "object.bin",
        hash_bytes(DATA[:size], 32 * KIB, version),
        TorrentOptions(meta_version=version),
    )
    assert (torrent.info_hash_v1, torrent.info_hash_v2) == (ours.info_hash_v1, ours.info_hash_v2)
    assert torrent.v1_pieces == ours.v1_pieces
    assert torrent.v2_piece_layer == ours.v2_piece_layer
