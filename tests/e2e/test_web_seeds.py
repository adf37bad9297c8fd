"""Real BitTorrent clients download objects through their torrents' web seed alone (BEP 19):
no tracker, no DHT, no peers: aria2c for the default (hybrid) torrent, libtorrent for v2 and
hybrid torrents made over HTTP with `POST /torrents`."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from urllib.parse import quote

import libtorrent as lt
import pytest

from tests.support.downloads import aria2c, libtorrent_download
from tests.support.stack import (
    EVENTS_BUCKET,
    QUIET_BUCKET,
    Stack,
    http,
    post_json,
    wait_for_torrent,
)

pytestmark = pytest.mark.e2e


def test_aria2c_downloads_through_the_web_seed(stack: Stack, tmp_path: Path) -> None:
    data = os.urandom(2_500_000)
    key = "aria2/payload.bin"
    s3 = stack.s3()
    s3.put_object(Bucket=EVENTS_BUCKET, Key=key, Body=data)
    wait_for_torrent(s3, EVENTS_BUCKET, key)
    answer = http("GET", f"{stack.api_url}/{EVENTS_BUCKET}/{key}?torrent")  # GetObjectTorrent
    assert answer.status == 200, answer.body
    torrent = tmp_path / "payload.torrent"
    torrent.write_bytes(answer.body)
    metainfo = lt.bdecode(torrent.read_bytes())
    assert b"announce" not in metainfo  # nothing but the web seed to download from
    assert b"announce-list" not in metainfo
    aria2c(torrent, tmp_path / "got")
    assert (tmp_path / "got" / "payload.bin").read_bytes() == data


@pytest.mark.parametrize("meta_version", ["2", "hybrid"])
def test_libtorrent_downloads_v2_and_hybrid_through_the_web_seed(
    stack: Stack, tmp_path: Path, meta_version: str
) -> None:
    data = os.urandom(3_000_001)  # not a multiple of any piece length: a short last piece
    key = f"libtorrent/{meta_version}/blob.bin"
    stack.s3().put_object(Bucket=QUIET_BUCKET, Key=key, Body=data)
    made = post_json(
        f"{stack.api_url}/torrents",
        {"bucket": QUIET_BUCKET, "key": key, "options": {"meta_version": meta_version}},
    )
    assert made.status in (200, 201), made.body
    assert made.json()["meta_version"] == meta_version
    if meta_version == "hybrid":  # the deployment's own options: stored next to the object
        # The stored `<key>.torrent`, fetched as any client would (the bucket is public-read).
        answer = http("GET", f"{stack.s3_url}/{QUIET_BUCKET}/{quote(key)}.torrent")
        assert answer.status == 200, answer.body
        assert answer.headers["content-type"] == "application/x-bittorrent"
        metainfo = answer.body
    else:  # options of the caller's own: returned to it, never stored (docs/api.md)
        assert made.json()["status"] == "custom"
        metainfo = base64.b64decode(made.json()["torrent"])
        stored = http("GET", f"{stack.s3_url}/{QUIET_BUCKET}/{quote(key)}.torrent")
        assert stored.status in (403, 404)  # moto, like S3, may hide a missing key

    info = lt.bdecode(metainfo)[b"info"]
    assert info[b"meta version"] == 2  # BEP 52
    assert b"file tree" in info
    assert (b"pieces" in info) == (meta_version == "hybrid")  # v1 piece hashes too
    assert (made.json()["info_hash_v1"] is not None) == (meta_version == "hybrid")
    libtorrent_download(metainfo, tmp_path)
    assert (tmp_path / "blob.bin").read_bytes() == data
