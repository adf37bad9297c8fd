"""Kept collections in the worker: S3 events under a kept prefix send one delayed rebuild per
window (a conditional mark in the progress table), and the rebuild brings the torrent up to
date. moto in-process; the table's clock is the test's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto import mock_aws

from s3torrent.collections import CollectionRef
from s3torrent.errors import InvalidInput
from s3torrent.handlers import worker as worker_handler
from s3torrent.handlers.runtime import Runtime
from s3torrent.job_queue import JobQueue
from s3torrent.messages import CollectionMessage
from s3torrent.model import Outcome
from s3torrent.settings import Settings
from s3torrent.torrent import read_collection_torrent
from tests.support.handlers import SESSION, FakeContext, client, make_resources, sqs_event
from tests.unit.handlers.test_worker import created_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

BUCKET = "s3torrent-demo"
PREFIX = "kept/set 1/"
DELAY = 30


@dataclass
class Kept:
    s3: Any
    runtime: Runtime
    sent: list[tuple[str, int]]  # (body, delay) of every message the worker sent
    now: list[float]


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> Iterator[Kept]:
    with mock_aws():
        s3 = client("s3")
        s3.create_bucket(Bucket=BUCKET)
        resources = make_resources()
        settings = resources.settings(
            {
                "buckets": [{"name": BUCKET}],
                "collections": [{"bucket": BUCKET, "prefix": PREFIX, "meta_version": "hybrid"}],
                "collection_delay_seconds": DELAY,
            }
        )
        runtime = Runtime(settings, session=SESSION)
        now = [1_800_000_000.5]
        runtime.progress.clock = lambda: now[0]
        sent: list[tuple[str, int]] = []

        def send(self: JobQueue, body: str, *, delay_seconds: int = 0) -> None:
            sent.append((body, delay_seconds))

        monkeypatch.setattr(JobQueue, "send", send)
        monkeypatch.setattr(worker_handler, "runtime", runtime)
        yield Kept(s3, runtime, sent, now)


def handle(event: dict[str, Any]) -> dict[str, Any]:
    return dict(worker_handler.lambda_handler(event, FakeContext()))


def upload(kept: Kept, names: list[str], body: bytes = b"x" * 1000) -> None:
    for name in names:
        kept.s3.put_object(Bucket=BUCKET, Key=PREFIX + name, Body=body)
    keys = [(PREFIX + name).replace(" ", "+") for name in names]
    for start in range(0, len(keys), 10):
        assert handle(created_event(keys[start : start + 10])) == {"batchItemFailures": []}


def collection_jobs(kept: Kept) -> list[tuple[str, int]]:
    return [(body, delay) for body, delay in kept.sent if '"s3torrent.collection"' in body]


def test_a_burst_sends_one_delayed_rebuild_per_window(kept: Kept) -> None:
    upload(kept, [f"f{i:03}.bin" for i in range(120)])
    jobs = collection_jobs(kept)
    assert jobs == [(CollectionMessage(bucket=BUCKET, prefix=PREFIX).to_body(), DELAY)]
    assert kept.s3.head_object(Bucket=BUCKET, Key=PREFIX + "f007.bin.torrent")  # as before
    kept.now[0] += DELAY - 1.0  # the window: still absorbed
    upload(kept, ["late.bin"])
    assert len(collection_jobs(kept)) == 1
    kept.now[0] += 1.0  # the job is delivered now: a change from here on sends the next one
    upload(kept, ["later.bin"])
    assert len(collection_jobs(kept)) == 2

    assert handle(sqs_event([jobs[0][0]])) == {"batchItemFailures": []}
    data = kept.s3.get_object(Bucket=BUCKET, Key="kept/set 1.torrent")["Body"].read()
    torrent = read_collection_torrent(data)
    assert len(torrent.files) == 122
    assert torrent.meta_version == "hybrid"  # the kept collection's own meta version


def test_the_rebuild_follows_overwrites_and_deletes(kept: Kept) -> None:
    upload(kept, ["a.bin", "b.bin"])
    job = sqs_event([CollectionMessage(bucket=BUCKET, prefix=PREFIX).to_body()])
    assert handle(job) == {"batchItemFailures": []}
    kept.s3.put_object(Bucket=BUCKET, Key=PREFIX + "a.bin", Body=b"new" * 5000)
    assert handle(job) == {"batchItemFailures": []}
    data = kept.s3.get_object(Bucket=BUCKET, Key="kept/set 1.torrent")["Body"].read()
    assert {f.path: f.length for f in read_collection_torrent(data).files} == {
        ("a.bin",): 15000,
        ("b.bin",): 1000,
    }
    kept.s3.delete_object(Bucket=BUCKET, Key=PREFIX + "a.bin")
    assert handle(job) == {"batchItemFailures": []}
    data = kept.s3.get_object(Bucket=BUCKET, Key="kept/set 1.torrent")["Body"].read()
    assert [f.path for f in read_collection_torrent(data).files] == [("b.bin",)]
    kept.s3.delete_object(Bucket=BUCKET, Key=PREFIX + "b.bin")
    assert handle(job) == {"batchItemFailures": []}  # no member left: its torrent goes
    assert "Contents" not in kept.s3.list_objects_v2(Bucket=BUCKET, Prefix="kept/set 1.torrent")


def test_a_job_for_a_prefix_no_longer_kept_is_acknowledged(kept: Kept) -> None:
    body = CollectionMessage(bucket=BUCKET, prefix="other/").to_body()
    assert handle(sqs_event([body])) == {"batchItemFailures": []}
    assert "Contents" not in kept.s3.list_objects_v2(Bucket=BUCKET, Prefix="other")


def test_kept_collections_come_from_the_environment() -> None:
    value = [{"bucket": "my-bucket", "prefix": "data/set1/", "piece_length": 262144}]
    settings = Settings.from_env({"S3TORRENT_COLLECTIONS": json.dumps(value)})
    assert settings.collections[0].overrides() == {"piece_length": 262144}
    assert Settings.from_env(settings.to_env()) == settings
    for bad in ({"bucket": "my-bucket", "prefix": "no-slash"}, {"bucket": "b", "prefix": "/"}):
        with pytest.raises(InvalidInput):
            Settings.from_mapping({"collections": [bad]})
    assert settings.kept_collections("my-bucket", "data/set1/a/b") == [settings.collections[0]]
    assert settings.kept_collections("my-bucket", "data/set1/") == []  # its marker
    assert settings.kept_collections("my-bucket", "data/set10/x") == []


def test_a_backfill_brings_kept_collections_up_to_date(kept: Kept) -> None:
    # Objects that arrived without events (a bucket wired after the fact).
    for name in ("x.bin", "y.bin"):
        kept.s3.put_object(Bucket=BUCKET, Key=PREFIX + name, Body=b"z" * 100)
    kept.runtime.backfills.start(BUCKET, "kept/")
    jobs = collection_jobs(kept)
    assert jobs == [(CollectionMessage(bucket=BUCKET, prefix=PREFIX).to_body(), 0)]
    kept.runtime.backfills.start(BUCKET, "elsewhere/")  # outside: no job
    assert len(collection_jobs(kept)) == 1
    assert handle(sqs_event([jobs[0][0]])) == {"batchItemFailures": []}
    data = kept.s3.get_object(Bucket=BUCKET, Key="kept/set 1.torrent")["Body"].read()
    assert len(read_collection_torrent(data).files) == 2
    fresh = kept.runtime.service.make_collection(
        CollectionRef(BUCKET, PREFIX), overrides={"meta_version": "hybrid"}
    )
    assert fresh.outcome is Outcome.FRESH  # what the next backfill's job finds: nothing read
