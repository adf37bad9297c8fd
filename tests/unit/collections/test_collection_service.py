"""Collections against moto in-process: listing, hashing, writing, freshness, bad input.

The expected info hash of every collection comes from libtorrent itself (v1_only, the files
added in S3's listing order, `set_piece_hashes` over the same bytes on disk).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest

from s3torrent.collections import CollectionRef, Listing
from s3torrent.collections.listing import ARCHIVED
from s3torrent.errors import InvalidInput
from s3torrent.model import ListedObject, ListPage, Outcome, SkipReason
from s3torrent.s3.objects import S3Objects
from s3torrent.s3.reader import ReaderConfig
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.torrent import (
    CollectionFile,
    MetaVersion,
    TorrentError,
    TorrentOptions,
    choose_collection_piece_length,
)
from s3torrent.torrent import read_collection_torrent as read_collection
from s3torrent.torrent.bencode import decode
from tests.support.moto import BUCKET

pytestmark = pytest.mark.filterwarnings("ignore:create_torrent constructor:DeprecationWarning")

SMALL_READS = ReaderConfig(part_size=32 * 1024, window=3, backoff_base=0.0)
PIECE = 16 * 1024

# Awkward names on purpose: a space, `+`, non-ASCII, a sub-folder, a 0-byte file, and files
# shorter and longer than a piece so that pieces span files.
FILES = {
    "data/set1/a b+c.bin": bytes(range(256)) * 70,  # 17,920 bytes
    "data/set1/sub/ü.txt": b"unicode " * 1000,
    "data/set1/empty": b"",
    "data/set1/z.bin": b"\x07" * 5,
    "data/set1/big/x.bin": bytes(reversed(range(256))) * 300,
}


def service_for(client: Any, **values: Any) -> TorrentService:
    settings = Settings.from_mapping(
        {"buckets": [{"name": BUCKET}], "endpoint_url": "http://s3.test", **values}
    )
    return TorrentService(settings, S3Objects(client, reader=SMALL_READS))


def put_all(s3: Any, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)


def libtorrent_v1_hash(name: str, files: list[tuple[str, bytes]], piece_length: int) -> str:
    """libtorrent's v1 info hash for these (path, bytes) files, in this order."""
    v1, _ = libtorrent_hashes(name, files, piece_length, "1")
    assert v1 is not None
    return v1


def libtorrent_hashes(
    name: str, files: list[tuple[str, bytes]], piece_length: int, version: str
) -> tuple[str | None, str | None]:
    """libtorrent's (v1, v2) info hashes for these (path, bytes) files, added in this order
    (v2 and hybrid sort them themselves); None where the version has none."""
    flags = {"1": lt.create_torrent.v1_only, "2": lt.create_torrent.v2_only, "hybrid": 0}
    with tempfile.TemporaryDirectory() as folder:
        storage = lt.file_storage()
        for path, data in files:
            target = Path(folder) / name / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            storage.add_file(f"{name}/{path}", len(data))
        creator = lt.create_torrent(storage, piece_length, flags[version])
        lt.set_piece_hashes(creator, folder)
        hashes = lt.torrent_info(lt.bencode(creator.generate())).info_hashes()
    v1 = None if version == "2" else str(hashes.v1)
    return v1, None if version == "1" else str(hashes.v2)


def listed(files: dict[str, bytes], prefix: str) -> list[tuple[str, bytes]]:
    keys = sorted(files, key=lambda key: key.encode("utf-8"))  # S3's order
    return [(key[len(prefix) :], files[key]) for key in keys]


def test_a_collection_is_written_next_to_the_prefix_and_matches_libtorrent(s3: Any) -> None:
    put_all(s3, FILES)
    s3.put_object(Bucket=BUCKET, Key="data/set1/", Body=b"")  # a directory marker: not a file
    s3.put_object(Bucket=BUCKET, Key="data/set1/old.torrent", Body=b"d4:infodee")  # never one
    s3.put_object(Bucket=BUCKET, Key="data/set10/other.bin", Body=b"not ours")  # another prefix
    service = service_for(s3, piece_length=PIECE)
    result = service.make_collection(CollectionRef(BUCKET, "data/set1/"))
    assert result.outcome is Outcome.CREATED
    assert result.torrent_key == "data/set1.torrent"
    stored = s3.get_object(Bucket=BUCKET, Key="data/set1.torrent")
    data = stored["Body"].read()
    assert data == result.torrent_bytes
    assert stored["ContentType"] == "application/x-bittorrent"
    assert stored["Metadata"]["kind"] == "collection"
    assert stored["Metadata"]["files"] == "5"
    assert stored["Metadata"]["listing-digest"] == result.record.listing_digest  # type: ignore[union-attr]
    torrent = read_collection(data)
    assert torrent.name == "set1"
    expected = listed(FILES, "data/set1/")
    assert [("/".join(f.path), f.length) for f in torrent.files] == [
        (path, len(body)) for path, body in expected
    ]
    assert torrent.info_hash_v1 == libtorrent_v1_hash("set1", expected, PIECE)
    # BEP 19 multi-file: the prefix's parent folder, so clients append name/path.
    assert torrent.web_seeds == ("http://s3.test/bkt/data/",)
    assert result.counters.bytes_read == sum(len(body) for body in FILES.values())
    assert result.magnet and f"urn:btih:{torrent.info_hash_v1}" in result.magnet


def test_a_second_build_is_fresh_from_the_listing_and_a_change_rebuilds(s3: Any) -> None:
    put_all(s3, FILES)
    service = service_for(s3, piece_length=PIECE)
    ref = CollectionRef(BUCKET, "data/set1/")
    first = service.make_collection(ref)
    again = service.make_collection(ref)
    assert again.outcome is Outcome.FRESH
    assert again.counters.bytes_read == 0
    assert again.torrent_bytes == first.torrent_bytes
    s3.put_object(Bucket=BUCKET, Key="data/set1/z.bin", Body=b"changed")
    assert service.collections.describe(ref).outcome is Outcome.CHANGED
    rebuilt = service.make_collection(ref)
    assert rebuilt.outcome is Outcome.CREATED
    assert rebuilt.torrent_bytes != first.torrent_bytes
    assert service.collections.describe(ref).outcome is Outcome.FRESH


def test_explicit_options_that_differ_rebuild(s3: Any) -> None:
    put_all(s3, FILES)
    service = service_for(s3, piece_length=PIECE)
    ref = CollectionRef(BUCKET, "data/set1/")
    service.make_collection(ref)
    result = service.make_collection(
        ref, overrides={"comment": "hello", "piece_length": 32 * 1024}, match_options=True
    )
    assert result.outcome is Outcome.CREATED
    assert result.record is not None and result.record.piece_length == 32 * 1024
    top = decode(result.torrent_bytes or b"")
    assert isinstance(top, dict) and top[b"comment"] == b"hello"


def test_many_pages_are_listed(s3: Any) -> None:
    files = {f"many/p/{index:04d}.bin": bytes([index % 256]) * 3 for index in range(1100)}
    put_all(s3, files)
    result = service_for(s3).make_collection(CollectionRef(BUCKET, "many/p/"))
    assert result.outcome is Outcome.CREATED
    assert result.record is not None and result.record.files == 1100
    assert len(read_collection(result.torrent_bytes or b"").files) == 1100


def test_keys_that_are_not_paths_and_archived_members_are_left_out_with_a_reason(s3: Any) -> None:
    put_all(s3, {"odd/s/ok.bin": b"fine", "odd/s/a//b.bin": b"empty segment"})
    put_all(s3, {"odd/s/./dot.bin": b"dot", "odd/s/../up.bin": b"dot dot"})
    s3.put_object(Bucket=BUCKET, Key="odd/s/cold.bin", Body=b"c", StorageClass="GLACIER")
    result = service_for(s3).make_collection(CollectionRef(BUCKET, "odd/s/"))
    assert result.outcome is Outcome.CREATED
    reasons = {skip.key: skip.reason for skip in result.skipped}
    assert set(reasons) == {
        "odd/s/a//b.bin",
        "odd/s/./dot.bin",
        "odd/s/../up.bin",
        "odd/s/cold.bin",
    }
    assert "empty path segment" in reasons["odd/s/a//b.bin"]
    assert reasons["odd/s/cold.bin"] == ARCHIVED
    assert [f.path for f in read_collection(result.torrent_bytes or b"").files] == [("ok.bin",)]


def test_an_empty_prefix_is_a_clear_error(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="nothing/here/", Body=b"")
    with pytest.raises(InvalidInput, match=r"no object under this prefix.*directory marker"):
        service_for(s3).make_collection(CollectionRef(BUCKET, "nothing/here/"))


def test_only_empty_files_cannot_make_a_torrent(s3: Any) -> None:
    put_all(s3, {"zero/s/a": b"", "zero/s/b": b""})
    with pytest.raises(InvalidInput, match="at least one byte"):
        service_for(s3).make_collection(CollectionRef(BUCKET, "zero/s/"))


def test_a_prefix_outside_the_allowlist_is_refused_before_any_request(s3: Any) -> None:
    put_all(s3, FILES)
    service = service_for(s3, buckets=[{"name": BUCKET, "prefix": "public/"}])
    result = service.make_collection(CollectionRef(BUCKET, "data/set1/"))
    assert result.outcome is Outcome.SKIPPED
    assert result.skip_reason is SkipReason.OUTSIDE_SCOPE


def test_too_big_for_any_piece_length_fails_before_reading(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 20 TiB member (S3 holds objects up to 50 TB): no libtorrent-based client loads it.
    huge = ListedObject("huge/s/big.bin", 20 * 2**40, '"e"', datetime.now(UTC), None)
    monkeypatch.setattr(
        S3Objects, "list_page", lambda *args, **kwargs: ListPage(objects=(huge,), next_token=None)
    )
    service = service_for(s3, max_object_bytes=2**50)
    calls = Calls(s3)
    with pytest.raises(InvalidInput, match="larger than libtorrent-based clients load"):
        service.make_collection(CollectionRef(BUCKET, "huge/s/"))
    assert calls.counts["GetObject"] == 1  # the stored torrent's, never a member's
    # And a .torrent that would pass 10 MB at any piece length: refused from the lengths alone.
    files = [CollectionFile(("f",), 2**43)]
    with pytest.raises(TorrentError, match="libtorrent"):
        choose_collection_piece_length("s", files, TorrentOptions(piece_length=PIECE))


class Calls:
    """S3 operations the client makes from now on."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1


def test_over_the_callers_size_limit_is_skipped_as_too_large(s3: Any) -> None:
    put_all(s3, FILES)
    result = service_for(s3).make_collection(CollectionRef(BUCKET, "data/set1/"), max_bytes=100)
    assert result.outcome is Outcome.SKIPPED
    assert result.skip_reason is SkipReason.TOO_LARGE


def test_an_object_named_like_the_prefix_is_refused(s3: Any) -> None:
    put_all(s3, {**FILES, "data/set1": b"an object"})
    with pytest.raises(InvalidInput, match="is an object"):
        service_for(s3).make_collection(CollectionRef(BUCKET, "data/set1/"))


def test_a_member_changed_mid_build_writes_nothing(s3: Any) -> None:
    put_all(s3, FILES)
    service = service_for(s3, piece_length=PIECE)
    objects = service.objects
    real = objects.range_source
    changed: list[str] = []

    def overwrite_first(info: Any) -> Any:
        if not changed:
            changed.append(info.ref.key)
            s3.put_object(Bucket=BUCKET, Key=info.ref.key, Body=b"new bytes")
        return real(info)

    objects.range_source = overwrite_first  # type: ignore[method-assign]
    result = service.make_collection(CollectionRef(BUCKET, "data/set1/"))
    assert result.outcome is Outcome.CHANGED
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="data/set1.torrent")


def test_a_change_after_hashing_and_before_writing_writes_nothing(s3: Any) -> None:
    put_all(s3, FILES)
    service = service_for(s3, piece_length=PIECE)
    collections = service.collections
    real = collections.list
    calls: list[CollectionRef] = []

    def list_then_add(ref: CollectionRef, version: MetaVersion) -> Listing:
        calls.append(ref)
        if len(calls) == 2:  # the re-check before writing
            s3.put_object(Bucket=BUCKET, Key="data/set1/new.bin", Body=b"late")
        return real(ref, version)

    collections.list = list_then_add  # type: ignore[method-assign,assignment]
    result = service.make_collection(CollectionRef(BUCKET, "data/set1/"))
    assert result.outcome is Outcome.CHANGED
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="data/set1.torrent")


@pytest.mark.parametrize("prefix", ["", "/", "no-slash"])
def test_a_collection_needs_a_prefix_ending_in_a_slash(prefix: str) -> None:
    with pytest.raises(InvalidInput, match="prefix ending in '/'"):
        CollectionRef(BUCKET, prefix)


@pytest.mark.parametrize("version", ["2", "hybrid"])
def test_v2_and_hybrid_match_libtorrent(s3: Any, version: str) -> None:
    put_all(s3, FILES)
    result = service_for(s3, piece_length=PIECE).make_collection(
        CollectionRef(BUCKET, "data/set1/"), overrides={"meta_version": version}
    )
    assert result.outcome is Outcome.CREATED
    torrent = read_collection(result.torrent_bytes or b"")
    v1, v2 = libtorrent_hashes("set1", listed(FILES, "data/set1/"), PIECE, version)
    assert (torrent.info_hash_v1, torrent.info_hash_v2) == (v1, v2)
    assert result.record is not None and result.record.meta_version == version
