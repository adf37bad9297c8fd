"""A backfill fills the feed index: fresh torrents the index does not list (made before
publishing existed) get a job, which lists them; listed ones cost a lookup, never a job. At
most one BatchGetItem per 100 fresh objects (moto in-process, the backfill and worker handlers
driven with SQS events)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import feedparser
import pytest
from moto import mock_aws

from s3torrent.handlers import api, backfill
from s3torrent.handlers.runtime import Runtime
from s3torrent.model import ObjectRef, Outcome
from s3torrent.publishing import FeedEntry
from tests.support.handlers import SESSION, FakeContext, api_body, client, drain, make_resources
from tests.support.handlers import sqs_event as sqs_records
from tests.unit.publishing.test_feeds import request

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

BUCKET = "old-torrents"


@dataclass
class Stack:
    s3: Any
    sqs: Any
    runtime: Runtime
    queue_url: str
    backfill_queue_url: str
    dynamodb_calls: list[str]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        s3 = client("s3")
        s3.create_bucket(Bucket=BUCKET)
        resources = make_resources()
        settings = resources.settings(
            {
                "buckets": [{"name": BUCKET}],
                "read_transport": "sdk",
            }
        )
        runtime = Runtime(settings, session=SESSION)
        runtime.backfills.page_size = 10
        calls: list[str] = []
        # The backfill's own client (the progress table's, which the index shares), counted.
        runtime.backfills.index.client.meta.events.register(
            "before-call.dynamodb", lambda model, **_: calls.append(model.name)
        )
        monkeypatch.setattr(backfill, "runtime", runtime)
        monkeypatch.setattr(api, "runtime", runtime)
        yield Stack(
            s3, client("sqs"), runtime, resources.queue_url, resources.backfill_queue_url, calls
        )


def run_backfill(stack: Stack) -> str:
    """A backfill of the whole bucket, walked to its end; its id."""
    backfill_id = stack.runtime.backfills.start(BUCKET, "")
    while bodies := drain(stack.sqs, stack.backfill_queue_url):
        for body in bodies:
            response = backfill.lambda_handler(sqs_records([body], "backfill"), FakeContext())
            assert response == {"batchItemFailures": []}
    return backfill_id


def queued_jobs(stack: Stack) -> list[str]:
    return drain(stack.sqs, stack.queue_url)


def bucket_feed() -> list[str]:
    response = api.lambda_handler(request(f"/feeds/{BUCKET}", {"limit": "200"}), FakeContext())
    assert response["statusCode"] == 200
    feed = feedparser.parse(api_body(response))
    assert not feed.bozo
    return [entry.title for entry in feed.entries]


def test_a_backfill_lists_fresh_torrents_the_index_lacks_and_then_queues_nothing(
    stack: Stack,
) -> None:
    made = [f"dir {i % 3}/sub/file {i:02d} & <é>.bin" for i in range(25)]
    for key in made:
        stack.s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode() * 300)
        result = stack.runtime.service.make_torrent(ObjectRef(BUCKET, key))
        assert result.outcome is Outcome.CREATED
    # Made before publishing existed: 15 of them are not in the index.
    unlisted = made[:15]
    for key in unlisted:
        stack.runtime.feed_index.forget_torrent(ObjectRef(BUCKET, key))
    missing = [f"new/{i}.bin" for i in range(3)]  # no torrent yet: queued as always
    for key in missing:
        stack.s3.put_object(Bucket=BUCKET, Key=key, Body=b"n" * 1000)
    assert sorted(bucket_feed()) == sorted(made[15:])

    stack.dynamodb_calls.clear()
    first = run_backfill(stack)
    jobs = queued_jobs(stack)
    assert sorted(json.loads(body)["key"] for body in jobs) == sorted(unlisted + missing)
    progress = stack.runtime.progress.get(first)
    assert progress is not None
    counters = progress.counters
    assert counters["queued"] == 18 and counters["fresh"] == 10 and counters["listed"] == 28
    lists = counters["requests"]  # ListObjectsV2 pages, 10 keys each: still all it counts
    assert lists == -(-(28 + 25) // 10)
    # The index lookups: at most one BatchGetItem per listing page of 10 keys here (one
    # per 100 fresh objects of a page in general).
    assert 0 < stack.dynamodb_calls.count("BatchGetItem") <= lists

    # The worker runs the jobs: the fresh torrents are found fresh and listed, the missing
    # made; every one counted done for the backfill.
    for body in jobs:
        stack.runtime.worker.handle_body(body)
    assert sorted(bucket_feed()) == sorted(made + missing)
    progress = stack.runtime.progress.get(first)
    assert progress is not None and progress.state == "complete"
    assert progress.counters["done"] == 18

    # A second backfill finds every torrent fresh and listed: no job at all.
    second = run_backfill(stack)
    assert queued_jobs(stack) == []
    progress = stack.runtime.progress.get(second)
    assert progress is not None
    assert progress.counters["queued"] == 0 and progress.counters["fresh"] == 28
    assert progress.state == "complete"


def test_a_page_of_1000_keys_costs_at_most_10_lookups(stack: Stack) -> None:
    stack.runtime.backfills.page_size = 1000
    index = stack.runtime.feed_index
    published = datetime(2026, 1, 1, tzinfo=UTC)
    entries = []
    for i in range(700):
        key = f"f/{i:04d}.bin"
        stack.s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        stack.s3.put_object(Bucket=BUCKET, Key=key + ".torrent", Body=b"d")  # fresh: newer
        if i % 7:
            entries.append(FeedEntry(BUCKET, key, 1, 1, f"{i:040x}", None, "magnet:?", published))
    index.put_many(entries)
    stack.dynamodb_calls.clear()
    backfill_id = run_backfill(stack)
    # 1,400 keys: a page of 1,000 (500 objects, their torrents) and one of 400 (200, 200).
    assert stack.dynamodb_calls.count("BatchGetItem") == 5 + 2
    keys = sorted(json.loads(body)["key"] for body in queued_jobs(stack))
    assert keys == [f"f/{i:04d}.bin" for i in range(0, 700, 7)]
    progress = stack.runtime.progress.get(backfill_id)
    assert progress is not None
    assert progress.counters["queued"] == 100 and progress.counters["fresh"] == 600
    assert progress.counters["requests"] == 2
