"""A backfill started over HTTP fills in the torrents of objects that arrived without events."""

from __future__ import annotations

import os
import time

import libtorrent as lt
import pytest

from tests.support.stack import QUIET_BUCKET, Stack, all_keys, http, post_json, wait_for

pytestmark = pytest.mark.e2e

PREFIX = "backfill/"


def test_backfill_over_http_fills_in_missing_torrents(stack: Stack) -> None:
    s3 = stack.s3()
    sizes = {f"{PREFIX}a.bin": 70_000, f"{PREFIX}b c.bin": 1, f"{PREFIX}d/e.bin": 1_500_000}
    for key, size in sizes.items():
        s3.put_object(Bucket=QUIET_BUCKET, Key=key, Body=os.urandom(size))
    s3.put_object(Bucket=QUIET_BUCKET, Key=f"{PREFIX}empty.bin", Body=b"")  # never a torrent
    # One object already has a fresh torrent: the backfill must leave it be.
    fresh_key = f"{PREFIX}fresh.bin"
    s3.put_object(Bucket=QUIET_BUCKET, Key=fresh_key, Body=os.urandom(20_000))
    made = post_json(f"{stack.api_url}/torrents", {"bucket": QUIET_BUCKET, "key": fresh_key})
    assert made.status == 201, made.body
    fresh_before = s3.head_object(Bucket=QUIET_BUCKET, Key=fresh_key + ".torrent")["ETag"]
    time.sleep(1.0)  # the bucket sends no events: nothing else appears on its own
    torrents = {
        k for k in all_keys(s3, QUIET_BUCKET) if k.startswith(PREFIX) and k.endswith(".torrent")
    }
    assert torrents == {fresh_key + ".torrent"}

    started = post_json(f"{stack.api_url}/backfills", {"bucket": QUIET_BUCKET, "prefix": PREFIX})
    assert started.status == 202, started.body
    location = started.json()["location"]

    def finished() -> dict[str, int] | None:
        status = http("GET", stack.api_url + location).json()
        return status if status["status"] == "complete" else None

    status = wait_for(finished, 30, f"backfill {location} did not complete")
    assert status["listed"] == 5
    assert status["queued"] == 3
    assert status["fresh"] == 1
    assert status["skipped"] == 1
    assert status["done"] == 3
    assert status["failed"] == 0

    for key, size in sizes.items():
        torrent = s3.get_object(Bucket=QUIET_BUCKET, Key=key + ".torrent")["Body"].read()
        info = lt.torrent_info(lt.bdecode(torrent))
        assert info.total_size() == size
        assert info.name() == key.rsplit("/", 1)[-1]
    assert s3.head_object(Bucket=QUIET_BUCKET, Key=fresh_key + ".torrent")["ETag"] == fresh_before
    assert f"{PREFIX}empty.bin.torrent" not in all_keys(s3, QUIET_BUCKET)
