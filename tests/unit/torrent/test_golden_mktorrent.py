"""Golden tests: our v1 info dicts against mktorrent's, generated at test time.

    mktorrent -l <log2 piece length> -d -o out.torrent object.bin

(-d leaves the creation date out). mktorrent writes v1 torrents only, adds `created by`
at the top level, and refuses piece lengths under 32 KiB (`-l` must be 15..28), so the
16 KiB case is left out of this reference (libtorrent's golden test covers it).
CI installs mktorrent; a missing mktorrent fails these tests instead of skipping them.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from s3torrent.torrent import TorrentOptions, build_torrent, read_torrent
from s3torrent.torrent.bencode import decode, dict_spans
from s3torrent.torrent.hashing import MetaVersion, hash_bytes
from tests.support.references import boundary_sizes as sizes_for

KIB = 1024
MIB = 1024 * KIB
PIECE_LENGTHS = (32 * KIB, 256 * KIB, 1 * MIB)  # mktorrent: no pieces under 32 KiB


CASES = [
    pytest.param(size, piece_length, id=f"{size}-{piece_length // KIB}k")
    for piece_length in PIECE_LENGTHS
    for size in sizes_for(piece_length)
]

_CONTENT = random.Random(20261102).randbytes(3 * MIB + 12_345)


@pytest.fixture(scope="module")
def mktorrent() -> str:
    path = shutil.which("mktorrent")
    if path is None:
        pytest.fail("mktorrent is not installed: `apt-get install mktorrent` (CI installs it)")
    return path


def run_mktorrent(mktorrent: str, folder: Path, size: int, piece_length: int, *args: str) -> bytes:
    source = folder / "object.bin"
    source.write_bytes(_CONTENT[:size])
    out = folder / "out.torrent"
    log2_piece = str(piece_length.bit_length() - 1)
    subprocess.run(
        [mktorrent, "-l", log2_piece, "-d", "-t", "1", *args, "-o", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


@pytest.mark.parametrize(("size", "piece_length"), CASES)
def test_info_dict_is_mktorrents(
    mktorrent: str, tmp_path: Path, size: int, piece_length: int
) -> None:
    reference = run_mktorrent(mktorrent, tmp_path, size, piece_length)
    start, end = dict_spans(reference)[b"info"]
    ours = build_torrent(
        "object.bin", hash_bytes(_CONTENT[:size], piece_length, MetaVersion.V1), TorrentOptions()
    )
    assert ours.info == reference[start:end]
    assert read_torrent(reference).info_hash_v1 == ours.info_hash_v1


def test_private_and_source_sit_in_the_info_dict_as_mktorrents(
    mktorrent: str, tmp_path: Path
) -> None:
    size = 100_000
    reference = run_mktorrent(
        mktorrent, tmp_path, size, 32 * KIB, "-p", "-s", "SRC", "-a", "http://t1/", "-a", "udp://t2"
    )
    ours = build_torrent(
        "object.bin",
        hash_bytes(_CONTENT[:size], 32 * KIB, MetaVersion.V1),
        TorrentOptions(
            private=True, source="SRC", trackers=(("http://t1/",), ("udp://t2",)), created_by=None
        ),
    )
    start, end = dict_spans(reference)[b"info"]
    assert ours.info == reference[start:end]
    expected = decode(reference)
    assert isinstance(expected, dict)
    del expected[b"created by"]
    assert decode(ours.data) == expected
