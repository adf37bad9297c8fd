"""The worker over HTTP: moto's server sends real S3 notifications to a real SQS queue; the
handler gets them as Lambda would. A 503 comes from a real HTTP proxy, not a stub.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import libtorrent as lt
import pytest

from s3torrent.handlers import worker as worker_handler
from s3torrent.handlers.runtime import Runtime
from tests.support.handlers import (
    SESSION,
    FakeContext,
    FaultyProxy,
    client,
    drain,
    load_event,
    make_resources,
    sqs_event,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

KEYS = [
    "reports/Q1 2024 summary.pdf",
    "math/a+b=c.txt",
    "café/menü ✓.txt",
    "progress/100% done.bin",
    "flaky/throttled.bin",
]


@dataclass
class Stack:
    s3: Any
    sqs: Any
    bucket: str
    events_url: str
    runtime: Runtime


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultyProxy]:
    """S3 through a proxy that throttles every request for a key under flaky/."""
    faulty = FaultyProxy(moto_endpoint, lambda method, path: "/flaky/" in path)
    yield faulty
    faulty.close()


@pytest.fixture
def stack(
    moto_endpoint: str, bucket: str, proxy: FaultyProxy, monkeypatch: pytest.MonkeyPatch
) -> Stack:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    s3 = client("s3", moto_endpoint)
    sqs = client("sqs", moto_endpoint)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    events_url = sqs.create_queue(QueueName=f"events-{bucket}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=events_url, AttributeNames=["QueueArn"])
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn["Attributes"]["QueueArn"],
                    "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                }
            ]
        },
    )
    resources = make_resources(moto_endpoint)
    settings = resources.settings(
        {
            "buckets": [{"name": bucket}],
            "endpoint_url": proxy.url,
        }
    )
    runtime = Runtime(settings, session=SESSION)
    monkeypatch.setattr(worker_handler, "runtime", runtime)
    return Stack(s3, sqs, bucket, events_url, runtime)


def received(stack: Stack) -> dict[str, Any]:
    """What S3 sent to the queue, as the SQS event Lambda would deliver."""
    return sqs_event(drain(stack.sqs, stack.events_url), "s3torrent-worker")


def handle(event: dict[str, Any]) -> dict[str, Any]:
    return dict(worker_handler.lambda_handler(event, FakeContext()))


def test_real_notifications_make_torrents_and_a_throttled_one_is_retried(stack: Stack) -> None:
    for key in KEYS:
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=key.encode() * 3000)
    event = received(stack)
    bodies = [json.loads(r["body"]) for r in event["Records"]]
    assert bodies[0].get("Event") == "s3:TestEvent"  # S3 says hello first
    assert len(bodies) == 1 + len(KEYS)

    response = handle(event)
    flaky = [
        r["messageId"] for r in event["Records"] if "flaky" in r["body"] and "Records" in r["body"]
    ]
    assert response == {"batchItemFailures": [{"itemIdentifier": flaky[0]}]}
    for key in KEYS[:-1]:
        data = stack.s3.get_object(Bucket=stack.bucket, Key=key + ".torrent")["Body"].read()
        info = lt.torrent_info(cast(Any, lt.bdecode(data)))
        assert info.name() == key.rsplit("/", 1)[-1]
        assert info.total_size() == len(key.encode() * 3000)
        head = stack.s3.head_object(Bucket=stack.bucket, Key=key + ".torrent")
        assert head["Metadata"]["info-hash-v1"] == str(info.info_hashes().v1)

    # Our own .torrent writes come back as events: all acknowledged, none written.
    echoes = received(stack)
    assert len(echoes["Records"]) == len(KEYS) - 1
    assert handle(echoes) == {"batchItemFailures": []}
    assert received(stack)["Records"] == []


def test_duplicate_notifications_write_one_torrent(stack: Stack) -> None:
    key = KEYS[2]
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=b"menu" * 100_000)
    event = received(stack)
    created = [r for r in event["Records"] if "ObjectCreated" in r["body"]]
    duplicated = {"Records": created * 3}  # SQS at-least-once, three times over
    assert handle(duplicated) == {"batchItemFailures": []}
    assert handle({"Records": created}) == {"batchItemFailures": []}
    versions = stack.s3.list_object_versions(Bucket=stack.bucket, Prefix=key + ".torrent")
    assert len(versions.get("Versions", [])) == 1


def test_removal_deletes_the_torrent_we_wrote(stack: Stack) -> None:
    key = KEYS[0]
    version = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=b"x" * 50_000)["VersionId"]
    handle(received(stack))
    handle(received(stack))  # the torrent's own creation event
    # moto sends no ObjectRemoved:DeleteMarkerCreated (S3 does; the unit tests cover it with
    # the real shape): delete the only version, for which it sends ObjectRemoved:Delete.
    stack.s3.delete_object(Bucket=stack.bucket, Key=key, VersionId=version)
    removal = received(stack)
    assert [json.loads(r["body"])["Records"][0]["eventName"] for r in removal["Records"]] == [
        "ObjectRemoved:Delete"
    ]
    assert handle(removal) == {"batchItemFailures": []}
    listing = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=key)
    assert listing.get("KeyCount", 0) == 0


def test_batch_operations_over_http(stack: Stack) -> None:
    key = KEYS[0]
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=b"b" * 70_000)
    event = load_event("s3_batch_operations.json", stack.bucket)
    event["tasks"].append({**event["tasks"][0], "taskId": "throttled", "s3Key": "flaky/x.bin"})
    started = time.monotonic()
    results = {r["taskId"]: r for r in handle(event)["results"]}
    assert results["dGFza2lkZ29lc2hlcmUK"]["resultCode"] == "Succeeded"
    assert results["throttled"]["resultCode"] == "TemporaryFailure"
    assert "503" in results["throttled"]["resultString"]
    assert time.monotonic() - started < 60
