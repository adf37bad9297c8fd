"""`s3torrent backfill` against moto's server: what it makes, what it costs, how it fails.

Requests are counted independently of the CLI's own report: the test hands the CLI a
boto3 session whose clients carry a `before-send` hook (one count per HTTP request).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import libtorrent as lt
import pytest

from s3torrent import cli
from s3torrent.errors import TransientS3Error
from s3torrent.model import ObjectRef, TorrentResult
from s3torrent.s3.objects import S3Objects
from s3torrent.service import TorrentService

pytestmark = [pytest.mark.integration]


class CountingSession:
    """Makes the CLI's boto3 session; counts every HTTP request its S3 clients send."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        session = boto3.session.Session()
        session.events.register("before-send.s3", self._count)
        return session

    def _count(self, event_name: str = "", **_: Any) -> None:
        with self._lock:
            self.counts[event_name.rsplit(".", 1)[-1]] += 1


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingSession:
    counter = CountingSession()
    monkeypatch.setattr(cli, "new_session", counter)
    return counter


def backfill(uri: str, endpoint: str, capsys: pytest.CaptureFixture[str], *extra: str) -> Any:
    code = cli.main(["backfill", uri, "--endpoint-url", endpoint, "--json", *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def keys_of(s3: Any, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def test_backfill_makes_missing_then_costs_lists_only(
    s3_client: Any,
    bucket: str,
    moto_endpoint: str,
    counting: CountingSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sources = {f"p/{n:03d} file.bin": os.urandom(1000 + n) for n in range(25)}
    sources["p/ü+%.bin"] = b"unicode"
    for key, body in sources.items():
        s3_client.put_object(Bucket=bucket, Key=key, Body=body)
    s3_client.put_object(Bucket=bucket, Key="p/dir/", Body=b"")  # marker: skipped
    s3_client.put_object(Bucket=bucket, Key="p/empty", Body=b"")  # empty: skipped
    s3_client.put_object(Bucket=bucket, Key="p/orphan.bin.torrent", Body=b"x")  # no source
    s3_client.put_object(Bucket=bucket, Key="outside.bin", Body=b"not under p/")

    code, first, _ = backfill(f"s3://{bucket}/p/", moto_endpoint, capsys, "--jobs", "3")

    assert code == 0
    assert (first["listed"], first["created"], first["fresh"]) == (28, 26, 0)
    assert (first["skipped"], first["failed"]) == (2, 0)
    assert first["torrents_listed"] == 1
    stored = set(keys_of(s3_client, bucket))
    for key, body in sources.items():
        assert key + ".torrent" in stored
        data = s3_client.get_object(Bucket=bucket, Key=key + ".torrent")["Body"].read()
        assert lt.torrent_info(lt.bdecode(data)).total_size() == len(body)
    assert "outside.bin.torrent" not in stored
    # What the README states per missing object under 8 MiB: HEAD, one ranged GET, HEAD
    # before the write, PUT, HEAD after it (plus the LIST). The ranged GETs go straight over
    # HTTP on a presigned URL, so botocore sees all but those.
    assert first["requests"] == {
        "GetObject": 26,
        "HeadObject": 3 * 26,
        "ListObjectsV2": 1,
        "PutObject": 26,
    }
    assert counting.counts == Counter({"ListObjectsV2": 1, "HeadObject": 3 * 26, "PutObject": 26})

    counting.counts.clear()
    code, second, _ = backfill(f"s3://{bucket}/p/", moto_endpoint, capsys)

    assert code == 0
    assert (second["listed"], second["created"], second["fresh"], second["skipped"]) == (
        28,
        0,
        26,
        2,
    )
    assert counting.counts == Counter({"ListObjectsV2": 1})  # a fresh prefix costs LISTs only
    assert second["requests"] == {"ListObjectsV2": 1}

    time.sleep(1.1)  # LastModified has one-second resolution
    s3_client.put_object(Bucket=bucket, Key="p/003 file.bin", Body=b"changed")
    counting.counts.clear()
    code, third, _ = backfill(f"s3://{bucket}/p/", moto_endpoint, capsys)

    assert (third["created"], third["fresh"]) == (1, 25)
    # A stale one costs the same plus one GET of the old torrent (through botocore).
    assert third["requests"] == {
        "GetObject": 2,
        "HeadObject": 3,
        "ListObjectsV2": 1,
        "PutObject": 1,
    }
    assert counting.counts == Counter(
        {"ListObjectsV2": 1, "HeadObject": 3, "GetObject": 1, "PutObject": 1}
    )
    data = s3_client.get_object(Bucket=bucket, Key="p/003 file.bin.torrent")["Body"].read()
    assert lt.torrent_info(lt.bdecode(data)).total_size() == len(b"changed")


def test_backfill_pages_through_a_listing(
    s3_client: Any,
    bucket: str,
    moto_endpoint: str,
    counting: CountingSession,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pages of 3 keys: torrents land on other pages than their objects.
    real = S3Objects.list_page

    def small_pages(self: S3Objects, *args: Any, **kwargs: Any) -> Any:
        return real(self, *args, **{**kwargs, "max_keys": 3})

    monkeypatch.setattr(S3Objects, "list_page", small_pages)
    for n in range(10):
        s3_client.put_object(Bucket=bucket, Key=f"k{n}", Body=b"x" * (n + 1))
    code, first, _ = backfill(f"s3://{bucket}", moto_endpoint, capsys)
    assert (code, first["created"]) == (0, 10)
    counting.counts.clear()
    code, second, _ = backfill(f"s3://{bucket}", moto_endpoint, capsys)
    assert (second["fresh"], second["created"]) == (10, 0)
    assert counting.counts == Counter({"ListObjectsV2": 7})  # 20 keys in pages of 3


def test_backfill_counts_failures_and_exits_non_zero(
    s3_client: Any,
    bucket: str,
    moto_endpoint: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in ("good.bin", "bad.bin"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"content")
    real = TorrentService.make_torrent

    def flaky(self: TorrentService, ref: ObjectRef, **kwargs: Any) -> TorrentResult:
        if ref.key == "bad.bin":
            raise TransientS3Error("s3://…/bad.bin: SlowDown (HTTP 503)")
        return real(self, ref, **kwargs)

    monkeypatch.setattr(TorrentService, "make_torrent", flaky)

    code, summary, err = backfill(f"s3://{bucket}", moto_endpoint, capsys)

    assert code == 1
    assert (summary["created"], summary["failed"]) == (1, 1)
    assert err.splitlines() == [
        f"s3torrent: failed s3://{bucket}/bad.bin: s3://…/bad.bin: SlowDown (HTTP 503)"
    ]
    assert keys_of(s3_client, bucket) == ["bad.bin", "good.bin", "good.bin.torrent"]


def test_backfill_command_line(s3_client: Any, bucket: str, moto_endpoint: str) -> None:
    s3_client.put_object(Bucket=bucket, Key="a/b c.bin", Body=b"hello")
    command = [str(Path(sys.executable).parent / "s3torrent"), "backfill", f"s3://{bucket}/a/"]
    done = subprocess.run(
        [*command, "--endpoint-url", moto_endpoint],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    assert f"s3://{bucket}/a/: listed 1  created 1  fresh 0" in done.stdout
    assert done.stderr == ""  # counts go to a terminal only
    assert "a/b c.bin.torrent" in keys_of(s3_client, bucket)


def test_backfill_of_a_missing_bucket_fails_in_one_line(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["backfill", "s3://no-such-bucket-here", "--endpoint-url", moto_endpoint])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert len(err) == 1 and "does not exist" in err[0]


class _WebPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>not S3</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _FileServer(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("handler", [_WebPage, _FileServer])
def test_backfill_against_an_endpoint_that_is_not_s3(
    handler: type[http.server.BaseHTTPRequestHandler], capsys: pytest.CaptureFixture[str]
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        code = cli.main(["backfill", "s3://some-bucket/p/", "--endpoint-url", endpoint])
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert len(err) == 1 and "S3" in err[0], err
