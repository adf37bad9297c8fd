"""TorrentService.remove_torrent and the native (GetObjectTorrent) path, with moto in-process.

moto answers `?torrent` with the object's own bytes (a store that ignores it); the stores
that serve torrents are stood in for by an S3Objects whose GetObjectTorrent returns a
torrent we craft — right, or wrong in the ways radosgw 16.2 gets it wrong.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from typing import Any

import pytest

from s3torrent import native as native_module
from s3torrent.errors import AccessDenied, NativeTorrentUnavailable
from s3torrent.model import ObjectRef, Outcome, SkipReason
from s3torrent.s3.objects import S3Objects
from s3torrent.s3.reader import ReaderConfig
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.torrent import TorrentOptions, build_torrent, read_torrent
from s3torrent.torrent.hashing import MetaVersion, hash_bytes
from tests.support.moto import BUCKET

READS = ReaderConfig(part_size=64 * 1024, window=2, backoff_base=0.0)
PIECE = 16384


def service_for(objects: S3Objects, **values: Any) -> TorrentService:
    settings = Settings.from_mapping({"buckets": [{"name": BUCKET}], **values})
    return TorrentService(settings, objects)


def keys(s3: Any) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


# --- remove_torrent ---------------------------------------------------------------------


def test_remove_deletes_our_torrent_once_the_source_is_gone(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="a/f.bin", Body=b"abc")
    service = service_for(S3Objects(s3, reader=READS))
    service.make_torrent(ObjectRef(BUCKET, "a/f.bin"))
    s3.delete_object(Bucket=BUCKET, Key="a/f.bin")

    result = service.remove_torrent(ObjectRef(BUCKET, "a/f.bin"))

    assert result.outcome is Outcome.DELETED
    assert keys(s3) == []
    again = service.remove_torrent(ObjectRef(BUCKET, "a/f.bin"))  # a duplicate delivery
    assert again.outcome is Outcome.ABSENT


def test_remove_never_deletes_a_torrent_it_did_not_write(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="f.bin.torrent", Body=b"the user's own file")
    result = service_for(S3Objects(s3, reader=READS)).remove_torrent(ObjectRef(BUCKET, "f.bin"))
    assert result.outcome is Outcome.ABSENT
    assert keys(s3) == ["f.bin.torrent"]


def test_remove_with_the_source_back_deletes_nothing(s3: Any) -> None:
    # ObjectRemoved processed after the ObjectCreated of a new upload (out of order).
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"v1")
    service = service_for(S3Objects(s3, reader=READS))
    service.make_torrent(ObjectRef(BUCKET, "f.bin"))
    assert service.remove_torrent(ObjectRef(BUCKET, "f.bin")).outcome is Outcome.FRESH
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"v2 (its event not processed yet)")
    assert service.remove_torrent(ObjectRef(BUCKET, "f.bin")).outcome is Outcome.CHANGED
    assert keys(s3) == ["f.bin", "f.bin.torrent"]


def test_remove_ignores_torrent_keys_and_markers(s3: Any) -> None:
    service = service_for(S3Objects(s3, reader=READS))
    assert service.remove_torrent(ObjectRef(BUCKET, "x.torrent")).skip_reason is (
        SkipReason.TORRENT_KEY
    )
    assert service.remove_torrent(ObjectRef(BUCKET, "dir/")).skip_reason is (
        SkipReason.DIRECTORY_MARKER
    )


def test_remove_in_a_versioned_bucket_keeps_the_torrent_of_the_current_version(s3: Any) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"old")["VersionId"]
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"current")
    service = service_for(S3Objects(s3, reader=READS))
    service.make_torrent(ObjectRef(BUCKET, "f.bin"))
    s3.delete_object(Bucket=BUCKET, Key="f.bin", VersionId=old)  # an old version goes

    result = service.remove_torrent(ObjectRef(BUCKET, "f.bin", version_id=old))

    assert result.outcome is Outcome.FRESH
    assert "f.bin.torrent" in keys(s3)
    s3.delete_object(Bucket=BUCKET, Key="f.bin")  # a delete marker: the object is gone
    assert service.remove_torrent(ObjectRef(BUCKET, "f.bin")).outcome is Outcome.DELETED


def test_remove_remakes_a_torrent_when_the_source_came_back_during_the_delete(s3: Any) -> None:
    class ComesBack(S3Objects):
        def delete_torrent(self, ref: ObjectRef) -> bool:
            deleted = super().delete_torrent(ref)
            self.client.put_object(Bucket=BUCKET, Key=ref.key, Body=b"back again")
            return deleted

    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"first")
    objects = ComesBack(s3, reader=READS)
    service = service_for(objects)
    service.make_torrent(ObjectRef(BUCKET, "f.bin"))
    s3.delete_object(Bucket=BUCKET, Key="f.bin")

    result = service.remove_torrent(ObjectRef(BUCKET, "f.bin"))

    assert result.outcome is Outcome.CREATED
    stored = s3.get_object(Bucket=BUCKET, Key="f.bin.torrent")
    assert read_torrent(stored["Body"].read()).length == len(b"back again")


# --- the native path --------------------------------------------------------------------


class ServesTorrent(S3Objects):
    """A store whose GetObjectTorrent answers with `torrent` (None: moto's own answer)."""

    torrent: bytes | None = None

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.calls: Counter[str] = Counter()

    def get_object_torrent(self, ref: ObjectRef) -> bytes:
        self.calls["GetObjectTorrent"] += 1
        return self.torrent if self.torrent is not None else super().get_object_torrent(ref)

    def read_range(self, info: Any, start: int, end: int) -> bytes:
        self.calls["range"] += 1
        return super().read_range(info, start, end)


def native_torrent(data: bytes, name: str, *, wrong_after_first: bool = False) -> bytes:
    """A v1 torrent as a store would serve it; optionally with radosgw 16.2's bug."""
    hashes = hash_bytes(data, PIECE, MetaVersion.V1)
    if wrong_after_first:
        assert hashes.v1_pieces is not None
        pieces = hashes.v1_pieces[:20] + hashlib.sha1(b"wrong").digest() * (
            len(hashes.v1_pieces) // 20 - 1
        )
        hashes = type(hashes)(**{**hashes.__dict__, "v1_pieces": pieces})
    options = TorrentOptions(
        meta_version=MetaVersion.V1,
        trackers=(("http://127.0.0.1:6969/announce",),),
        created_by="ceph-rgw",
    )
    torrent = build_torrent("x", hashes, options)
    # radosgw names it after the whole key (a '/' the engine itself never writes).
    return torrent.data.replace(b"4:name1:x", b"4:name%d:%s" % (len(name.encode()), name.encode()))


@pytest.mark.parametrize("size", [PIECE - 1, 5 * PIECE + 7])
def test_a_correct_native_torrent_is_passed_through(s3: Any, size: int) -> None:
    data = os.urandom(size)
    s3.put_object(Bucket=BUCKET, Key="dir/n.bin", Body=data)
    objects = ServesTorrent(s3, reader=READS)
    objects.torrent = native_torrent(data, "dir/n.bin")
    service = service_for(objects, torrent_source="auto")

    result = service.make_torrent(ObjectRef(BUCKET, "dir/n.bin"))

    assert result.outcome is Outcome.CREATED
    assert result.source == "native"
    assert result.torrent_bytes == objects.torrent  # byte for byte: same info hash
    assert s3.head_object(Bucket=BUCKET, Key="dir/n.bin.torrent")["Metadata"]["meta-version"] == (
        "1"
    )
    again = service.make_torrent(ObjectRef(BUCKET, "dir/n.bin"))
    assert again.outcome is Outcome.FRESH and again.source == "native"


def test_a_native_torrent_wrong_after_the_first_piece_is_replaced(s3: Any) -> None:
    data = os.urandom(5 * PIECE + 7)
    s3.put_object(Bucket=BUCKET, Key="dir/n.bin", Body=data)
    objects = ServesTorrent(s3, reader=READS)
    objects.torrent = native_torrent(data, "dir/n.bin", wrong_after_first=True)

    auto = service_for(objects, torrent_source="auto").make_torrent(ObjectRef(BUCKET, "dir/n.bin"))

    assert auto.outcome is Outcome.CREATED
    assert auto.source == "computed"
    assert auto.torrent_bytes != objects.torrent
    with pytest.raises(NativeTorrentUnavailable, match="piece 1 "):
        service_for(objects, torrent_source="native").make_torrent(
            ObjectRef(BUCKET, "dir/n.bin"), force=True
        )


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (lambda t: t.replace(b"6:lengthi", b"6:lengthi1"), "length"),
        (lambda t: t.replace(b"dir/n.bin", b"dir/x.bin"), "name"),
        (lambda t: t[:-1], "not a valid torrent"),
    ],
)
def test_native_torrent_of_another_object_is_refused(s3: Any, tamper: Any, problem: str) -> None:
    data = os.urandom(3 * PIECE)
    s3.put_object(Bucket=BUCKET, Key="dir/n.bin", Body=data)
    objects = ServesTorrent(s3, reader=READS)
    objects.torrent = tamper(native_torrent(data, "dir/n.bin"))
    with pytest.raises(NativeTorrentUnavailable, match=problem):
        service_for(objects, torrent_source="native").make_torrent(ObjectRef(BUCKET, "dir/n.bin"))
    assert keys(s3) == ["dir/n.bin"]


def test_store_answering_with_the_object_itself(s3: Any) -> None:
    # moto ignores ?torrent and returns the object: never a torrent for users.
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"d not a torrent at all")
    objects = S3Objects(s3, reader=READS)
    with pytest.raises(NativeTorrentUnavailable):
        service_for(objects, torrent_source="native").make_torrent(ObjectRef(BUCKET, "f.bin"))
    auto = service_for(objects, torrent_source="auto").make_torrent(ObjectRef(BUCKET, "f.bin"))
    assert auto.source == "computed"


def test_large_native_torrents_are_checked_on_sampled_pieces(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native_module, "NATIVE_VERIFY_ALL_BYTES", 0)
    monkeypatch.setattr(native_module, "NATIVE_SAMPLE_PIECES", 4)
    data = os.urandom(40 * PIECE + 123)
    s3.put_object(Bucket=BUCKET, Key="big.bin", Body=data)
    objects = ServesTorrent(s3, reader=READS)
    objects.torrent = native_torrent(data, "big.bin")

    good = service_for(objects, torrent_source="native").make_torrent(ObjectRef(BUCKET, "big.bin"))

    assert good.source == "native"
    assert objects.calls["range"] == 4  # first, last and two random pieces, nothing else
    assert good.counters.bytes_read == 3 * PIECE + 123
    objects.torrent = native_torrent(data, "big.bin", wrong_after_first=True)
    with pytest.raises(NativeTorrentUnavailable):
        service_for(objects, torrent_source="native").make_torrent(
            ObjectRef(BUCKET, "big.bin"), force=True
        )


def test_compute_setting_never_asks_for_a_native_torrent(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"abc")
    objects = ServesTorrent(s3, reader=READS)
    service_for(objects).make_torrent(ObjectRef(BUCKET, "f.bin"))
    assert objects.calls["GetObjectTorrent"] == 0


def test_auto_computes_when_the_role_may_not_get_native_torrents(s3: Any) -> None:
    class Denied(S3Objects):
        def get_object_torrent(self, ref: ObjectRef) -> bytes:
            raise AccessDenied(f"GetObjectTorrent {ref.uri}: access denied (AccessDenied)")

    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"abc")
    objects = Denied(s3, reader=READS)
    auto = service_for(objects, torrent_source="auto").make_torrent(ObjectRef(BUCKET, "f.bin"))
    assert auto.source == "computed"
    with pytest.raises(AccessDenied):
        service_for(objects, torrent_source="native").make_torrent(
            ObjectRef(BUCKET, "f.bin"), force=True
        )
