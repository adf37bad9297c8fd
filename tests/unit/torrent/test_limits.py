"""What libtorrent loads (limits.py), and piece lengths that keep every torrent within it.

Each limit is first shown on the libtorrent wheel itself, then the engine's rules are checked
as functions of the size: the automatic piece length is libtorrent's wherever that torrent
fits, grows only where it would not, and what fits at no piece length is refused before any
byte is hashed.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest

from s3torrent.torrent import (
    CollectionFile,
    InvalidPieceLength,
    MetaVersion,
    TorrentOptions,
    TorrentTooLarge,
    build_collection_torrent,
    build_torrent,
    choose_collection_piece_length,
    choose_piece_length,
    collection_torrent_size,
    fit_piece_length,
    hash_bytes,
    hash_collection_file,
    torrent_size,
)
from s3torrent.torrent.limits import (
    MAX_BENCODE_DEPTH,
    MAX_FILE_SIZE,
    MAX_PIECE_LENGTH,
    MAX_TORRENT_SIZE,
    MAX_V2_PATH_SEGMENTS,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import libtorrent as lt

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KIB = 1024
MIB = 1024 * KIB
NAME = "object.bin"


def options(version: MetaVersion, **more: object) -> TorrentOptions:
    return TorrentOptions(meta_version=version, **more)  # type: ignore[arg-type]


# --- libtorrent's own limits ------------------------------------------------------------------


def test_libtorrent_loads_a_torrent_file_of_10_000_000_bytes_and_no_more(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(40_000)
    hashes = hash_bytes(data, 16 * KIB, MetaVersion.V1)
    base = torrent_size(NAME, len(data), 16 * KIB, options(MetaVersion.V1, comment=""))
    for target in (MAX_TORRENT_SIZE, MAX_TORRENT_SIZE + 1):
        # Grow a comment until the file is exactly `target` bytes (its length prefix grows too).
        comment = "c" * (target - base - 10)
        while (
            torrent_size(NAME, len(data), 16 * KIB, options(MetaVersion.V1, comment=comment))
            < target
        ):
            comment += "c"
        torrent = build_torrent(NAME, hashes, options(MetaVersion.V1, comment=comment))
        assert len(torrent.data) == target
        path = tmp_path / f"{target}.torrent"
        path.write_bytes(torrent.data)
        if target <= MAX_TORRENT_SIZE:
            lt.torrent_info(str(path))
        else:
            with pytest.raises(RuntimeError, match="metadata too large"):
                lt.torrent_info(str(path))
        lt.torrent_info(torrent.data)  # the same bytes load from memory


def test_libtorrent_piece_and_file_size_limits() -> None:
    files = lt.file_storage()
    files.add_file("a", MAX_FILE_SIZE)
    with pytest.raises(RuntimeError, match="File too large"):
        lt.file_storage().add_file("a", MAX_FILE_SIZE + 1)
    lt.create_torrent(files, MAX_PIECE_LENGTH, 0)
    with pytest.raises(RuntimeError, match="invalid piece size"):
        lt.create_torrent(files, 2 * MAX_PIECE_LENGTH, 0)


# --- single files -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", list(MetaVersion))
@pytest.mark.parametrize("size", [1, 16 * KIB, 16 * KIB + 1, 3 * MIB + 12_345, 40 * MIB + 3])
def test_torrent_size_is_the_size_written(version: MetaVersion, size: int) -> None:
    data = random.Random(size).randbytes(size)
    for piece_length in (16 * KIB, 64 * KIB, 4 * MIB):
        opts = options(
            version,
            trackers=(("http://t/a", "udp://u:1"),),
            web_seeds=("http://s/",),
            comment="ü",
            private=True,
            creation_date=1_700_000_000,
            source="src",
        )
        built = build_torrent(NAME, hash_bytes(data, piece_length, version), opts)
        assert torrent_size(NAME, size, piece_length, opts) == len(built.data)


def _threshold(version: MetaVersion, piece_length: int) -> int:
    """The largest size whose torrent at `piece_length` is at most 10,000,000 bytes."""
    low, high = 1, MAX_FILE_SIZE
    while high - low > 1:
        middle = (low + high) // 2
        if torrent_size(NAME, middle, piece_length, options(version)) <= MAX_TORRENT_SIZE:
            low = middle
        else:
            high = middle
    return low


@pytest.mark.parametrize("version", list(MetaVersion))
def test_automatic_piece_length_grows_exactly_where_the_torrent_would_not_fit(
    version: MetaVersion,
) -> None:
    opts = options(version)
    edge = _threshold(version, 16 * MIB)
    assert fit_piece_length(NAME, edge, opts) == choose_piece_length(edge) == 16 * MIB
    assert fit_piece_length(NAME, edge + 1, opts) == 32 * MIB
    assert torrent_size(NAME, edge + 1, 16 * MIB, opts) > MAX_TORRENT_SIZE
    if version is MetaVersion.HYBRID:  # only hybrid needs 128 MiB pieces below 2**44 bytes
        edge = _threshold(version, 64 * MIB)
        assert fit_piece_length(NAME, edge, opts) == 64 * MIB
        assert fit_piece_length(NAME, edge + 1, opts) == 128 * MIB
    # The largest file libtorrent takes fits every format; one byte more is refused.
    assert torrent_size(NAME, MAX_FILE_SIZE, fit_piece_length(NAME, MAX_FILE_SIZE, opts), opts) <= (
        MAX_TORRENT_SIZE
    )
    with pytest.raises(TorrentTooLarge, match=f"{MAX_FILE_SIZE + 1} bytes") as error:
        fit_piece_length(NAME, MAX_FILE_SIZE + 1, opts)
    assert error.value.size == MAX_FILE_SIZE + 1


SIZES = sorted(
    {
        *(1, 2**20, 2**30, 2**40, 3 * 2**40, 2**43, MAX_FILE_SIZE),
        *random.Random(11).sample(range(1, MAX_FILE_SIZE), 60),
        *(2**k + d for k in range(20, 44) for d in (-1, 0, 1)),
    }
)


@pytest.mark.parametrize("version", list(MetaVersion))
def test_automatic_piece_length_as_a_function_of_the_size(version: MetaVersion) -> None:
    opts = options(version)
    for size in SIZES:
        chosen = fit_piece_length(NAME, size, opts)
        rule = choose_piece_length(size)
        assert chosen <= MAX_PIECE_LENGTH
        assert torrent_size(NAME, size, chosen, opts) <= MAX_TORRENT_SIZE
        if torrent_size(NAME, size, rule, opts) <= MAX_TORRENT_SIZE:
            assert chosen == rule, size  # libtorrent's rule, unchanged where it fits
        else:
            assert chosen > rule
            assert torrent_size(NAME, size, chosen // 2, opts) > MAX_TORRENT_SIZE, size


def test_explicit_piece_lengths_are_checked_not_changed() -> None:
    assert fit_piece_length(NAME, 2**30, options(MetaVersion.V1, piece_length=64 * KIB)) == 64 * KIB
    with pytest.raises(TorrentTooLarge, match="pieces of 16384 bytes takes"):
        fit_piece_length(NAME, 2**40, options(MetaVersion.V1, piece_length=16 * KIB))
    with pytest.raises(InvalidPieceLength, match="at most 134217728"):
        fit_piece_length(NAME, 2**40, options(MetaVersion.V1, piece_length=256 * MIB))


# --- collections ------------------------------------------------------------------------------


def random_files(rng: random.Random, count: int, top: int) -> list[CollectionFile]:
    return [
        CollectionFile(
            (f"d{rng.randint(0, 3)}", f"f{i}.bin"), rng.choice([0, 1, rng.randint(1, top)])
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("version", list(MetaVersion))
def test_collection_piece_length_is_libtorrents_rule_on_the_total(version: MetaVersion) -> None:
    rng = random.Random(str(version))
    checked = 0
    for _ in range(40):
        files = random_files(rng, rng.randint(1, 8), rng.choice([2**20, 2**32, 2**40]))
        if not any(f.length for f in files):
            continue
        storage = lt.file_storage()
        for file in files:
            storage.add_file("/".join(("set", *file.path)), file.length)
        flags = {
            MetaVersion.V1: lt.create_torrent.v1_only,
            MetaVersion.V2: lt.create_torrent.v2_only,
        }
        expected = lt.create_torrent(storage, 0, flags.get(version, 0)).piece_length()
        chosen = choose_collection_piece_length("set", files, options(version))
        if collection_torrent_size("set", files, expected, options(version)).loads:
            assert chosen == expected
            checked += 1
        else:  # libtorrent's own torrent would be over 10 MB
            assert chosen > expected
    assert checked > 20


@pytest.mark.parametrize("version", list(MetaVersion))
def test_collection_piece_length_grows_where_the_torrent_would_not_fit(
    version: MetaVersion,
) -> None:
    opts = options(version)
    small = CollectionFile(("small",), 5)

    def files_of(size: int) -> list[CollectionFile]:
        return [CollectionFile(("big",), size), small]

    low, high = 1, MAX_FILE_SIZE
    while high - low > 1:
        middle = (low + high) // 2
        fits = collection_torrent_size("set", files_of(middle), 16 * MIB, opts).loads
        low, high = (middle, high) if fits else (low, middle)
    assert choose_collection_piece_length("set", files_of(low), opts) == 16 * MIB
    assert choose_collection_piece_length("set", files_of(low + 1), opts) == 32 * MIB
    with pytest.raises(TorrentTooLarge, match="larger than libtorrent-based clients load"):
        choose_collection_piece_length("set", files_of(MAX_FILE_SIZE + 1), opts)


def test_collections_too_large_at_any_piece_length_are_refused_before_hashing() -> None:
    # 16,000 files of long names: over 10 MB of paths alone (v1 list and v2 tree).
    files = [CollectionFile(("x" * 200, f"{i:06d}" + "y" * 200), 1) for i in range(16_000)]
    with pytest.raises(TorrentTooLarge, match=r"pieces of 134217728 bytes takes \d+ bytes"):
        choose_collection_piece_length("set", files, options(MetaVersion.HYBRID))
    with pytest.raises(TorrentTooLarge, match="pieces of 16384 bytes"):
        choose_collection_piece_length(
            "set",
            files[:10],
            options(MetaVersion.V1, piece_length=16 * KIB, comment="c" * MAX_TORRENT_SIZE),
        )


def test_collections_over_the_item_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # 375,000 one-byte files would reach libtorrent's 3,000,000 items; the count itself is
    # checked against libtorrent in test_golden_collections.py, the refusal here at scale 1/1000.
    monkeypatch.setattr("s3torrent.torrent.collection.MAX_BENCODE_ITEMS", 3_000)
    files = [CollectionFile((f"{i:x}",), 1) for i in range(375)]
    assert collection_torrent_size("s", files, 16 * KIB, options(MetaVersion.V1)).items == 3_014
    with pytest.raises(TorrentTooLarge, match="3014 bencode items"):
        choose_collection_piece_length("s", files, options(MetaVersion.V1))
    assert choose_collection_piece_length("s", files[:370], options(MetaVersion.V1)) == 16 * KIB


def test_v2_file_trees_at_most_95_folders_deep() -> None:
    def deep(segments: int) -> list[CollectionFile]:
        return [CollectionFile(tuple("d" * segments), 5), CollectionFile(("top",), 1)]

    for version in (MetaVersion.V2, MetaVersion.HYBRID):
        opts = options(version)
        assert (
            collection_torrent_size("s", deep(MAX_V2_PATH_SEGMENTS), 16 * KIB, opts).depth
            == MAX_BENCODE_DEPTH
        )
        for segments in (MAX_V2_PATH_SEGMENTS, MAX_V2_PATH_SEGMENTS + 1):
            files = deep(segments)
            hashes = [hash_collection_file(bytes(f.length), 16 * KIB, version) for f in files]
            data = build_collection_torrent(
                "s", files, opts, piece_length=16 * KIB, file_hashes=hashes
            ).data
            if segments <= MAX_V2_PATH_SEGMENTS:
                lt.torrent_info(data)
                assert choose_collection_piece_length("s", files, opts) == 16 * KIB
            else:
                with pytest.raises(RuntimeError, match="nesting depth exceeded"):
                    lt.torrent_info(data)
                with pytest.raises(TorrentTooLarge, match="100 levels of nesting"):
                    choose_collection_piece_length("s", files, opts)
    # v1 lists paths flat: any depth loads.
    assert choose_collection_piece_length("s", deep(200), options(MetaVersion.V1)) == 16 * KIB
