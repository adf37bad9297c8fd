"""Golden tests: our torrents against libtorrent's, generated at test time.

The reference is made with the venv's libtorrent wheel the way its own tools make one:

    ct = lt.create_torrent(lt.list_files(path), piece_length, flags)  # v1_only / v2_only / 0
    lt.set_piece_hashes(ct, folder)
    lt.bencode(ct.generate())

and our info dict must be byte-identical to libtorrent's, nothing stripped. libtorrent must
also load our .torrent (it checks every piece layer against its pieces root) and report
the same info hashes.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import pytest

from s3torrent.torrent.bencode import decode, dict_spans
from s3torrent.torrent.hashing import MetaVersion, hash_bytes
from s3torrent.torrent.metainfo import Torrent, TorrentOptions, build_torrent, choose_piece_length
from tests.support.references import boundary_sizes as sizes_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import libtorrent as lt

# torrent_info.files()/trackers()/web_seeds() are deprecated in the 2.1 wheel but are the
# only readers the Debian 2.0.8 binding shares with it.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KIB = 1024
MIB = 1024 * KIB
PIECE_LENGTHS = (16 * KIB, 32 * KIB, 256 * KIB, 1 * MIB)

FLAGS = {
    MetaVersion.V1: lt.create_torrent.v1_only,
    MetaVersion.V2: lt.create_torrent.v2_only,
    MetaVersion.HYBRID: 0,
}


CASES = [
    pytest.param(size, piece_length, id=f"{size}-{piece_length // KIB}k")
    for piece_length in PIECE_LENGTHS
    for size in sizes_for(piece_length)
]

_CONTENT = random.Random(20261101).randbytes(max(size for size, _ in (c.values for c in CASES)))


@pytest.fixture(scope="module")
def content_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("golden-libtorrent")


def write_content(folder: Path, size: int) -> Path:
    path = folder / str(size) / "object.bin"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(_CONTENT[:size])
    return path


def libtorrent_torrent(
    path: Path,
    piece_length: int,
    version: MetaVersion,
    configure: Any = None,
) -> bytes:
    ct = lt.create_torrent(lt.list_files(str(path)), piece_length, FLAGS[version])
    if configure is not None:
        configure(ct)
    lt.set_piece_hashes(ct, str(path.parent))
    return bytes(lt.bencode(ct.generate()))


def raw_info(data: bytes) -> bytes:
    start, end = dict_spans(data)[b"info"]
    return data[start:end]


def load_in_libtorrent(torrent: Torrent) -> Any:
    info = lt.torrent_info(torrent.data)
    hashes = info.info_hashes()
    if torrent.info_hash_v1 is not None:
        assert hashes.has_v1()
        assert str(hashes.v1) == torrent.info_hash_v1
    else:
        assert not hashes.has_v1()
    if torrent.info_hash_v2 is not None:
        assert hashes.has_v2()
        assert str(hashes.v2) == torrent.info_hash_v2
    else:
        assert not hashes.has_v2()
    # total_size() counts the pad file libtorrent appends to v2 torrents internally: the
    # first file is the object.
    assert info.files().file_size(0) == torrent.length
    assert info.files().file_name(0) == torrent.name
    assert info.piece_length() == torrent.piece_length
    assert info.num_pieces() == torrent.num_pieces
    return info


@pytest.mark.parametrize("version", list(MetaVersion))
@pytest.mark.parametrize(("size", "piece_length"), CASES)
def test_info_dict_is_libtorrents(
    content_dir: Path, size: int, piece_length: int, version: MetaVersion
) -> None:
    path = write_content(content_dir, size)
    reference = libtorrent_torrent(path, piece_length, version)
    ours = build_torrent(
        "object.bin",
        hash_bytes(_CONTENT[:size], piece_length, version),
        TorrentOptions(meta_version=version, created_by=None),
    )
    assert ours.info == raw_info(reference)
    assert raw_info(ours.data) == ours.info
    # libtorrent adds only a creation date at the top level: with it, the whole files agree,
    # piece layers included.
    expected = decode(reference)
    assert isinstance(expected, dict)
    expected.pop(b"creation date")
    assert decode(ours.data) == expected
    load_in_libtorrent(ours)


def test_options_match_libtorrents_top_level(content_dir: Path) -> None:
    path = write_content(content_dir, 3 * MIB + 12_345)

    def configure(ct: Any) -> None:
        ct.add_tracker("http://tracker.example/announce", 0)
        ct.add_tracker("udp://backup.example:6969", 0)
        ct.add_tracker("http://tier2.example/a?x=1&y=2", 1)
        ct.add_url_seed("http://seed-a.example/bucket/")
        ct.add_url_seed("http://seed-b.example/bucket/")
        ct.set_priv(True)
        ct.set_comment("a comment")
        ct.set_creator("s3torrent test")

    for version in MetaVersion:
        reference = libtorrent_torrent(path, 256 * KIB, version, configure)
        decoded = decode(reference)
        assert isinstance(decoded, dict)
        creation_date = decoded[b"creation date"]
        assert isinstance(creation_date, int)
        ours = build_torrent(
            "object.bin",
            hash_bytes(path.read_bytes(), 256 * KIB, version),
            TorrentOptions(
                meta_version=version,
                trackers=(
                    ("http://tracker.example/announce", "udp://backup.example:6969"),
                    ("http://tier2.example/a?x=1&y=2",),
                ),
                web_seeds=("http://seed-a.example/bucket/", "http://seed-b.example/bucket/"),
                private=True,
                comment="a comment",
                created_by="s3torrent test",
                creation_date=creation_date,
            ),
        )
        assert ours.data == reference, version
        info = load_in_libtorrent(ours)
        assert info.priv()
        assert [t.url for t in info.trackers()] == [
            "http://tracker.example/announce",
            "udp://backup.example:6969",
            "http://tier2.example/a?x=1&y=2",
        ]
        assert [t.tier for t in info.trackers()] == [0, 0, 1]


@pytest.mark.parametrize("seeds", [("http://only.example/b/",), ("http://a/", "http://b/")])
def test_web_seed_shape_matches_libtorrent(content_dir: Path, seeds: tuple[str, ...]) -> None:
    # libtorrent writes one url-list entry as a string and several as a list: so do we.
    path = write_content(content_dir, 16 * KIB + 1)

    def configure(ct: Any) -> None:
        for seed in seeds:
            ct.add_url_seed(seed)
        ct.add_tracker("http://only-tracker.example/", 0)

    reference = decode(libtorrent_torrent(path, 16 * KIB, MetaVersion.V1, configure))
    assert isinstance(reference, dict)
    ours = build_torrent(
        "object.bin",
        hash_bytes(_CONTENT[: 16 * KIB + 1], 16 * KIB, MetaVersion.V1),
        TorrentOptions(
            web_seeds=seeds, trackers=(("http://only-tracker.example/",),), created_by=None
        ),
    )
    decoded = decode(ours.data)
    assert isinstance(decoded, dict)
    assert decoded[b"url-list"] == reference[b"url-list"]
    # One tracker: `announce` only, no `announce-list`, as libtorrent.
    assert decoded[b"announce"] == reference[b"announce"]
    assert b"announce-list" not in decoded
    assert b"announce-list" not in reference
    assert [w["url"] for w in load_in_libtorrent(ours).web_seeds()] == list(seeds)


def test_libtorrent_rejects_a_corrupted_piece_layer() -> None:
    # What makes "libtorrent loads it" evidence that our piece layers are right.
    data = _CONTENT[: 2 * 16 * KIB + 7]
    torrent = build_torrent(
        "object.bin", hash_bytes(data, 16 * KIB, MetaVersion.V2), TorrentOptions(MetaVersion.V2)
    )
    assert torrent.v2_piece_layer is not None
    corrupt = torrent.data.replace(torrent.v2_piece_layer, b"\x00" + torrent.v2_piece_layer[1:])
    assert corrupt != torrent.data
    with pytest.raises(RuntimeError, match="piece layer"):
        lt.torrent_info(corrupt)


@pytest.mark.parametrize(
    "size",
    [
        *(1, 2_684_355, 2_684_356, 10**8, 687_194_767, 687_194_768, 2**31, 10**12, 5 * 2**40),
        *random.Random(7).sample(range(1, 2**43), 40),
    ],
)
def test_automatic_piece_length_is_libtorrents(size: int) -> None:
    entry = lt.create_file_entry("object.bin", size)
    ct = lt.create_torrent([entry], 0, lt.create_torrent.v1_only)
    assert choose_piece_length(size) == ct.piece_length()
