"""Fan-out builds on moto's in-process S3, SQS and DynamoDB: parts as worker-queue messages,
handled by the worker in any order, give the single-pass torrent byte for byte."""

from __future__ import annotations

import json
import random
from typing import Any

import boto3
import pytest

from s3torrent.collections import CollectionRef
from s3torrent.model import ObjectRef, Outcome
from s3torrent.s3.objects import S3Objects
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.worker import Delivery, Worker
from s3torrent_local.stack import create_progress_table
from tests.support.fanout import fanout_service
from tests.support.moto import BUCKET
from tests.unit.collections.test_collection_service import SMALL_READS

TABLE = "progress"
PIECE = 16 * 1024
PART = 8 * PIECE
KEY = "big/object.bin"


@pytest.fixture
def aws(s3: Any) -> dict[str, Any]:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    create_progress_table(dynamodb, TABLE)
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="worker")["QueueUrl"]
    return {"s3": s3, "dynamodb": dynamodb, "sqs": sqs, "url": url}


def make_service(aws: dict[str, Any], *, fanout: bool = True, **values: Any) -> TorrentService:
    settings = Settings.from_mapping(
        {
            "buckets": [{"name": BUCKET}],
            "endpoint_url": "http://s3.test",
            "piece_length": PIECE,
            "fanout_part_bytes": PART,
            "queue_url": aws["url"],
            "backfill_table": TABLE,
            **values,
        }
    )
    objects = S3Objects(aws["s3"], reader=SMALL_READS)
    if not fanout:
        return TorrentService(settings, objects)
    return fanout_service(settings, objects, aws["dynamodb"], TABLE, aws["sqs"], aws["url"])


def drain(aws: dict[str, Any], worker: Worker, *, seed: int = 0, duplicate: bool = False) -> int:
    """Handle every queued message, in a shuffled order; the number handled."""
    rng = random.Random(seed)
    handled = 0
    while True:
        response = aws["sqs"].receive_message(QueueUrl=aws["url"], MaxNumberOfMessages=10)
        messages = response.get("Messages", [])
        if not messages:
            return handled
        rng.shuffle(messages)
        for message in messages:
            worker.handle_body(message["Body"])
            if duplicate:
                worker.handle_body(message["Body"])
            aws["sqs"].delete_message(QueueUrl=aws["url"], ReceiptHandle=message["ReceiptHandle"])
            handled += 1


def single_pass(aws: dict[str, Any], key: str, version: str) -> bytes:
    result = make_service(aws, fanout=False).make_torrent(
        ObjectRef(BUCKET, key), overrides={"meta_version": version}, force=True, write=False
    )
    assert result.torrent_bytes is not None
    return result.torrent_bytes


@pytest.mark.parametrize("version", ["1", "2", "hybrid"])
@pytest.mark.parametrize("size", [20 * PART + 5, 16 * PART])
def test_an_object_in_parts_gives_the_single_pass_torrent(
    aws: dict[str, Any], version: str, size: int
) -> None:
    data = random.Random(size).randbytes(size)
    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=data)
    service = make_service(aws, meta_version=version)
    started = service.make_torrent(ObjectRef(BUCKET, KEY))
    assert started.outcome is Outcome.STARTED
    state = service.build_state(BUCKET, KEY)
    assert state is not None and state.status == "running" and state.parts_done == 0
    assert state.parts == -(-size // PART) >= 16
    assert drain(aws, Worker(service, None), seed=size) == state.parts
    stored = aws["s3"].get_object(Bucket=BUCKET, Key=KEY + ".torrent")["Body"].read()
    assert stored == single_pass(aws, KEY, version)
    done = service.build_state(BUCKET, KEY)
    assert done is not None and done.status == "done" and done.parts_done == done.parts
    # The part records and the manifest are gone; only the status and pointer items stay.
    ids = {item["backfill_id"]["S"] for item in aws["dynamodb"].scan(TableName=TABLE)["Items"]}
    assert {item.split(":")[0] for item in ids} == {"fanout", "fanout-of"}


def test_duplicate_deliveries_change_nothing(aws: dict[str, Any]) -> None:
    data = random.Random(3).randbytes(17 * PART)
    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=data)
    service = make_service(aws, meta_version="hybrid")
    service.make_torrent(ObjectRef(BUCKET, KEY))
    service.make_torrent(ObjectRef(BUCKET, KEY))  # the same event twice: one build
    assert drain(aws, Worker(service, None), duplicate=True) == 17
    state = service.build_state(BUCKET, KEY)
    assert state is not None and state.status == "done" and state.parts_done == 17
    stored = aws["s3"].get_object(Bucket=BUCKET, Key=KEY + ".torrent")["Body"].read()
    assert stored == single_pass(aws, KEY, "hybrid")


@pytest.mark.parametrize("version", ["1", "2", "hybrid"])
def test_a_collection_in_parts_gives_the_single_pass_torrent(
    aws: dict[str, Any], version: str
) -> None:
    rng = random.Random(200)
    prefix = "sets/two hundred/"
    for index in range(200):
        size = rng.choice([0, 1, PIECE - 1, PIECE, PIECE + 1, rng.randrange(1, 5 * PIECE)])
        aws["s3"].put_object(
            Bucket=BUCKET, Key=f"{prefix}d{index % 7}/f {index:03}+.bin", Body=rng.randbytes(size)
        )
    ref = CollectionRef(BUCKET, prefix)
    overrides = {"meta_version": version}
    expected = make_service(aws, fanout=False).make_collection(
        ref, overrides=overrides, force=True, write=False
    )
    service = make_service(aws)
    assert service.make_collection(ref, overrides=overrides).outcome is Outcome.STARTED
    # The same rebuild delivered twice: one build.
    assert service.make_collection(ref, overrides=overrides).outcome is Outcome.STARTED
    state = service.build_state(BUCKET, prefix)
    assert state is not None and state.parts >= 16
    assert drain(aws, Worker(service, None), seed=7) == state.parts
    stored = aws["s3"].get_object(Bucket=BUCKET, Key="sets/two hundred.torrent")["Body"].read()
    assert stored == expected.torrent_bytes
    # The build kept its hash record: the next build of the same listing reads nothing.
    again = service.make_collection(ref, overrides=overrides, force=True)
    assert again.outcome is Outcome.CREATED and again.counters.bytes_read == 0


def test_an_object_overwritten_between_parts_fails_the_build(aws: dict[str, Any]) -> None:
    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=random.Random(4).randbytes(16 * PART))
    service = make_service(aws)
    service.make_torrent(ObjectRef(BUCKET, KEY))
    worker = Worker(service, None)
    messages = aws["sqs"].receive_message(QueueUrl=aws["url"], MaxNumberOfMessages=10)["Messages"]
    for message in messages[:3]:
        worker.handle_body(message["Body"])
    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=random.Random(5).randbytes(16 * PART))
    for message in messages[3:]:
        worker.handle_body(message["Body"])
    drain(aws, worker)
    state = service.build_state(BUCKET, KEY)
    assert state is not None and state.status == "failed"
    assert "changed or was deleted mid-build" in (state.reason or "")
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=KEY + ".torrent")


def test_an_object_deleted_mid_build_leaves_nothing(aws: dict[str, Any]) -> None:
    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=random.Random(6).randbytes(16 * PART))
    service = make_service(aws)
    service.make_torrent(ObjectRef(BUCKET, KEY))
    worker = Worker(service, None)
    messages = aws["sqs"].receive_message(QueueUrl=aws["url"], MaxNumberOfMessages=2)["Messages"]
    worker.handle_body(messages[0]["Body"])
    aws["s3"].delete_object(Bucket=BUCKET, Key=KEY)
    drain(aws, worker)
    state = service.build_state(BUCKET, KEY)
    assert state is not None and state.status == "failed"
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="big/")
    ids = [item["backfill_id"]["S"] for item in aws["dynamodb"].scan(TableName=TABLE)["Items"]]
    assert not [item for item in ids if item.startswith(("fanout-part:", "fanout-manifest:"))]


def test_a_part_that_always_fails_fails_the_build_on_its_last_delivery(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3torrent.errors import TransientServiceError
    from s3torrent.fanout import builds

    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=random.Random(7).randbytes(16 * PART))
    service = make_service(aws)
    service.make_torrent(ObjectRef(BUCKET, KEY))
    worker = Worker(service, None)
    body = aws["sqs"].receive_message(QueueUrl=aws["url"])["Messages"][0]["Body"]
    broken = json.loads(body)["part"]
    original = builds.FanoutBuilds._hash_part

    def fail_one(self: Any, manifest: Any, index: int, *args: Any) -> Any:
        if index == broken:
            raise TransientServiceError("S3 keeps failing this part")
        return original(self, manifest, index, *args)

    monkeypatch.setattr(builds.FanoutBuilds, "_hash_part", fail_one)
    with pytest.raises(TransientServiceError):
        worker.handle_body(body)  # retried by SQS
    state = service.build_state(BUCKET, KEY)
    assert state is not None and state.status == "running"
    with pytest.raises(TransientServiceError):
        worker.handle_body(body, Delivery(last=True))  # then off to the DLQ
    state = service.build_state(BUCKET, KEY)
    assert state is not None and state.status == "failed"
    assert "S3 keeps failing this part" in (state.reason or "")
    drain(aws, worker)  # the other parts of a failed build do nothing
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=KEY + ".torrent")


def test_a_build_no_part_reports_for_longer_than_every_delivery_could_take_reads_failed(
    aws: dict[str, Any],
) -> None:
    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=random.Random(8).randbytes(16 * PART))
    service = make_service(aws, job_max_receives=3, job_visibility_seconds=600)
    service.make_torrent(ObjectRef(BUCKET, KEY))
    assert service.fanout is not None
    started = service.fanout.store.clock()
    service.fanout.store.clock = lambda: started + 3 * 600 + 200  # within the slack
    state = service.build_state(BUCKET, KEY)
    assert state is not None and state.status == "running"
    service.fanout.store.clock = lambda: started + 3 * 600 + 400
    state = service.build_state(BUCKET, KEY)
    assert state is not None and state.status == "failed"
    assert "dead-letter queue" in (state.reason or "")


def put_collection(aws: dict[str, Any], prefix: str, seed: int, count: int) -> None:
    rng = random.Random(seed)
    for index in range(count):
        size = rng.choice([0, 1, PIECE - 1, PIECE, PIECE + 1, rng.randrange(1, 5 * PIECE)])
        aws["s3"].put_object(
            Bucket=BUCKET, Key=f"{prefix}d{index % 7}/f {index:03}.bin", Body=rng.randbytes(size)
        )


@pytest.mark.parametrize("version", ["1", "2", "hybrid"])
def test_a_collection_rebuilt_in_parts_reads_only_what_its_record_lacks(
    aws: dict[str, Any], version: str
) -> None:
    prefix = "sets/kept/"
    ref = CollectionRef(BUCKET, prefix)
    overrides = {"meta_version": version}
    put_collection(aws, prefix, seed=1, count=60)
    service = make_service(aws)
    assert service.make_collection(ref, overrides=overrides).outcome is Outcome.STARTED
    drain(aws, Worker(service, None))
    # Changed: three new files sorting last (v1's append case) and, for v2 and hybrid, one
    # existing file rewritten; more than a part in all, so the rebuild fans out again.
    changed = {
        f"{prefix}z/new {n}.bin": random.Random(n).randbytes(5 * PIECE + n) for n in range(3)
    }
    if version != "1":
        changed[f"{prefix}d0/f 000.bin"] = random.Random(9).randbytes(3 * PIECE)
    for key, data in changed.items():
        aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=data)
    assert service.make_collection(ref, overrides=overrides).outcome is Outcome.STARTED
    state = service.build_state(BUCKET, prefix)
    assert state is not None and state.status == "running"
    drain(aws, Worker(service, None), seed=3)
    stored = service.collections.describe(ref)
    assert stored.record is not None and stored.outcome is Outcome.FRESH
    expected = make_service(aws, fanout=False).make_collection(
        ref, overrides=overrides, force=True, write=False
    )
    assert stored.torrent_bytes == expected.torrent_bytes
    new_bytes = sum(len(data) for data in changed.values())
    if version == "1":  # the new bytes and at most the piece before them
        assert new_bytes <= stored.record.bytes_read < new_bytes + PIECE
    else:
        assert stored.record.bytes_read == new_bytes


def test_a_part_finishing_after_its_build_failed_leaves_no_record(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3torrent.fanout import builds

    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=random.Random(10).randbytes(16 * PART))
    service = make_service(aws)
    service.make_torrent(ObjectRef(BUCKET, KEY))
    assert service.fanout is not None
    state = service.build_state(BUCKET, KEY)
    assert state is not None
    original = builds.FanoutBuilds._hash_part

    def another_part_fails_meanwhile(self: Any, manifest: Any, index: int, *args: Any) -> Any:
        hashes = original(self, manifest, index, *args)
        self._fail(state, "another part failed while this one hashed")
        return hashes

    monkeypatch.setattr(builds.FanoutBuilds, "_hash_part", another_part_fails_meanwhile)
    body = aws["sqs"].receive_message(QueueUrl=aws["url"])["Messages"][0]["Body"]
    Worker(service, None).handle_body(body)
    ids = [item["backfill_id"]["S"] for item in aws["dynamodb"].scan(TableName=TABLE)["Items"]]
    assert not [item for item in ids if item.startswith(("fanout-part:", "fanout-manifest:"))]
    failed = service.build_state(BUCKET, KEY)
    assert failed is not None and failed.status == "failed" and failed.parts_done == 0


def test_a_builds_items_are_never_read_as_a_backfill(aws: dict[str, Any]) -> None:
    from s3torrent.backfill import ProgressStore

    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=random.Random(11).randbytes(16 * PART))
    make_service(aws).make_torrent(ObjectRef(BUCKET, KEY))
    ids = [item["backfill_id"]["S"] for item in aws["dynamodb"].scan(TableName=TABLE)["Items"]]
    kinds = {item.split(":")[0] for item in ids}
    assert {"fanout", "fanout-of", "fanout-manifest"} <= kinds
    progress = ProgressStore(aws["dynamodb"], TABLE)
    assert [item for item in ids if progress.get(item) is not None] == []
