"""The AWS CLI against the local stack: an upload gets its `.torrent` within seconds,
`get-object-torrent` on the API returns that same torrent, a deletion removes it."""

from __future__ import annotations

import os
from pathlib import Path

import libtorrent as lt
import pytest

from tests.support.stack import (
    EVENT_SECONDS,
    EVENTS_BUCKET,
    Stack,
    aws,
    object_exists,
    wait_for,
    wait_for_torrent,
)

pytestmark = pytest.mark.e2e

KEY = "docs/hello world+ünï%.bin"  # a space, a plus, unicode and a percent sign


def test_upload_gets_a_torrent_that_get_object_torrent_returns(
    stack: Stack, tmp_path: Path
) -> None:
    source = tmp_path / "hello.bin"
    source.write_bytes(os.urandom(1_234_567))
    aws("s3", "cp", str(source), f"s3://{EVENTS_BUCKET}/{KEY}", endpoint=stack.s3_url)
    s3 = stack.s3()
    wait_for_torrent(s3, EVENTS_BUCKET, KEY)

    stored = s3.get_object(Bucket=EVENTS_BUCKET, Key=KEY + ".torrent")["Body"].read()
    fetched = tmp_path / "fetched.torrent"
    aws(
        "s3api", "get-object-torrent", "--bucket", EVENTS_BUCKET, "--key", KEY, str(fetched),
        endpoint=stack.api_url,
    )  # fmt: skip
    assert fetched.read_bytes() == stored

    metainfo = lt.bdecode(stored)
    info = lt.torrent_info(metainfo)
    assert info.name() == "hello world+ünï%.bin"  # BEP 19: the key's last segment
    assert info.total_size() == source.stat().st_size
    # The object's folder URL: clients append the name (the form every client takes,
    # docs/clients.md).
    assert metainfo[b"url-list"] in (
        f"{stack.s3_url}/{EVENTS_BUCKET}/docs/".encode(),
        [f"{stack.s3_url}/{EVENTS_BUCKET}/docs/".encode()],
    )


def test_get_object_torrent_unsigned_and_with_the_stage_in_the_endpoint(
    stack: Stack, tmp_path: Path
) -> None:
    stored = stack.s3().get_object(Bucket="demo", Key="sample.bin.torrent")["Body"].read()
    for n, (endpoint, extra) in enumerate(
        [(stack.api_url, ["--no-sign-request"]), (stack.api_url + "/prod", [])]
    ):
        out = tmp_path / f"{n}.torrent"
        aws(
            "s3api", "get-object-torrent", *extra, "--bucket", "demo", "--key", "sample.bin",
            str(out), endpoint=endpoint,
        )  # fmt: skip
        assert out.read_bytes() == stored


def test_deleting_the_object_deletes_its_torrent(stack: Stack, tmp_path: Path) -> None:
    key = "to-delete/gone.bin"
    s3 = stack.s3()
    s3.put_object(Bucket=EVENTS_BUCKET, Key=key, Body=os.urandom(100_000))
    wait_for_torrent(s3, EVENTS_BUCKET, key)
    aws("s3", "rm", f"s3://{EVENTS_BUCKET}/{key}", endpoint=stack.s3_url)
    wait_for_torrent(s3, EVENTS_BUCKET, key, present=False)


def test_a_bucket_outside_the_allowlist_gets_no_torrents_and_serve_says_so(
    stack: Stack, tmp_path: Path
) -> None:
    bucket = "e2e-not-configured"
    aws("s3", "mb", f"s3://{bucket}", endpoint=stack.s3_url)
    stack.s3().put_object(Bucket=bucket, Key="x.bin", Body=os.urandom(1000))
    wait_for(
        lambda: any(f"{bucket} is not in the allowlist" in line for line in stack.process.lines),
        EVENT_SECONDS,
        "serve printed no hint about the bucket outside the allowlist",
    )
    assert not object_exists(stack.s3(), bucket, "x.bin.torrent")
