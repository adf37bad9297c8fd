"""A whole backfill over HTTP: POST /backfills, the walk in steps (a real clock with a tiny
budget, so every step hands over), the worker making the queued torrents, and
GET /backfills/{id} reporting it complete. Then a second walk costs LIST requests only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from s3torrent.handlers import api, backfill
from s3torrent.handlers import worker as worker_handler
from s3torrent.handlers.runtime import Runtime
from s3torrent.publishing import FeedEntry
from tests.support.handlers import (
    SESSION,
    FakeContext,
    age,
    api_body,
    chunks,
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


def test_backfill_end_to_end(
    moto_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    s3, sqs = client("s3", moto_endpoint), client("sqs", moto_endpoint)
    resources = make_resources(moto_endpoint)
    settings = resources.settings(
        {
            "buckets": [{"name": bucket, "prefix": "in/"}],
            "endpoint_url": moto_endpoint,
        }
    )
    runtime = Runtime(settings, session=SESSION)
    runtime.backfills.page_size = 7
    for module in (api, backfill, worker_handler):
        monkeypatch.setattr(module, "runtime", runtime)

    expected = set()
    for i in range(24):
        key = f"in/{i % 3}/obj {i:02d} ü+.bin"
        s3.put_object(Bucket=bucket, Key=key, Body=bytes([i]) * (1000 + i))
        if i % 4 == 0:
            s3.put_object(Bucket=bucket, Key=key + ".torrent", Body=b"d")  # fresh (by date)
            # ... and in the feeds (a fresh torrent they lack would be queued, to list it).
            entry = FeedEntry(bucket, key, 1000 + i, 1, None, None, "magnet:?", datetime.now(UTC))
            runtime.feed_index.put(entry)
        else:
            expected.add(key)
            if i % 4 == 1:
                s3.put_object(Bucket=bucket, Key=key + ".torrent", Body=b"d")
                age(bucket, key + ".torrent", timedelta(minutes=5))  # stale
    s3.put_object(Bucket=bucket, Key="out/ignored.bin", Body=b"outside the prefix")

    start = load_event("apigw_post_backfills.json")
    start["body"] = json.dumps({"bucket": bucket})  # the whole bucket: narrowed to in/
    accepted = json.loads(api_body(api.lambda_handler(start, FakeContext())))
    assert accepted["prefix"] == "in/"

    steps = 0
    while bodies := drain(sqs, resources.backfill_queue_url):
        for body in bodies:
            # A real clock, 1 ms above the margin: each step lists one page and hands over.
            context = FakeContext(budget_ms=backfill.MARGIN_MS + 1)
            assert backfill.lambda_handler(sqs_event([body]), context) == {"batchItemFailures": []}
            steps += 1
    jobs = [json.loads(body) for body in drain(sqs, resources.queue_url)]
    assert sorted(job["key"] for job in jobs) == sorted(expected)
    keys_listed = 24 + 12  # objects and their torrents under in/
    assert steps == -(-keys_listed // 7)

    status_event = load_event("apigw_get_backfill.json")
    status_event["path"] = accepted["location"]
    status = json.loads(api_body(api.lambda_handler(status_event, FakeContext())))
    assert status["status"] == "listed"
    assert (status["listed"], status["queued"], status["fresh"]) == (24, 18, 6)
    assert status["requests"] == steps and status["continuations"] == steps - 1

    for batch in chunks([json.dumps(job) for job in jobs], 10):
        assert worker_handler.lambda_handler(sqs_event(batch), FakeContext()) == {
            "batchItemFailures": []
        }
    status = json.loads(api_body(api.lambda_handler(status_event, FakeContext())))
    assert status["status"] == "complete" and status["done"] == 18 and status["failed"] == 0

    # Every torrent is now fresh: a second backfill queues nothing and only lists.
    requests: list[str] = []
    runtime.objects.client.meta.events.register(
        "request-created.s3", lambda operation_name, **_: requests.append(operation_name)
    )
    again = json.loads(api_body(api.lambda_handler(start, FakeContext())))
    while bodies := drain(sqs, resources.backfill_queue_url):
        for body in bodies:
            backfill.lambda_handler(sqs_event([body]), FakeContext())
    assert drain(sqs, resources.queue_url) == []
    status_event["path"] = again["location"]
    status = json.loads(api_body(api.lambda_handler(status_event, FakeContext())))
    assert status["status"] == "complete" and status["fresh"] == 24 and status["queued"] == 0
    pages = -(-(24 + 24) // 7)
    assert requests == ["ListObjectsV2"] * pages and status["requests"] == pages
