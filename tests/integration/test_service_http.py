"""TorrentService over real HTTP (moto's server), wired as the Lambdas and the CLI wire it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import libtorrent as lt
import pytest

from references import libtorrent_hashes as reference_hashes
from s3torrent.errors import TransientS3Error
from s3torrent.model import ObjectInfo, ObjectRef, Outcome, TransferCounters
from s3torrent.s3 import S3Objects
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.wiring import build_objects, build_service

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
    objects = build_objects(settings_for("bkt", moto_endpoint, read_window=9), concurrency=2)
    control, data = objects.client.meta.config, objects.data_client.meta.config
    assert control.retries["total_max_attempts"] > 1
    assert data.retries["total_max_attempts"] == 1  # read_in_order retries ranges itself
    assert data.max_pool_connections >= 2 * 9
    assert objects.reader.window == 9
    assert objects.client.meta.endpoint_url == moto_endpoint


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


class FlakyRanges(S3Objects):
    """Every range fails once with a throttling error before it succeeds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed: set[int] = set()
        self.lock = threading.Lock()

    def read_range(self, info: ObjectInfo, start: int, end: int) -> bytes:
        with self.lock:
            first = start not in self.failed
            self.failed.add(start)
        if first:
            raise TransientS3Error(f"SlowDown on bytes={start}-{end}")
        return super().read_range(info, start, end)


def test_throttled_ranges_are_retried_one_by_one(
    s3_client: Any, bucket: str, moto_endpoint: str
) -> None:
    data = os.urandom(3 * MiB)
    s3_client.put_object(Bucket=bucket, Key="f.bin", Body=data)
    settings = settings_for(bucket, moto_endpoint, read_part_bytes=MiB)
    plain = build_objects(settings)
    flaky = FlakyRanges(plain.client, reader=plain.reader, data_client=plain.data_client)

    result = TorrentService(settings, flaky).make_torrent(ObjectRef(bucket, "f.bin"))

    assert result.outcome is Outcome.CREATED
    assert result.counters.retries == 3
    assert result.counters.bytes_read == len(data)


class OverwriteMidRead(S3Objects):
    def iter_bytes(self, info: ObjectInfo, counters: TransferCounters) -> Iterator[memoryview]:
        for number, chunk in enumerate(super().iter_bytes(info, counters)):
            yield chunk
            if number == 0:
                self.client.put_object(Bucket=info.ref.bucket, Key=info.ref.key, Body=b"v2")


def test_overwrite_mid_hash_writes_nothing_over_http(
    s3_client: Any, bucket: str, moto_endpoint: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key="f.bin", Body=os.urandom(4 * MiB))
    settings = settings_for(bucket, moto_endpoint, read_part_bytes=MiB, read_window=1)
    plain = build_objects(settings)
    moving = OverwriteMidRead(plain.client, reader=plain.reader, data_client=plain.data_client)

    result = TorrentService(settings, moving).make_torrent(ObjectRef(bucket, "f.bin"))

    assert result.outcome is Outcome.CHANGED
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
    s3_client: Any, bucket: str, moto_endpoint: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key="f.bin", Body=b"abc")
    service = build_service(settings_for(bucket, moto_endpoint))
    headers: list[dict[str, str]] = []
    for client in (service.objects.client, service.objects.data_client):
        client.meta.events.register(
            "before-send.s3", lambda request, **_: headers.append(dict(request.headers))
        )
    owner = boto3.client(
        "sts", endpoint_url=moto_endpoint, region_name="us-east-1"
    ).get_caller_identity()["Account"]
    ref = ObjectRef(bucket, "f.bin", request_payer=True, expected_bucket_owner=owner)

    assert service.make_torrent(ref).outcome is Outcome.CREATED

    assert len(headers) >= 4  # HEAD, GET torrent, GET range, HEAD, PUT
    for sent in headers:
        assert sent.get("x-amz-request-payer") == b"requester"
        assert sent.get("x-amz-expected-bucket-owner") == owner.encode()
