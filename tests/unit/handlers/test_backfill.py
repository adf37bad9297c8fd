"""The backfill handler, driven with EventBridge and SQS events (moto in-process).

A walk is decided from the listing alone; steps hand over through continuation messages on
the backfill queue; a step delivered twice queues its jobs once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto import mock_aws

from s3torrent.backfill.progress import StepClaim
from s3torrent.handlers import backfill
from s3torrent.handlers.runtime import Runtime
from s3torrent.publishing import FeedEntry
from tests.support.handlers import (
    SESSION,
    FakeContext,
    age,
    client,
    drain,
    load_event,
    make_resources,
    sqs_event,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

BUCKET = "s3torrent-demo"
OTHER = "second-bucket"


@dataclass
class Stack:
    s3: Any
    sqs: Any
    runtime: Runtime
    queue_url: str
    backfill_queue_url: str


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        s3 = client("s3")
        for name in (BUCKET, OTHER):
            s3.create_bucket(Bucket=name)
        resources = make_resources()
        settings = resources.settings(
            {
                "buckets": [{"name": BUCKET}, {"name": OTHER, "prefix": "media/"}],
            }
        )
        runtime = Runtime(settings, session=SESSION)
        runtime.backfills.page_size = 10
        monkeypatch.setattr(backfill, "runtime", runtime)
        yield Stack(s3, client("sqs"), runtime, resources.queue_url, resources.backfill_queue_url)


def populate(stack: Stack, count: int) -> set[str]:
    """`count` objects: a third fresh (and in the feed index), a sixth stale, the rest missing;
    returns what must queue."""
    s3 = stack.s3
    expected = set()
    listed = []
    for i in range(count):
        key = f"data/{i % 7}/file {i:04d}+é.bin"
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x" * (i + 1))
        if i % 3 == 0:  # fresh: the torrent is newer than the object, and the feeds list it
            s3.put_object(Bucket=BUCKET, Key=key + ".torrent", Body=b"d")
            listed.append(
                FeedEntry(BUCKET, key, i + 1, 1, None, None, "magnet:?", datetime.now(UTC))
            )
        elif i % 6 == 1:  # stale: the torrent is older than the object
            s3.put_object(Bucket=BUCKET, Key=key + ".torrent", Body=b"d")
            age(BUCKET, key + ".torrent", timedelta(hours=1))
            expected.add(key)
        else:
            expected.add(key)
    s3.put_object(Bucket=BUCKET, Key="data/empty.bin", Body=b"")  # skipped: 0 bytes
    s3.put_object(Bucket=BUCKET, Key="data/folder/", Body=b"")  # skipped: a marker
    stack.runtime.feed_index.put_many(listed)
    return expected


def run_backfill(stack: Stack, context: FakeContext | None = None) -> list[dict[str, Any]]:
    """Deliver backfill-queue messages to the handler until none is left; returns them."""
    delivered = []
    while bodies := drain(stack.sqs, stack.backfill_queue_url):
        for body in bodies:
            response = backfill.lambda_handler(
                sqs_event([body], "s3torrent-backfill"), context or FakeContext()
            )
            assert response == {"batchItemFailures": []}
            delivered.append(json.loads(body))
    return delivered


def queued_keys(stack: Stack) -> list[str]:
    return [json.loads(body)["key"] for body in drain(stack.sqs, stack.queue_url)]


def test_scheduled_event_starts_one_backfill_per_configured_scope(stack: Stack) -> None:
    event = load_event("eventbridge_scheduled.json")
    first = backfill.lambda_handler(event, FakeContext())
    assert len(first["started"]) == 2
    starts = [json.loads(b) for b in drain(stack.sqs, stack.backfill_queue_url)]
    assert {(s["bucket"], s["prefix"]) for s in starts} == {(BUCKET, ""), (OTHER, "media/")}
    assert all(s["backfill_id"].startswith("sched-20261125T030000Z-") for s in starts)
    # EventBridge delivers at least once: the same event starts nothing new.
    again = backfill.lambda_handler(event, FakeContext())
    assert again["started"] == first["started"]
    for backfill_id in first["started"]:
        progress = stack.runtime.progress.get(backfill_id)
        assert progress is not None and progress.status == "queued"


def test_walk_queues_exactly_the_missing_and_stale(stack: Stack) -> None:
    expected = populate(stack, 60)
    backfill_id = stack.runtime.backfills.start(BUCKET, "")
    delivered = run_backfill(stack)
    assert len(delivered) == 1  # a whole budget of time: one step
    keys = queued_keys(stack)
    assert sorted(keys) == sorted(expected)
    progress = stack.runtime.progress.get(backfill_id)
    assert progress is not None
    counters = progress.counters
    assert counters["listed"] == 62 and counters["queued"] == len(expected)
    assert counters["fresh"] == 20 and counters["skipped"] == 2
    listed_keys = 62 + 30  # objects and their torrents
    assert counters["requests"] == -(-listed_keys // 10)  # one LIST per page, nothing else
    assert progress.status == "listed" and progress.state == "listed"


def test_walk_continues_when_time_runs_low(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = populate(stack, 60)
    monkeypatch.setattr(backfill, "MARGIN_MS", 60_000)
    backfill_id = stack.runtime.backfills.start(BUCKET, "")
    steps = []
    while bodies := drain(stack.sqs, stack.backfill_queue_url):
        (body,) = bodies
        # Each look at the clock costs 10 s: after the lease, two pages fit above the margin.
        context = FakeContext(budget_ms=60_000 + 20_000, tick_ms=10_000)
        backfill.lambda_handler(sqs_event([body]), context)
        steps.append(json.loads(body))
    assert [s["step"] for s in steps] == list(range(len(steps)))
    assert len(steps) == 5  # 92 keys in pages of 10: 2 pages a step
    assert all(s.get("planner_state") for s in steps[1:])
    keys = queued_keys(stack)
    assert sorted(keys) == sorted(expected) and len(keys) == len(set(keys))
    progress = stack.runtime.progress.get(backfill_id)
    assert progress is not None
    assert progress.counters["continuations"] == 4 and progress.counters["requests"] == 10


def test_a_step_delivered_twice_queues_once(stack: Stack) -> None:
    expected = populate(stack, 30)
    stack.runtime.backfills.start(BUCKET, "")
    (start,) = drain(stack.sqs, stack.backfill_queue_url)
    context = FakeContext(budget_ms=60_000 + 20_000, tick_ms=10_000)
    backfill.MARGIN_MS, saved = 60_000, backfill.MARGIN_MS
    try:
        backfill.lambda_handler(sqs_event([start]), context)
        first = queued_keys(stack)
        (continuation,) = drain(stack.sqs, stack.backfill_queue_url)  # step 1
        # SQS delivers step 0 again (say, its deletion failed): nothing is queued twice, and
        # the continuation, already sent, may be sent again but is walked once.
        backfill.lambda_handler(sqs_event([start]), FakeContext())
        assert queued_keys(stack) == []
        resent = drain(stack.sqs, stack.backfill_queue_url)
        assert resent in ([], [continuation])
        for body in [continuation, continuation]:
            backfill.lambda_handler(sqs_event([body]), FakeContext())
        rest = queued_keys(stack)
        while bodies := drain(stack.sqs, stack.backfill_queue_url):
            for body in bodies:
                backfill.lambda_handler(sqs_event([body]), FakeContext())
            rest += queued_keys(stack)
    finally:
        backfill.MARGIN_MS = saved
    assert sorted(first + rest) == sorted(expected)


def test_a_lost_continuation_is_sent_again_by_the_next_delivery(stack: Stack) -> None:
    populate(stack, 30)
    stack.runtime.backfills.start(BUCKET, "")
    (start,) = drain(stack.sqs, stack.backfill_queue_url)
    backfill.MARGIN_MS, saved = 60_000, backfill.MARGIN_MS
    try:
        backfill.lambda_handler(sqs_event([start]), FakeContext(budget_ms=80_000, tick_ms=10_000))
    finally:
        backfill.MARGIN_MS = saved
    (continuation,) = drain(stack.sqs, stack.backfill_queue_url)  # ... and lost
    backfill.lambda_handler(sqs_event([start]), FakeContext())  # step 0 comes back
    assert drain(stack.sqs, stack.backfill_queue_url) == [continuation]


def test_a_step_leased_elsewhere_is_retried_later(stack: Stack) -> None:
    stack.runtime.backfills.start(BUCKET, "")
    (start,) = drain(stack.sqs, stack.backfill_queue_url)
    backfill_id = json.loads(start)["backfill_id"]
    claim = stack.runtime.progress.claim_step(backfill_id, 0, "someone-else", 600)
    assert claim is StepClaim.CLAIMED
    event = sqs_event([start])
    response = backfill.lambda_handler(event, FakeContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}


def test_poison_backfill_messages_are_acknowledged(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    unknown = json.dumps({"type": "s3torrent.backfill", "backfill_id": "nope", "bucket": BUCKET})
    event = sqs_event(["{oops", json.dumps({"type": "s3torrent.job"}), unknown])
    assert backfill.lambda_handler(event, FakeContext()) == {"batchItemFailures": []}
    logged = [str(getattr(r, "reason", "")) for r in caplog.records]
    assert sum("not a backfill message" in r for r in logged) == 2
    assert any("no backfill with id 'nope'" in r for r in logged)


def test_a_backfill_of_a_missing_bucket_fails_for_good(stack: Stack) -> None:
    stack.s3.delete_bucket(Bucket=OTHER)
    backfill_id = stack.runtime.backfills.start(OTHER, "media/")
    run_backfill(stack)
    progress = stack.runtime.progress.get(backfill_id)
    assert progress is not None and progress.status == "failed"
    assert progress.error is not None and progress.error.startswith("NoSuchBucket")


def test_the_packaged_start_fixture(stack: Stack) -> None:
    stack.runtime.progress.create("0123456789abcdef0123456789abcdef", BUCKET, "")
    populate(stack, 6)
    event = load_event("sqs_backfill_start.json")
    assert backfill.lambda_handler(event, FakeContext()) == {"batchItemFailures": []}
    assert len(queued_keys(stack)) == 4


def test_job_queue_sends_in_tens(stack: Stack) -> None:
    from s3torrent.job_queue import JobQueue
    from s3torrent.messages import JobMessage

    queue = JobQueue(client("sqs"), stack.queue_url, sleep=lambda _: None)
    keys = [f"k{i}\x01é\ud7ff" for i in range(23)]
    bodies = [JobMessage(bucket=BUCKET, key=key).to_body() for key in keys]
    # SQS refuses characters S3 keys may hold (U+0001 ...): the bodies are ASCII JSON.
    assert all(body.isascii() for body in bodies)
    assert queue.send_all(bodies) == []
    assert queue.requests == 3
    received = drain(stack.sqs, stack.queue_url)
    assert sorted(json.loads(b)["key"] for b in received) == sorted(keys)
