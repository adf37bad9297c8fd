"""TorrentService.make_torrent against moto in-process (mock_aws): skip, fresh, compute, write."""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any

import pytest

from s3torrent.errors import InvalidInput, ObjectNotFound
from s3torrent.model import ObjectInfo, ObjectRef, Outcome, SkipReason
from s3torrent.policy import expand_web_seed, object_skip_reason
from s3torrent.s3.objects import S3Objects
from s3torrent.s3.reader import ReaderConfig
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.torrent import read_torrent
from s3torrent.torrent.hashing import MetaVersion
from tests.support.moto import BUCKET
from tests.support.references import libtorrent_hashes

pytestmark = pytest.mark.filterwarnings("ignore:create_torrent constructor:DeprecationWarning")

SMALL_READS = ReaderConfig(part_size=64 * 1024, window=3, backoff_base=0.0)


class Calls:
    """Counts S3 API calls per operation through botocore's before-call event."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[model.name] += 1

    def reset(self) -> None:
        self.counts.clear()


def service_for(client: Any, objects: S3Objects | None = None, **values: Any) -> TorrentService:
    settings = Settings.from_mapping({"buckets": [{"name": BUCKET}], **values})
    return TorrentService(settings, objects or S3Objects(client, reader=SMALL_READS))


@pytest.mark.parametrize("version", ["1", "2", "hybrid"])
def test_computed_torrent_matches_libtorrent_and_is_written_next_to_the_object(
    s3: Any, version: str
) -> None:
    data = os.urandom(300_000)  # several reader parts, several pieces, a short last piece
    s3.put_object(Bucket=BUCKET, Key="dir/file one.bin", Body=data)
    service = service_for(s3, meta_version=version, piece_length=32768)

    result = service.make_torrent(ObjectRef(BUCKET, "dir/file one.bin"))

    assert result.outcome is Outcome.CREATED
    assert result.source == "computed"
    assert result.torrent_bytes is not None
    v1, v2 = libtorrent_hashes(data, "file one.bin", 32768, version)
    torrent = read_torrent(result.torrent_bytes)
    assert (torrent.info_hash_v1 or "0" * 40) == v1
    assert (torrent.info_hash_v2 or "0" * 64) == v2
    assert torrent.web_seeds == (f"https://{BUCKET}.s3.us-east-1.amazonaws.com/dir/",)
    assert result.counters.bytes_read == len(data)
    assert result.counters.get_requests >= 5  # 300 kB in 64 KiB ranges (+ the fresh check)

    stored = s3.get_object(Bucket=BUCKET, Key="dir/file one.bin.torrent")
    assert stored["Body"].read() == result.torrent_bytes
    assert stored["ContentType"] == "application/x-bittorrent"
    assert stored["ContentDisposition"] == 'attachment; filename="file one.bin.torrent"'
    head = s3.head_object(Bucket=BUCKET, Key="dir/file one.bin")
    meta = stored["Metadata"]
    assert meta["created-by"] == "s3torrent"
    assert meta["source-etag"] == head["ETag"]
    assert meta["size"] == str(len(data))
    assert meta["piece-length"] == "32768"
    assert meta["meta-version"] == version
    assert meta.get("info-hash-v1") == torrent.info_hash_v1
    assert meta.get("info-hash-v2") == torrent.info_hash_v2
    assert all(value.isascii() for value in meta.values())


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("photos/", SkipReason.DIRECTORY_MARKER),
        ("a/b.torrent", SkipReason.TORRENT_KEY),
        ("k" * 1017, SkipReason.KEY_TOO_LONG),
        ("é" * 509, SkipReason.KEY_TOO_LONG),  # 1018 bytes of UTF-8, + 8 > 1024
    ],
)
def test_key_skips_cost_no_request(s3: Any, key: str, reason: SkipReason) -> None:
    calls = Calls(s3)
    result = service_for(s3).make_torrent(ObjectRef(BUCKET, key))
    assert result.outcome is Outcome.SKIPPED
    assert result.skip_reason is reason
    assert sum(calls.counts.values()) == 0


def test_key_of_exactly_the_limit_is_not_skipped_for_length(s3: Any) -> None:
    key = "k" * (1024 - len(".torrent"))
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    assert service_for(s3).make_torrent(ObjectRef(BUCKET, key)).outcome is Outcome.CREATED


def test_bucket_outside_the_allowlist_is_skipped_without_a_request(s3: Any) -> None:
    calls = Calls(s3)
    service = service_for(s3, buckets=[{"name": BUCKET, "prefix": "public/"}])
    for ref in (ObjectRef("other-bucket", "k"), ObjectRef(BUCKET, "private/k")):
        result = service.make_torrent(ref)
        assert result.skip_reason is SkipReason.OUTSIDE_SCOPE
    assert sum(calls.counts.values()) == 0


def test_empty_object_is_skipped_after_head_only(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="empty.bin", Body=b"")
    calls = Calls(s3)
    result = service_for(s3).make_torrent(ObjectRef(BUCKET, "empty.bin"))
    assert result.skip_reason is SkipReason.EMPTY
    assert calls.counts == Counter({"HeadObject": 1})


def test_archived_object_is_skipped(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="cold.bin", Body=b"abc", StorageClass="DEEP_ARCHIVE")
    result = service_for(s3).make_torrent(ObjectRef(BUCKET, "cold.bin"))
    assert result.skip_reason is SkipReason.ARCHIVED
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="cold.bin.")


def test_too_large_for_the_path_is_skipped_but_a_fresh_torrent_is_still_served(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="big.bin", Body=b"0123456789" * 10)
    service = service_for(s3)
    assert service.make_torrent(ObjectRef(BUCKET, "big.bin"), max_bytes=99).skip_reason is (
        SkipReason.TOO_LARGE
    )
    service.make_torrent(ObjectRef(BUCKET, "big.bin"))
    served = service.make_torrent(ObjectRef(BUCKET, "big.bin"), max_bytes=99)
    assert served.outcome is Outcome.FRESH
    assert served.torrent_bytes


def test_object_skip_reasons_from_head() -> None:
    ref = ObjectRef(BUCKET, "k")
    base = ObjectInfo(ref=ref, size=10, etag='"e"', version_id=None, last_modified=None)
    assert object_skip_reason(base) is None
    assert object_skip_reason(ObjectInfo(**{**base.__dict__, "sse_customer": True})) is (
        SkipReason.SSE_C
    )
    glacier = {**base.__dict__, "storage_class": "GLACIER"}
    assert object_skip_reason(ObjectInfo(**glacier)) is SkipReason.ARCHIVED
    assert object_skip_reason(ObjectInfo(**{**glacier, "restored": True})) is None
    tiered = {**base.__dict__, "storage_class": "INTELLIGENT_TIERING"}
    assert object_skip_reason(ObjectInfo(**tiered)) is None
    deep = {**tiered, "archive_status": "DEEP_ARCHIVE_ACCESS"}
    assert object_skip_reason(ObjectInfo(**deep)) is SkipReason.ARCHIVED
    assert object_skip_reason(ObjectInfo(**{**base.__dict__, "size": 0})) is SkipReason.EMPTY


def test_sse_c_object_is_skipped(s3: Any) -> None:
    class SseC(S3Objects):
        def head_object(self, ref: ObjectRef) -> ObjectInfo:
            info = super().head_object(ref)
            return ObjectInfo(**{**info.__dict__, "sse_customer": True})

    s3.put_object(Bucket=BUCKET, Key="secret.bin", Body=b"abc")
    service = service_for(s3, SseC(s3, reader=SMALL_READS))
    assert service.make_torrent(ObjectRef(BUCKET, "secret.bin")).skip_reason is SkipReason.SSE_C


def test_missing_object_raises_not_found(s3: Any) -> None:
    with pytest.raises(ObjectNotFound):
        service_for(s3).make_torrent(ObjectRef(BUCKET, "nope.bin"))


def test_fresh_torrent_is_reused_with_one_get_and_no_write(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=os.urandom(100_000))
    service = service_for(s3)
    first = service.make_torrent(ObjectRef(BUCKET, "f.bin"))
    calls = Calls(s3)

    again = service.make_torrent(ObjectRef(BUCKET, "f.bin"))

    assert again.outcome is Outcome.FRESH
    assert again.torrent_bytes == first.torrent_bytes
    assert again.magnet == first.magnet
    assert calls.counts == Counter({"HeadObject": 1, "GetObject": 1})


def test_stale_torrent_is_rebuilt_for_the_new_etag(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"first version")
    service = service_for(s3)
    first = service.make_torrent(ObjectRef(BUCKET, "f.bin"))
    new_etag = s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"second version!")["ETag"]

    second = service.make_torrent(ObjectRef(BUCKET, "f.bin"))

    assert second.outcome is Outcome.CREATED
    assert second.torrent_bytes != first.torrent_bytes
    assert second.record is not None and second.record.source_etag == new_etag
    stored = s3.get_object(Bucket=BUCKET, Key="f.bin.torrent")
    assert stored["Metadata"]["source-etag"] == new_etag
    assert read_torrent(stored["Body"].read()).length == len(b"second version!")


def test_different_options_are_not_fresh(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=os.urandom(50_000))
    service = service_for(s3)
    service.make_torrent(ObjectRef(BUCKET, "f.bin"))
    result = service.make_torrent(
        ObjectRef(BUCKET, "f.bin"), overrides={"meta_version": "1", "trackers": ["udp://t:1"]}
    )
    assert result.outcome is Outcome.CREATED
    assert result.torrent_bytes is not None
    torrent = read_torrent(result.torrent_bytes)
    assert torrent.meta_version is MetaVersion.V1
    assert torrent.trackers == (("udp://t:1",),)


def test_a_torrent_made_with_options_is_served_as_is_while_its_object_is_unchanged(
    s3: Any,
) -> None:
    # POST /torrents asked for v2; `?torrent` (no options of its own) must not undo that.
    s3.put_object(Bucket=BUCKET, Key="v2.bin", Body=os.urandom(50_000))
    service = service_for(s3, meta_version="hybrid")
    made = service.make_torrent(ObjectRef(BUCKET, "v2.bin"), overrides={"meta_version": "2"})

    served = service.make_torrent(ObjectRef(BUCKET, "v2.bin"), max_bytes=None)

    assert made.outcome is Outcome.CREATED
    assert served.outcome is Outcome.FRESH
    assert served.torrent_bytes == made.torrent_bytes
    assert served.torrent_bytes is not None
    assert read_torrent(served.torrent_bytes).meta_version is MetaVersion.V2


def test_force_rebuilds_and_duplicates_are_byte_identical(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="dup.bin", Body=os.urandom(200_000))
    service = service_for(s3)
    results: list[bytes | None] = []

    def deliver() -> None:
        results.append(service.make_torrent(ObjectRef(BUCKET, "dup.bin"), force=True).torrent_bytes)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 3 and results[0] is not None
    assert results[0] == results[1] == results[2]
    assert s3.get_object(Bucket=BUCKET, Key="dup.bin.torrent")["Body"].read() == results[0]


class _Overwriting:
    """A RangeSource that overwrites the object at a chosen moment of the read."""

    def __init__(self, objects: S3Objects, info: ObjectInfo, *, after_last_byte: bool) -> None:
        self._objects = objects
        self._info = info
        self._inner = S3Objects.range_source(objects, info)
        self._after_last_byte = after_last_byte
        self._opened = 0

    def overwrite(self) -> None:
        self._objects.client.put_object(Bucket=BUCKET, Key=self._info.ref.key, Body=b"new")

    def open_range(self, start: int, end: int) -> Any:
        self._opened += 1
        if not self._after_last_byte and self._opened == 2:
            self.overwrite()  # a PutObject after the first part was read
        body = self._inner.open_range(start, end)
        if self._after_last_byte and end == self._info.size - 1:
            return _OverwriteOnClose(body, self)
        return body


class _OverwriteOnClose:
    def __init__(self, body: Any, source: _Overwriting) -> None:
        self._body = body
        self._source = source

    def readinto(self, buffer: memoryview) -> int:
        count: int = self._body.readinto(buffer)
        return count

    def close(self) -> None:
        self._body.close()
        self._source.overwrite()


class OverwriteWhileReading(S3Objects):
    """Overwrites the source after the first part has been read (a PutObject mid-hash)."""

    def range_source(self, info: ObjectInfo) -> Any:
        return _Overwriting(self, info, after_last_byte=False)


class OverwriteAfterReading(S3Objects):
    """Overwrites the source once every byte was read, before the torrent is written."""

    def range_source(self, info: ObjectInfo) -> Any:
        return _Overwriting(self, info, after_last_byte=True)


@pytest.mark.parametrize("objects_class", [OverwriteWhileReading, OverwriteAfterReading])
def test_object_changed_during_hashing_writes_nothing(
    s3: Any, objects_class: type[S3Objects]
) -> None:
    s3.put_object(Bucket=BUCKET, Key="moving.bin", Body=os.urandom(400_000))
    objects = objects_class(s3, reader=ReaderConfig(part_size=64 * 1024, window=1))
    result = service_for(s3, objects).make_torrent(ObjectRef(BUCKET, "moving.bin"))
    assert result.outcome is Outcome.CHANGED
    assert result.torrent_bytes is None
    if objects_class is OverwriteWhileReading:
        assert result.counters.bytes_read < 400_000  # If-Match stopped the read (412)
    else:
        assert result.counters.bytes_read == 400_000  # the HEAD before the write caught it
    listed = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert [item["Key"] for item in listed] == ["moving.bin"]


def test_write_false_makes_the_torrent_without_storing_it(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"abc")
    result = service_for(s3).make_torrent(ObjectRef(BUCKET, "f.bin"), write=False)
    assert result.outcome is Outcome.CREATED and result.torrent_bytes
    assert result.record is None
    assert [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["f.bin"]


def test_progress_callback_sees_every_byte(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=os.urandom(200_000))
    seen: list[tuple[int, int]] = []
    service_for(s3).make_torrent(
        ObjectRef(BUCKET, "f.bin"), on_progress=lambda done, total: seen.append((done, total))
    )
    assert seen[-1] == (200_000, 200_000)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_version_that_is_no_longer_current_is_not_written(s3: Any) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=BUCKET, Key="v.bin", Body=b"old")["VersionId"]
    s3.put_object(Bucket=BUCKET, Key="v.bin", Body=b"newer")
    service = service_for(s3)

    stale = service.make_torrent(ObjectRef(BUCKET, "v.bin", version_id=old))
    assert stale.outcome is Outcome.CHANGED
    current = service.make_torrent(ObjectRef(BUCKET, "v.bin"))
    assert current.outcome is Outcome.CREATED
    assert current.record is not None and current.record.source_version_id
    meta = s3.head_object(Bucket=BUCKET, Key="v.bin.torrent")["Metadata"]
    assert meta["source-version-id"] == current.record.source_version_id != old


@pytest.mark.parametrize(
    "overrides",
    [{"piece_length": 1000}, {"meta_version": "3"}, {"buckets": []}, {"trackers": ["ftp://x"]}],
)
def test_bad_overrides_are_invalid_input(s3: Any, overrides: dict[str, Any]) -> None:
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"abc")
    with pytest.raises(InvalidInput):
        service_for(s3).make_torrent(ObjectRef(BUCKET, "f.bin"), overrides=overrides)
    assert len(s3.list_objects_v2(Bucket=BUCKET)["Contents"]) == 1


def test_web_seed_templates_expand_per_object() -> None:
    aws = Settings.from_mapping({"buckets": [{"name": BUCKET}], "region": "eu-west-1"})
    assert expand_web_seed("{bucket_url}/{folder}", aws, BUCKET, "a b/c+d%/ü.bin") == (
        f"https://{BUCKET}.s3.eu-west-1.amazonaws.com/a%20b/c%2Bd%25/"
    )
    assert expand_web_seed("{bucket_url}/{folder}", aws, BUCKET, "top.bin") == (
        f"https://{BUCKET}.s3.eu-west-1.amazonaws.com/"
    )
    local = Settings.from_mapping({"endpoint_url": "http://127.0.0.1:5000/"})
    assert expand_web_seed("{endpoint}/{bucket}/{key}", local, BUCKET, "a/ü.bin") == (
        f"http://127.0.0.1:5000/{BUCKET}/a/%C3%BC.bin"
    )
    with pytest.raises(InvalidInput):
        expand_web_seed("https://x/{nope}", aws, BUCKET, "k")


def test_describe_reports_fresh_then_stale_without_hashing(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="d.bin", Body=b"abc")
    service = service_for(s3)
    with pytest.raises(ObjectNotFound):
        service.describe(ObjectRef(BUCKET, "d.bin"))
    made = service.make_torrent(ObjectRef(BUCKET, "d.bin"))
    calls = Calls(s3)
    described = service.describe(ObjectRef(BUCKET, "d.bin"))
    assert described.outcome is Outcome.FRESH
    assert described.magnet == made.magnet
    assert described.record is not None and described.record.size == 3
    s3.put_object(Bucket=BUCKET, Key="d.bin", Body=b"abcd")
    assert service.describe(ObjectRef(BUCKET, "d.bin")).outcome is Outcome.CHANGED
    assert calls.counts["GetObject"] == 2  # the two torrent reads, no ranged reads


class ChangedRightAfterTheWrite(S3Objects):
    """The object is overwritten (or deleted) between the ETag check and the torrent's PUT,
    and its own event is handled before our PUT lands: the worst interleaving."""

    delete = False

    def put_torrent(self, ref: ObjectRef, *args: Any, **kwargs: Any) -> Any:
        record = super().put_torrent(ref, *args, **kwargs)
        if not getattr(self, "done", False):
            self.done = True
            if self.delete:
                self.client.delete_object(Bucket=BUCKET, Key=ref.key)
            else:
                self.client.put_object(Bucket=BUCKET, Key=ref.key, Body=b"the newer version")
        return record


def test_a_change_during_the_write_is_settled_not_left_behind(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="race.bin", Body=os.urandom(100_000))
    objects = ChangedRightAfterTheWrite(s3, reader=SMALL_READS)

    result = service_for(s3, objects).make_torrent(ObjectRef(BUCKET, "race.bin"))

    assert result.outcome is Outcome.CREATED
    current = s3.head_object(Bucket=BUCKET, Key="race.bin")["ETag"]
    stored = s3.get_object(Bucket=BUCKET, Key="race.bin.torrent")
    assert stored["Metadata"]["source-etag"] == current
    assert read_torrent(stored["Body"].read()).length == len(b"the newer version")


def test_a_deletion_during_the_write_leaves_no_torrent(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="race.bin", Body=b"soon gone")
    objects = ChangedRightAfterTheWrite(s3, reader=SMALL_READS)
    objects.delete = True

    result = service_for(s3, objects).make_torrent(ObjectRef(BUCKET, "race.bin"))

    assert result.outcome is Outcome.CHANGED
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_api_budget_never_raises_the_configured_limit(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"x" * 100)
    service = service_for(s3, max_object_bytes=50)
    result = service.make_torrent(ObjectRef(BUCKET, "f.bin"), max_bytes=1000)
    assert result.skip_reason is SkipReason.TOO_LARGE
