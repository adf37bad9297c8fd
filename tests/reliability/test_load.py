"""A burst of 500 uploads into the local stack (`s3torrent serve`): exactly 500 right torrents.

The stack runs as a user starts it (a subprocess, helper-6's e2e launcher); uploads go
straight to its embedded S3 with boto3, 32 at once; S3 notifications -> queue -> worker do
the rest. At the end every object has exactly one `<key>.torrent`, built from its current
ETag, whose info hashes match the engine's in-memory computation; nothing else was written.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from s3torrent.torrent import read_torrent
from tests.support.faults.helpers import reference_hashes
from tests.support.ports import free_port
from tests.support.stack import start_serve

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

BURST = 500
BUCKET = "load-burst"
SETTLE_SECONDS = 240


def burst_objects() -> dict[str, bytes]:
    rng = random.Random(500)
    objects = {}
    for n in range(BURST):
        # Some keys need URL-encoding in notifications: spaces, '+', non-ASCII.
        name = (
            f"burst/{n // 100}/obj {n}+x.bin"
            if n % 50 == 0
            else f"burst/{n // 100}/ünï-{n}.bin"
            if n % 50 == 1
            else f"burst/{n // 100}/{n:04d}.bin"
        )
        objects[name] = rng.randbytes(rng.randint(1, 48 * 1024))
    return objects


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def listing(s3: Any, prefix: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        found.update({item["Key"]: item for item in page.get("Contents", ())})
    return found


def test_a_burst_of_500_uploads_ends_with_500_right_torrents() -> None:
    s3_port = free_port()
    process = start_serve("--bucket", BUCKET, "--workers", "4", "-q", s3_port=s3_port)
    try:
        process.wait_ready()
        before = cpu_seconds(process.process.pid)
        run_burst(f"http://127.0.0.1:{s3_port}", process)
        used = cpu_seconds(process.process.pid) - before
        print(f"LOAD: the stack (one process: S3, queues, API, 4 workers) used {used:.1f} s of CPU")
    finally:
        code = process.stop(signal.SIGTERM)
    assert code == 0, process.output


def run_burst(s3_url: str, process: Any) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(max_pool_connections=32, retries={"mode": "standard"}),
    )
    objects = burst_objects()
    etags: dict[str, str] = {}
    started = time.monotonic()

    def upload(item: tuple[str, bytes]) -> None:
        key, data = item
        etags[key] = s3.put_object(Bucket=BUCKET, Key=key, Body=data)["ETag"]

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(upload, objects.items()))
    uploaded = time.monotonic() - started

    # Wait for the worker queue to drain (a cheap SQS call), then list: listing 1000 keys
    # every half second would cost the single-process stack more CPU than the work itself.
    sqs = boto3.client(
        "sqs",
        endpoint_url=s3_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    worker_queue = next(u for u in sqs.list_queues()["QueueUrls"] if u.endswith("s3torrent-worker"))
    torrents: dict[str, dict[str, Any]] = {}
    deadline = started + SETTLE_SECONDS
    while True:
        attributes = sqs.get_queue_attributes(
            QueueUrl=worker_queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        drained = not any(int(value) for value in attributes.values())
        if drained or time.monotonic() >= deadline:
            torrents = {k: v for k, v in listing(s3, "burst/").items() if k.endswith(".torrent")}
            if len(torrents) >= BURST or time.monotonic() >= deadline:
                break
        time.sleep(1.0)
    settled = time.monotonic() - started
    print(
        f"\nLOAD: {BURST} uploads in {uploaded:.1f}s; {len(torrents)} torrents after"
        f" {settled:.1f}s wall time ({BURST / settled:.1f} objects/s)"
    )
    assert len(torrents) == BURST, (
        f"{BURST - len(torrents)} missing; worker queue {attributes}:\n{process.output[-3000:]}"
    )
    # Messages still in flight once every torrent is there were delivered and never
    # deleted: stuck for the queue's visibility timeout (moto_fixes' delete race).
    assert drained, f"all {BURST} torrents made, but the worker queue holds {attributes}"
    time.sleep(1.0)  # late duplicate deliveries would land now
    everything = listing(s3, "burst/")
    assert sorted(k for k in everything if not k.endswith(".torrent")) == sorted(objects)
    assert sorted(k for k in everything if k.endswith(".torrent")) == sorted(
        k + ".torrent" for k in objects
    ), "a duplicated, missing or stray torrent"
    assert not [k for k in everything if k.endswith(".torrent.torrent")]

    def verify(key: str) -> None:
        stored = s3.get_object(Bucket=BUCKET, Key=key + ".torrent")
        assert stored["Metadata"]["source-etag"] == etags[key], key
        torrent = read_torrent(stored["Body"].read())
        assert (torrent.info_hash_v1, torrent.info_hash_v2) == reference_hashes(objects[key], key)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(verify, objects))
    # Nothing went to the dead-letter queue.
    for url in sqs.list_queues().get("QueueUrls", []):
        if url.endswith("-dlq"):
            attributes = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            assert attributes["ApproximateNumberOfMessages"] == "0", (url, attributes)
    print(f"LOAD: verified {BURST} torrents: {json.dumps({'uploads': BURST, 'torrents': BURST})}")
