"""TorrentService over real HTTP (moto's server), wired as the Lambdas and the CLI wire it."""

from __future__ import annotations

import dataclasses
import http.client
import os
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import libtorrent as lt
import pytest

from s3torrent.errors import TransientS3Error
from s3torrent.model import ObjectInfo, ObjectRef, Outcome
from s3torrent.s3.direct import DirectRanges
from s3torrent.s3.objects import S3Objects
from s3torrent.s3.reader import RangeBody, RangeSource
from s3torrent.s3.sdk_ranges import SdkRanges
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.wiring import build_objects, build_service
from tests.support.references import libtorrent_hashes as reference_hashes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning"),
]

MiB = 1024 * 1024


def settings_for(bucket: str, endpoint: str, **values: Any) -> Settings:
    return Settings.from_mapping(
        {"buckets": [{"name": bucket}], "endpoint_url": endpoint, **values}
    )


def test_wiring_separates_control_retries_from_range_retries(moto_endpoint: str) -> None:
    settings = settings_for("bkt", moto_endpoint, read_window=9, read_stall_seconds=7)
    objects = build_objects(settings, concurrency=2)
    control, data = objects.client.meta.config, objects.data_client.meta.config
    assert control.retries["total_max_attempts"] > 1
    assert data.retries["total_max_attempts"] == 1  # read_parts retries ranges itself
    assert data.max_pool_connections >= 2 * 9
    assert objects.reader.window == 9
    assert objects.client.meta.endpoint_url == moto_endpoint
    # A silent socket fails its attempt after read_stall_seconds, on either transport.
    assert objects.reader.stall_timeout == 7
    assert objects.connections is not None and objects.connections.timeout == 7
    assert data.read_timeout == 7


def test_direct_and_sdk_transports_make_identical_torrents(
    s3_client: Any, bucket: str, moto_endpoint: str
) -> None:
    data = os.urandom(3 * MiB + 777)
    s3_client.put_object(Bucket=bucket, Key="t/data.bin", Body=data)
    ref = ObjectRef(bucket, "t/data.bin")
    made = {}
    for transport in (None, "direct", "sdk"):
        values = {"read_transport": transport} if transport else {}
        settings = settings_for(bucket, moto_endpoint, read_part_bytes=MiB, **values)
        objects = build_objects(settings)
        source = objects.range_source(objects.head_object(ref))
        assert type(source) is (SdkRanges if transport == "sdk" else DirectRanges), transport
        result = TorrentService(settings, objects).make_torrent(ref, write=False)
        assert result.outcome is Outcome.CREATED
        assert result.counters.get_requests >= 4 and result.counters.bytes_read == len(data)
        made[transport] = result.torrent_bytes
    assert made[None] == made["direct"] == made["sdk"]
    assert made["sdk"] is not None
    hashes = lt.torrent_info(lt.bdecode(made["sdk"])).info_hashes()
    piece_length = lt.torrent_info(lt.bdecode(made["sdk"])).piece_length()
    assert (str(hashes.v1), str(hashes.v2)) == reference_hashes(data, "data.bin", piece_length)


def test_multi_part_object_hashes_like_libtorrent(
    s3_client: Any, bucket: str, moto_endpoint: str
) -> None:
    data = os.urandom(5 * MiB + 12345)
    s3_client.put_object(Bucket=bucket, Key="big/data.bin", Body=data)
    settings = settings_for(
        bucket, moto_endpoint, read_part_bytes=MiB, read_window=4, piece_length=256 * 1024
    )

    result = build_service(settings).make_torrent(ObjectRef(bucket, "big/data.bin"))

    assert result.outcome is Outcome.CREATED
    assert result.counters.bytes_read == len(data)
    assert result.counters.get_requests >= 6
    stored = s3_client.get_object(Bucket=bucket, Key="big/data.bin.torrent")["Body"].read()
    hashes = lt.torrent_info(lt.bdecode(stored)).info_hashes()
    assert (str(hashes.v1), str(hashes.v2)) == reference_hashes(data, "data.bin", 256 * 1024)


class WrappedRanges:
    """Wraps the range source of an S3Objects (direct or SDK) to break it on purpose."""

    def __init__(self, inner: RangeSource, info: ObjectInfo, objects: S3Objects) -> None:
        self.inner = inner
        self.info = info
        self.objects = objects

    def open_range(self, start: int, end: int) -> RangeBody:
        return self.inner.open_range(start, end)


class FlakyRanges(WrappedRanges):
    """The first open of every range fails with a throttling error; the next succeeds."""

    def __init__(self, inner: RangeSource, info: ObjectInfo, objects: S3Objects) -> None:
        super().__init__(inner, info, objects)
        self.failed: set[tuple[int, int]] = set()
        self.lock = threading.Lock()

    def open_range(self, start: int, end: int) -> RangeBody:
        with self.lock:
            first = (start, end) not in self.failed
            self.failed.add((start, end))
        if first:
            raise TransientS3Error(f"SlowDown on bytes={start}-{end}")
        return self.inner.open_range(start, end)


def wrap_ranges(
    monkeypatch: pytest.MonkeyPatch, objects: S3Objects, kind: type[WrappedRanges]
) -> list[RangeSource]:
    """Make `objects.range_source` hand out `kind` around its real source; the real
    sources, as they are made, are listed in the returned list."""
    real = objects.range_source
    made: list[RangeSource] = []

    def range_source(info: ObjectInfo) -> RangeSource:
        source = real(info)
        made.append(source)
        return kind(source, info, objects)

    monkeypatch.setattr(objects, "range_source", range_source)
    return made


def test_throttled_ranges_are_retried_one_by_one(
    s3_client: Any, bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * MiB)
    s3_client.put_object(Bucket=bucket, Key="f.bin", Body=data)
    settings = settings_for(bucket, moto_endpoint, read_part_bytes=MiB, piece_length=256 * 1024)
    objects = build_objects(settings)
    made = wrap_ranges(monkeypatch, objects, FlakyRanges)

    result = TorrentService(settings, objects).make_torrent(ObjectRef(bucket, "f.bin"))

    assert result.outcome is Outcome.CREATED
    assert [type(source) for source in made] == [DirectRanges]
    assert result.counters.retries == 3  # one per range, each retried once
    assert result.counters.bytes_read == len(data)
    assert result.torrent_bytes is not None
    hashes = lt.torrent_info(lt.bdecode(result.torrent_bytes)).info_hashes()
    assert (str(hashes.v1), str(hashes.v2)) == reference_hashes(data, "f.bin", 256 * 1024)


class OverwriteMidRead(WrappedRanges):
    """Once the first chunk of the first range has been read, the object is overwritten."""

    def open_range(self, start: int, end: int) -> RangeBody:
        body = self.inner.open_range(start, end)
        if start:
            return body
        return OverwriteAfterFirstChunk(body, self.info, self.objects)


class OverwriteAfterFirstChunk:
    def __init__(self, body: RangeBody, info: ObjectInfo, objects: S3Objects) -> None:
        self.body = body
        self.info = info
        self.objects = objects
        self.done = False

    def readinto(self, buffer: memoryview) -> int:
        count = self.body.readinto(buffer)
        if not self.done:
            self.done = True
            ref = self.info.ref
            self.objects.client.put_object(Bucket=ref.bucket, Key=ref.key, Body=b"v2")
        return count

    def close(self) -> None:
        self.body.close()


@pytest.mark.parametrize("transport", ["direct", "sdk"])
def test_overwrite_mid_hash_writes_nothing_over_http(
    s3_client: Any,
    bucket: str,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
) -> None:
    s3_client.put_object(Bucket=bucket, Key="f.bin", Body=os.urandom(4 * MiB))
    settings = settings_for(
        bucket, moto_endpoint, read_part_bytes=MiB, read_window=1, read_transport=transport
    )
    objects = build_objects(settings)
    objects.reader = dataclasses.replace(objects.reader, chunk_size=64 * 1024)
    made = wrap_ranges(monkeypatch, objects, OverwriteMidRead)

    result = TorrentService(settings, objects).make_torrent(ObjectRef(bucket, "f.bin"))

    assert [type(source) for source in made] == [
        DirectRanges if transport == "direct" else SdkRanges
    ]
    assert result.outcome is Outcome.CHANGED
    # The first range was read on; the next one, pinned to the old ETag, found the change.
    assert 1 * MiB <= result.counters.bytes_read < 4 * MiB
    listed = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in listed] == ["f.bin"]
    # The event that overwrite sends makes the right torrent:
    follow_up = build_service(settings).make_torrent(ObjectRef(bucket, "f.bin"))
    assert follow_up.outcome is Outcome.CREATED
    assert follow_up.record is not None
    assert follow_up.record.size == 2


def test_duplicate_deliveries_write_identical_bytes(
    s3_client: Any, bucket: str, moto_endpoint: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key="dup/ü +.bin", Body=os.urandom(2 * MiB))
    service = build_service(settings_for(bucket, moto_endpoint, read_part_bytes=MiB))
    outcomes: list[tuple[Outcome, bytes | None]] = []
    lock = threading.Lock()

    def deliver() -> None:
        result = service.make_torrent(ObjectRef(bucket, "dup/ü +.bin"))
        with lock:
            outcomes.append((result.outcome, result.torrent_bytes))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stored = s3_client.get_object(Bucket=bucket, Key="dup/ü +.bin.torrent")["Body"].read()
    assert {body for _, body in outcomes} == {stored}
    assert {outcome for outcome, _ in outcomes} <= {Outcome.CREATED, Outcome.FRESH}
    again = service.make_torrent(ObjectRef(bucket, "dup/ü +.bin"))
    assert again.outcome is Outcome.FRESH and again.torrent_bytes == stored


def test_requester_pays_and_owner_reach_every_request(
    s3_client: Any, bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_client.put_object(Bucket=bucket, Key="f.bin", Body=b"abc")
    service = build_service(settings_for(bucket, moto_endpoint))
    headers: list[dict[str, str]] = []
    for client in (service.objects.client, service.objects.data_client):
        client.meta.events.register(
            "before-send.s3", lambda request, **_: headers.append(dict(request.headers))
        )
    direct: list[tuple[str, dict[str, str]]] = []  # the direct transport's GETs
    connections = service.objects.connections
    assert connections is not None
    get = connections.get

    def recording_get(scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        connection = get(scheme, host, port)
        send = connection.request

        def request(method: str, url: str, body: Any = None, headers: Any = None) -> None:
            direct.append((url, dict(headers or {})))
            send(method, url, body, headers or {})

        connection.request = request  # type: ignore[method-assign,assignment]
        return connection

    monkeypatch.setattr(connections, "get", recording_get)
    owner = boto3.client(
        "sts", endpoint_url=moto_endpoint, region_name="us-east-1"
    ).get_caller_identity()["Account"]
    ref = ObjectRef(bucket, "f.bin", request_payer=True, expected_bucket_owner=owner)

    assert service.make_torrent(ref).outcome is Outcome.CREATED

    assert len(headers) >= 4  # HEAD, GET torrent, HEAD, PUT, HEAD
    for sent in headers:
        assert sent.get("x-amz-request-payer") == b"requester"
        assert sent.get("x-amz-expected-bucket-owner") == owner.encode()
    # The ranged GET went straight over HTTP on a presigned URL: both headers are sent, and
    # signed, so the URL cannot be used without them.
    assert len(direct) == 1
    url, sent_direct = direct[0]
    assert sent_direct["x-amz-request-payer"] == "requester"
    assert sent_direct["x-amz-expected-bucket-owner"] == owner
    assert sent_direct["If-Match"] and sent_direct["Range"] == "bytes=0-2"
    signed = parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"if-match", "x-amz-request-payer", "x-amz-expected-bucket-owner"} <= set(signed)
