"""A backfill of 20,000 objects over HTTP (moto's server): exactly the missing and stale ones
are queued, through several continuations, at one ListObjectsV2 request per 1,000 keys.

The layout: 10,000 objects with a fresh torrent, 1,000 with a stale one (older than its
object), 10 that can never have one (5 empty, 5 folder markers) and 8,990 without: 9,990
jobs. The 31,010 keys are put straight into moto's S3 backend (this process serves them over
HTTP): through moto's server, PUTs ran at about 110/s with 16 threads on this 2-core machine,
which would take 5 minutes. Everything the backfill does goes over HTTP: S3, SQS, DynamoDB.

moto's SQS recomputes the visibility of every message in the queue, with a slow datetime
clock, several times per message sent or received: O(queue length) per message. Left to
grow to 10,000 messages, sending and reading them took over 5 minutes here. So each step
lists one page (1,000 keys, ~330 jobs) and the test reads the worker queue after each step,
and moto's SQS gets the local stack's fixes (s3torrent_local.moto_fixes: the same
answers, ~20x cheaper).
Run with `-s` to see the numbers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest

from s3torrent.handlers import backfill
from s3torrent.handlers.runtime import Runtime
from s3torrent.publishing import FeedEntry, FeedIndex
from s3torrent_local import moto_fixes
from tests.support.handlers import (
    MOTO_ACCOUNT,
    SESSION,
    FakeContext,
    client,
    drain,
    make_resources,
    sqs_event,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

OBJECTS = 20_000
FRESH = 10_000
STALE = 1_000
EMPTY = 5
MARKERS = 5


@pytest.fixture
def fast_sqs_clock() -> Iterator[None]:
    """The local stack's fixes to moto's SQS (moto_fixes), in this process's moto server."""
    moto_fixes.install()
    try:
        yield
    finally:
        moto_fixes.uninstall()


def populate(bucket: str, index: FeedIndex) -> set[str]:
    """Put the layout into moto's backend, the fresh torrents into the feed index (a fresh
    torrent the feeds lack would be queued, to list it); returns the keys that must be
    queued."""
    from datetime import UTC, datetime, timedelta

    from moto.s3.models import s3_backends

    backend = s3_backends[MOTO_ACCOUNT]["aws"]
    stored = backend.buckets[bucket].keys
    listed: list[FeedEntry] = []
    expected = set()
    skip = EMPTY + MARKERS
    for i in range(OBJECTS):
        folder = f"set-{i % 40:02d}/"
        if i < EMPTY:
            backend.put_object(bucket, f"{folder}empty-{i}.bin", b"")
            continue
        if i < skip:
            backend.put_object(bucket, f"{folder}marker-{i}/", b"")
            continue
        key = f"{folder}object {i:05d}+é.bin"
        backend.put_object(bucket, key, b"x")
        if i < skip + FRESH:
            backend.put_object(bucket, key + ".torrent", b"d")
            listed.append(FeedEntry(bucket, key, 1, 1, None, None, "magnet:?", datetime.now(UTC)))
        elif i < skip + FRESH + STALE:
            backend.put_object(bucket, key + ".torrent", b"d")
            stored[key + ".torrent"].last_modified -= timedelta(hours=1)
            expected.add(key)
        else:
            expected.add(key)
    index.put_many(listed)
    return expected


@pytest.fixture
def quiet_server() -> Iterator[None]:
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    yield
    werkzeug.setLevel(level)


def test_backfill_of_20000_objects(
    moto_endpoint: str,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    fast_sqs_clock: None,
    quiet_server: None,
) -> None:
    began = time.monotonic()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    sqs = client("sqs", moto_endpoint)
    resources = make_resources(moto_endpoint)
    expected = populate(bucket, FeedIndex(client("dynamodb", moto_endpoint), resources.table))
    populated = time.monotonic()
    assert len(expected) == OBJECTS - FRESH - EMPTY - MARKERS

    settings = resources.settings(
        {
            "buckets": [{"name": bucket}],
            "endpoint_url": moto_endpoint,
        }
    )
    runtime = Runtime(settings, session=SESSION)
    monkeypatch.setattr(backfill, "runtime", runtime)
    s3_requests: list[str] = []
    for s3 in {id(c): c for c in (runtime.objects.client, runtime.objects.data_client)}.values():
        s3.meta.events.register(
            "request-created.s3", lambda operation_name, **_: s3_requests.append(operation_name)
        )

    backfill_id = runtime.backfills.start(bucket, "")
    steps: list[str] = []
    jobs: list[str] = []
    walking = reading = 0.0
    # Each look at the clock costs 10 s of a budget 10 s above the margin: the lease takes
    # it, one page is listed (a step always makes progress), then the step hands over.
    tick = 10_000
    while bodies := drain(sqs, resources.backfill_queue_url):
        for body in bodies:
            started = time.monotonic()
            context = FakeContext(budget_ms=backfill.MARGIN_MS + tick, tick_ms=tick)
            response = backfill.lambda_handler(sqs_event([body], "s3torrent-backfill"), context)
            assert response == {"batchItemFailures": []}
            steps.append(body)
            walked = time.monotonic()
            jobs += drain(sqs, resources.queue_url)
            walking += walked - started
            reading += time.monotonic() - walked

    keys = [json.loads(body)["key"] for body in jobs]
    assert len(keys) == len(set(keys)), "a job was queued twice"
    assert set(keys) == expected

    keys_listed = OBJECTS + FRESH + STALE
    pages = -(-keys_listed // 1000)
    assert s3_requests == ["ListObjectsV2"] * pages
    progress = runtime.progress.get(backfill_id)
    assert progress is not None
    counters = dict(progress.counters)
    assert counters["requests"] == pages
    assert counters["listed"] == OBJECTS and counters["queued"] == len(expected)
    assert counters["fresh"] == FRESH and counters["skipped"] == EMPTY + MARKERS
    assert counters["continuations"] == len(steps) - 1 >= 1
    assert len(steps) == pages

    # A continuation delivered again after the walk ended queues nothing.
    backfill.lambda_handler(sqs_event([steps[1]]), FakeContext())
    assert drain(sqs, resources.queue_url) == []
    assert drain(sqs, resources.backfill_queue_url) == []

    sqs_requests = runtime.worker_queue.requests + runtime.backfill_queue.requests
    print(
        f"\nbackfill of {OBJECTS} objects ({keys_listed} keys): queued {len(keys)},"
        f" fresh {counters['fresh']}, skipped {counters['skipped']};"
        f" {len(s3_requests)} S3 requests (ListObjectsV2) ="
        f" {len(s3_requests) / OBJECTS * 1000:.2f} per 1,000 objects;"
        f" {sqs_requests} SQS send requests; {len(steps)} steps,"
        f" {counters['continuations']} continuations.\n"
        f"time: populate {populated - began:.1f}s, backfill steps {walking:.1f}s,"
        f" reading the worker queue {reading:.1f}s, total {time.monotonic() - began:.1f}s"
    )
