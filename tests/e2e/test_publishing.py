"""Feeds and pages with the clients people use: qBittorrent subscribes to a feed of the local
stack and downloads what appears in it through the web seed alone; headless Chromium loads the
demo bucket's page (its DOM checked, its screenshot kept for docs/publishing.md)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import feedparser
import pytest

from tests.support.html_page import Page
from tests.support.ports import free_port
from tests.support.qbittorrent import QBittorrent
from tests.support.stack import EVENTS_BUCKET, Stack, http, wait_for, wait_for_torrent

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "img" / "browse.png"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars",
]  # fmt: skip


def feed_titles(url: str) -> list[str]:
    answer = http("GET", url)
    assert answer.status == 200, answer.body[:300]
    return [entry.title for entry in feedparser.parse(answer.body).entries]


def test_qbittorrent_downloads_what_appears_in_a_feed(stack: Stack, tmp_path: Path) -> None:
    folder = f"feed-{uuid.uuid4().hex[:8]}/"
    key = folder + "clip.bin"
    data = os.urandom(3 * 1024 * 1024 + 12345)
    feed_url = f"{stack.api_url}/feeds/{EVENTS_BUCKET}/{folder}"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    qbit = QBittorrent(tmp_path / "profile")
    try:
        # Only the web seed can deliver: no DHT, PeX, LSD, UPnP; the torrents have no tracker.
        qbit.set_preferences(
            save_path=str(downloads),
            dht=False, pex=False, lsd=False, upnp=False, anonymous_mode=False,
            listen_port=free_port(),
            rss_processing_enabled=True,
            rss_auto_downloading_enabled=True,
            rss_refresh_interval=1,  # minutes: the least it takes; refreshItem does the rest
        )  # fmt: skip
        qbit.post("/api/v2/rss/addFeed", url=feed_url, path="s3torrent")
        rule = {
            "enabled": True,
            "mustContain": "clip",
            "affectedFeeds": [feed_url],
            "savePath": str(downloads),
            "addPaused": False,
        }
        qbit.post("/api/v2/rss/setRule", ruleName="s3torrent", ruleDef=json.dumps(rule))
        assert feed_titles(feed_url) == []

        stack.s3().put_object(Bucket=EVENTS_BUCKET, Key=key, Body=data)
        wait_for_torrent(stack.s3(), EVENTS_BUCKET, key)
        wait_for(lambda: feed_titles(feed_url) == [key], 15, "the upload in the feed")

        def finished() -> dict[str, Any] | None:
            time.sleep(0.5)  # refreshItem at most twice a second
            qbit.post("/api/v2/rss/refreshItem", itemPath="s3torrent")
            for torrent in qbit.json("/api/v2/torrents/info"):
                if torrent["progress"] >= 1.0:
                    return dict(torrent)
            return None

        torrent = wait_for(finished, 90, "qBittorrent's download from the feed")
        assert torrent["name"] == "clip.bin"
        items = qbit.json("/api/v2/rss/items", withData="true")["s3torrent"]["articles"]
        assert [article["title"] for article in items] == [key]
        peers = qbit.json("/api/v2/sync/torrentPeers", hash=torrent["hash"])["peers"]
        assert not peers  # the bytes came through the web seed alone
        got = (downloads / "clip.bin").read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    except BaseException:
        print(qbit.output())
        raise
    finally:
        qbit.stop()


def chromium(tmp_path: Path, *args: str) -> str:
    profile = tmp_path / f"chromium-{uuid.uuid4().hex[:6]}"
    command = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def test_chromium_shows_the_demo_bucket(stack: Stack, tmp_path: Path) -> None:
    s3 = stack.s3()
    # A folder on the page too (the demo bucket has the sample at its top).
    s3.put_object(Bucket="demo", Key="videos/clip one.bin", Body=os.urandom(300_000))
    wait_for_torrent(s3, "demo", "videos/clip one.bin")
    listed = s3.list_objects_v2(Bucket="demo", Delimiter="/")
    objects = [o["Key"] for o in listed.get("Contents", []) if not o["Key"].endswith(".torrent")]
    folders = [p["Prefix"] for p in listed.get("CommonPrefixes", [])]
    assert "sample.bin" in objects and "videos/" in folders
    url = f"{stack.api_url}/browse/demo/"

    page = Page()
    page.feed(chromium(tmp_path, "--dump-dom", url))
    assert page.keys == objects
    hrefs = [link["href"] for link in page.links]
    for folder in folders:
        assert f"{stack.api_url}/prod/browse/demo/{folder}" in hrefs
    torrents = [link["href"] for link in page.links if link.get("class") == "torrent"]
    magnets = [link["href"] for link in page.links if link.get("class") == "magnet"]
    assert len(torrents) == len(magnets) == len(objects)
    for key, torrent, magnet in zip(objects, torrents, magnets, strict=True):
        fetched = http("GET", torrent)  # the page's own link, as a click fetches it
        assert fetched.status == 200
        assert fetched.headers["content-type"] == "application/x-bittorrent"
        stored = s3.get_object(Bucket="demo", Key=key + ".torrent")["Body"].read()
        assert fetched.body == stored
        assert unquote(urlsplit(torrent).path).endswith("/demo/" + key)
        status = http("GET", f"{stack.api_url}/torrents/demo/{key}").json()
        assert magnet == status["magnet"]
        assert status["info_hash_v1"] in page.codes
    (alternate,) = [link for link in page.head_links if link.get("rel") == "alternate"]
    assert alternate["type"] == "application/rss+xml"
    assert "sample.bin" in feed_titles(alternate["href"])

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shot = tmp_path / "browse.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=420,760", url)
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    SCREENSHOT.write_bytes(png)  # the picture docs/publishing.md shows


def test_the_demo_collection_is_in_its_folders_feed_and_page(stack: Stack) -> None:
    # The stack's start made it through the API (`GET /demo/collections/Sommer 2024+ü/?torrent`),
    # which lists the torrent it wrote.
    prefix = "collections/Sommer 2024+ü/"
    stored = stack.s3().get_object(Bucket="demo", Key=prefix[:-1] + ".torrent")["Body"].read()
    answer = http("GET", f"{stack.api_url}/feeds/demo/collections/")
    assert answer.status == 200
    (entry,) = [
        e for e in feedparser.parse(answer.body).entries if e.title.startswith(prefix + " (")
    ]
    assert entry.title == f"{prefix} (collection of 4 files)"
    (enclosure,) = entry.enclosures
    assert unquote(urlsplit(enclosure.href).path).endswith("/demo/" + prefix)
    fetched = http("GET", enclosure.href)  # as a BitTorrent client's RSS downloader does
    assert fetched.status == 200
    assert fetched.headers["content-type"] == "application/x-bittorrent"
    assert fetched.body == stored
    page = Page()
    page.feed(http("GET", f"{stack.api_url}/browse/demo/collections/").body.decode("utf-8"))
    links = {link.get("class"): link["href"] for link in page.links if link.get("class")}
    assert links["collection-torrent"] == enclosure.href
    assert links["collection-magnet"] == entry.torrent_magneturi
    assert http("GET", links["collection-torrent"]).body == stored
