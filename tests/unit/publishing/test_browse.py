"""`GET /browse/...`: a folder's page, parsed back: every key escaped and intact, links that
work, the feed advertised, who may ask (moto in-process)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from s3torrent.model import ObjectRef
from tests.support.handlers import api_body, header
from tests.support.html_page import Page
from tests.unit.publishing.conftest import BUCKET, Published
from tests.unit.publishing.test_feeds import HOST, NASTY, anonymous, call, request, upload

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def parse(response: dict[str, Any]) -> Page:
    page = Page()
    page.feed(api_body(response).decode("utf-8"))
    return page


def test_folder_page_lists_folders_objects_and_their_torrents(published: Published) -> None:
    upload(published, NASTY)
    upload(published, "pub/a & b/plain.bin")
    published.s3.put_object(Bucket=BUCKET, Key="pub/a & b/no torrent yet.txt", Body=b"x")
    published.s3.put_object(Bucket=BUCKET, Key="pub/a & b/sub <dir>/x.bin", Body=b"y")
    response = call(request("/browse/media-archive/pub/a & b/"))
    assert response["statusCode"] == 200
    assert header(response, "Content-Type") == "text/html; charset=utf-8"
    page = parse(response)
    assert page.keys == [NASTY, "pub/a & b/no torrent yet.txt", "pub/a & b/plain.bin"]
    assert NASTY.split("/")[-1] in page.headings  # the name, unescaped, as a reader sees it
    assert "s3://media-archive/pub/a & b/" in page.headings
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in page.meta
    (alternate,) = [link for link in page.head_links if link.get("rel") == "alternate"]
    assert alternate["type"] == "application/rss+xml"
    assert alternate["href"] == f"https://{HOST}/prod/feeds/media-archive/pub/a%20%26%20b/"
    hrefs = [link["href"] for link in page.links]
    assert f"https://{HOST}/prod/browse/media-archive/pub/a%20%26%20b/sub%20%3Cdir%3E/" in hrefs
    torrents = [link["href"] for link in page.links if link.get("class") == "torrent"]
    magnets = [link["href"] for link in page.links if link.get("class") == "magnet"]
    assert len(torrents) == len(magnets) == 2
    for key, torrent, magnet in zip([NASTY, "pub/a & b/plain.bin"], torrents, magnets, strict=True):
        described = published.runtime.service.describe(ObjectRef(BUCKET, key))
        assert magnet == described.magnet
        url = urlsplit(torrent)
        assert url.query == "torrent"
        got = call(request(unquote(url.path).removeprefix("/prod"), {"torrent": ""}))
        assert got["statusCode"] == 200
        assert api_body(got) == described.torrent_bytes
        record = described.record
        assert record is not None
        assert record.info_hash_v1 in page.codes and record.info_hash_v2 in page.codes
    commands = [code for code in page.codes if code.startswith("aws s3api")]
    assert commands[0] == (
        f"aws s3api get-object-torrent --endpoint-url https://{HOST}/prod"
        f" --bucket media-archive --key '{NASTY}' '{NASTY.split('/')[-1]}.torrent'"
    )
    raw = api_body(response)
    assert b"<tag>" not in raw and b"&lt;tag&gt;" in raw  # escaped in the markup itself
    assert b"<script" not in raw


def test_who_may_browse(published: Published) -> None:
    assert call(request("/browse/media-archive"))["statusCode"] == 403
    assert call(request("/browse/other-bucket/"))["statusCode"] == 403
    assert call(anonymous(request("/browse/media-archive/pub/")))["statusCode"] == 200
    assert call(anonymous(request("/browse/media-archive/private/")))["statusCode"] == 403
    assert call(request("/browse/media-archive/private/"))["statusCode"] == 200


def test_a_torrent_made_before_the_index_still_gets_its_link(published: Published) -> None:
    upload(published, "pub/old.bin")
    published.runtime.feed_index.forget_torrent(ObjectRef(BUCKET, "pub/old.bin"))
    page = parse(call(request("/browse/media-archive/pub/")))
    assert page.keys == ["pub/old.bin"]
    assert [link.get("class") for link in page.links].count("torrent") == 1
    assert [link.get("class") for link in page.links].count("magnet") == 0
