"""The worker handler, driven with SQS and S3 Batch Operations events from tests/events.

S3, SQS and DynamoDB are moto in-process; the only double is a TorrentService subclass that
raises a retryable error for one key (a real 503 from S3 is in the integration tests).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto import mock_aws

from s3torrent import worker
from s3torrent.errors import AccessDenied, OutOfTime, TransientS3Error
from s3torrent.handlers import worker as worker_handler
from s3torrent.handlers.runtime import Runtime
from s3torrent.messages import JobMessage
from s3torrent.model import ObjectRef, TorrentResult
from s3torrent.observability import logger
from s3torrent.service import TorrentService
from s3torrent.torrent import read_torrent
from tests.support.handlers import (
    SESSION,
    FakeContext,
    client,
    emf_metrics,
    load_event,
    make_resources,
    sqs_event,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

BUCKET = "s3torrent-demo"
KEY = "reports/Q1 2024 summary.pdf"
DECODED_KEYS = [
    "reports/Q1 2024 summary.pdf",
    "math/a+b=c.txt",
    "café/menü ✓.txt",
    "progress/100% done.bin",
]


class FlakyService(TorrentService):
    """The real service, except that keys containing 'flaky' meet a throttled S3."""

    def make_torrent(self, ref: ObjectRef, **options: Any) -> TorrentResult:
        if "flaky" in ref.key:
            raise TransientS3Error(f"GetObject {ref.uri}: SlowDown (HTTP 503)")
        return super().make_torrent(ref, **options)


@dataclass
class Stack:
    s3: Any
    runtime: Runtime
    table: str


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        s3 = client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        resources = make_resources()
        settings = resources.settings(
            {
                "buckets": [{"name": BUCKET}],
            }
        )
        runtime = Runtime(settings, session=SESSION)
        runtime.service = FlakyService(settings, runtime.objects)
        monkeypatch.setattr(worker_handler, "runtime", runtime)
        yield Stack(s3, runtime, resources.table)


def handle(event: dict[str, Any]) -> dict[str, Any]:
    return dict(worker_handler.lambda_handler(event, FakeContext()))


def created_event(keys: list[str], bucket: str = BUCKET) -> dict[str, Any]:
    """The fixture's ObjectCreated message, once per key (keys given already URL-encoded)."""
    template = load_event("sqs_s3_object_created.json", bucket)["Records"][0]["body"]
    bodies = []
    for key in keys:
        body = json.loads(template)
        body["Records"][0]["s3"]["object"]["key"] = key
        bodies.append(json.dumps(body))
    return sqs_event(bodies)


def torrent_versions(s3: Any, key: str) -> list[bytes]:
    listing = s3.list_object_versions(Bucket=BUCKET, Prefix=key + ".torrent")
    return [
        s3.get_object(Bucket=BUCKET, Key=key + ".torrent", VersionId=v["VersionId"])["Body"].read()
        for v in listing.get("Versions", [])
        if v["Key"] == key + ".torrent"
    ]


def reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(getattr(r, "reason", "")) for r in caplog.records if hasattr(r, "reason")]


def test_notification_keys_are_url_decoded(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in DECODED_KEYS:
        stack.s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode() * 500)
    event = load_event("sqs_s3_object_created.json")
    assert handle(event) == {"batchItemFailures": []}
    for key in DECODED_KEYS:
        data = stack.s3.get_object(Bucket=BUCKET, Key=key + ".torrent")["Body"].read()
        assert read_torrent(data).name == key.rsplit("/", 1)[-1]
    assert emf_metrics(capsys.readouterr().out)["TorrentsCreated"] == 4
    assert logger.get_correlation_id() == event["Records"][0]["messageId"]


def test_s3_test_event_is_acknowledged(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert handle(load_event("sqs_s3_test_event.json")) == {"batchItemFailures": []}
    assert "s3:TestEvent acknowledged" in caplog.messages


def test_poison_records_are_acknowledged_with_their_reason(
    stack: Stack, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    assert handle(load_event("sqs_poison.json")) == {"batchItemFailures": []}
    logged = reasons(caplog)
    assert "malformed message body: not JSON" in logged
    assert "unknown message type" in logged
    assert "unsupported S3 event type" in logged
    assert any(r.startswith("malformed job message: key") for r in logged)
    assert any("no such object" in r for r in logged)  # deleted since its event
    metrics = emf_metrics(capsys.readouterr().out)
    assert metrics["TorrentsFailed"] == 4 and metrics["TorrentsSkipped"] == 1


def test_a_retryable_failure_fails_only_its_record(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    for key in ("a.bin", "flaky.bin", "c.bin"):
        stack.s3.put_object(Bucket=BUCKET, Key=key, Body=b"data" * 1000)
    event = created_event(["a.bin", "flaky.bin", "c.bin"])
    event["Records"].insert(1, load_event("sqs_poison.json")["Records"][0])  # a poison one too
    response = handle(event)
    flaky_id = event["Records"][2]["messageId"]
    assert response == {"batchItemFailures": [{"itemIdentifier": flaky_id}]}
    for key in ("a.bin", "c.bin"):
        assert stack.s3.head_object(Bucket=BUCKET, Key=key + ".torrent")
    assert torrent_versions(stack.s3, "flaky.bin") == []
    assert any("SlowDown" in r for r in reasons(caplog))


def test_a_batch_of_only_retryable_failures_reports_them_all(stack: Stack) -> None:
    event = created_event(["flaky-1.bin", "flaky-2.bin"])
    response = handle(event)
    assert sorted(item["itemIdentifier"] for item in response["batchItemFailures"]) == sorted(
        record["messageId"] for record in event["Records"]
    )


def test_duplicate_deliveries_write_one_torrent(stack: Stack) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"q1" * 50_000)
    encoded = "reports/Q1+2024+summary.pdf"
    assert handle(created_event([encoded, encoded])) == {"batchItemFailures": []}
    assert handle(created_event([encoded])) == {"batchItemFailures": []}
    assert len(torrent_versions(stack.s3, KEY)) == 1


def test_concurrent_duplicates_write_identical_bytes(stack: Stack) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"q1" * 500_000)
    body = created_event(["reports/Q1+2024+summary.pdf"])["Records"][0]["body"]
    start = threading.Barrier(4)

    def deliver() -> None:
        start.wait()
        stack.runtime.worker.handle_body(body)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    versions = torrent_versions(stack.s3, KEY)
    assert 1 <= len(versions) <= 4
    assert len(set(versions)) == 1, "duplicates may rewrite, never write a different torrent"


def test_an_old_event_never_makes_a_torrent_of_an_old_version(stack: Stack) -> None:
    old = stack.s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"version one" * 1000)
    new = stack.s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"version two" * 1000)
    event = created_event(["reports/Q1+2024+summary.pdf"])
    body = json.loads(event["Records"][0]["body"])
    body["Records"][0]["s3"]["object"].update(versionId=old["VersionId"], eTag=old["ETag"])
    event["Records"][0]["body"] = json.dumps(body)
    assert handle(event) == {"batchItemFailures": []}
    head = stack.s3.head_object(Bucket=BUCKET, Key=KEY + ".torrent")
    assert head["Metadata"]["source-etag"] == new["ETag"]
    torrent = read_torrent(stack.s3.get_object(Bucket=BUCKET, Key=KEY + ".torrent")["Body"].read())
    assert torrent.length == len(b"version two" * 1000)


def test_object_removed_deletes_our_torrent_only_when_the_object_is_gone(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"x" * 10_000)
    handle(created_event(["reports/Q1+2024+summary.pdf"]))
    assert handle(load_event("sqs_s3_object_removed.json")) == {"batchItemFailures": []}
    assert stack.s3.head_object(Bucket=BUCKET, Key=KEY + ".torrent")  # the object is still there

    stack.s3.delete_object(Bucket=BUCKET, Key=KEY)  # a delete marker: the object is gone
    capsys.readouterr()
    assert handle(load_event("sqs_s3_delete_marker.json")) == {"batchItemFailures": []}
    listing = stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=KEY)
    assert listing.get("KeyCount", 0) == 0
    assert emf_metrics(capsys.readouterr().out)["TorrentsDeleted"] == 1


def test_events_for_torrent_keys_are_ignored(stack: Stack) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key=KEY + ".torrent", Body=b"d1:ai1ee")
    assert handle(load_event("sqs_s3_torrent_key.json")) == {"batchItemFailures": []}
    keys = [o["Key"] for o in stack.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys == [KEY + ".torrent"]


def test_job_message_with_overrides_and_backfill_progress(stack: Stack) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"j" * 70_000)
    stack.runtime.progress.create("bf-1", BUCKET, "")
    event = load_event("sqs_job.json")
    body = json.loads(event["Records"][0]["body"])
    event["Records"][0]["body"] = json.dumps({**body, "backfill_id": "bf-1"})
    assert handle(event) == {"batchItemFailures": []}
    torrent = read_torrent(stack.s3.get_object(Bucket=BUCKET, Key=KEY + ".torrent")["Body"].read())
    assert torrent.info_hash_v1 and not torrent.info_hash_v2  # meta_version "1"
    progress = stack.runtime.progress.get("bf-1")
    assert progress is not None and progress.counters["done"] == 1


def test_batch_operations_task_results(stack: Stack) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"b" * 40_000)
    event = load_event("s3_batch_operations.json")
    expected = load_event("s3_batch_operations_response.json")
    response = handle(event)
    assert {k: v for k, v in response.items() if k != "results"} == {
        k: v for k, v in expected.items() if k != "results"
    }
    (result,) = response["results"]
    assert result["taskId"] == expected["results"][0]["taskId"]
    assert result["resultCode"] == "Succeeded"
    assert result["resultString"].startswith(f"created: {KEY}.torrent")

    event["tasks"] = [
        {**event["tasks"][0], "taskId": "t-missing", "s3Key": "no/such+key"},
        {**event["tasks"][0], "taskId": "t-flaky", "s3Key": "flaky%2Bone"},
        {**event["tasks"][0], "taskId": "t-again"},
    ]
    codes = {r["taskId"]: (r["resultCode"], r["resultString"]) for r in handle(event)["results"]}
    assert codes["t-missing"][0] == "PermanentFailure" and "NoSuchKey" in codes["t-missing"][1]
    assert codes["t-flaky"][0] == "TemporaryFailure"
    assert codes["t-again"][0] == "Succeeded" and codes["t-again"][1].startswith("fresh:")


@pytest.mark.parametrize(
    "body",
    [
        "",
        "null",
        "[]",
        '"text"',
        '{"Records": "x"}',
        '{"Records": [1, "a", {}, {"s3": null}]}',
        '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}, "object": {}}}]}',
        '{"Type": "Notification", "Message": "{\\"Event\\": \\"s3:TestEvent\\"}"}',
        '{"type": "s3torrent.job", "bucket": "s3torrent-demo", "key": "x", "overrides": {"no": 1}}',
        '{"type": "s3torrent.job", "bucket": "elsewhere", "key": "x"}',
    ],
)
def test_odd_bodies_are_acknowledged(stack: Stack, body: str) -> None:
    assert handle(sqs_event([body])) == {"batchItemFailures": []}


def test_the_invocation_deadline_stops_only_unfinished_reads() -> None:
    ref = ObjectRef("b", "k")
    short = worker._deadline(ref, lambda: worker.WRITE_MARGIN_SECONDS - 1)
    assert short is not None
    with pytest.raises(OutOfTime, match="1 of 2 bytes hashed"):
        short(1, 2)
    short(2, 2)  # hashed: writing the torrent takes a second, not the margin
    plenty = worker._deadline(ref, lambda: worker.WRITE_MARGIN_SECONDS + 1)
    assert plenty is not None
    plenty(1, 2)
    assert worker._deadline(ref, None) is None  # no context: no deadline (CLI, tests)


class DyingService(FlakyService):
    """Keys containing 'dies' end the attempt the way a killed worker does: not with one of
    our errors (a MemoryError, here), so none of the handler's error paths runs. Keys
    containing 'denied' meet S3's refusal, which no retry changes."""

    def make_torrent(self, ref: ObjectRef, **options: Any) -> TorrentResult:
        if "dies" in ref.key:
            raise MemoryError("the function ran out of memory")
        if "denied" in ref.key:
            raise AccessDenied(f"GetObject {ref.uri}: access denied (403: Forbidden)")
        return super().make_torrent(ref, **options)


def job_event(refs: list[ObjectRef], backfill_id: str, receives: int) -> dict[str, Any]:
    bodies = [
        JobMessage(bucket=ref.bucket, key=ref.key, backfill_id=backfill_id).to_body()
        for ref in refs
    ]
    event = sqs_event(bodies)
    for record in event["Records"]:
        record["attributes"]["ApproximateReceiveCount"] = str(receives)
    return event


@pytest.mark.parametrize(
    ("receives", "expected"),
    [
        # Earlier deliveries count only what ended: the flaky and dying jobs come back.
        (1, {"done": 3, "failed": 1}),
        # The last one: whatever happened, every job is counted once, and the backfill ends.
        (5, {"done": 3, "failed": 3}),
    ],
)
def test_a_backfill_counts_each_job_once_however_its_last_delivery_ends(
    stack: Stack, receives: int, expected: dict[str, int]
) -> None:
    """Made, skipped, gone, refused, throttled, and killed (which runs no error path of ours)."""
    stack.runtime.service = DyingService(stack.runtime.settings, stack.runtime.objects)
    stack.s3.put_object(Bucket=BUCKET, Key="made.bin", Body=b"m" * 40_000)
    stack.s3.put_object(Bucket=BUCKET, Key="empty.bin", Body=b"")  # skipped: 0 bytes
    stack.s3.put_object(Bucket=BUCKET, Key="dies.bin", Body=b"d" * 40_000)
    keys = ("made.bin", "empty.bin", "gone.bin", "denied.bin", "flaky.bin", "dies.bin")
    refs = [ObjectRef(BUCKET, key) for key in keys]
    progress = stack.runtime.progress
    assert progress.create("bf-last", BUCKET, "")
    assert stack.runtime.settings.job_max_receives == 5

    response = handle(job_event(refs, "bf-last", receives))

    # flaky and dies go back to SQS (or, after the 5th receive, on to the DLQ).
    assert len(response["batchItemFailures"]) == 2
    state = progress.get("bf-last")
    assert state is not None
    assert {name: state.counters[name] for name in expected} == expected
