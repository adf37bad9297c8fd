"""`GET /feeds/...`: RSS 2.0 read back with feedparser, JSON, escaping, 304s, who may ask, and
what a feed costs in DynamoDB requests (moto in-process)."""

from __future__ import annotations

import copy
import html
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import feedparser
import pytest

from s3torrent.errors import TransientServiceError
from s3torrent.handlers import api
from s3torrent.model import ObjectRef
from s3torrent.publishing import FeedEntry, FeedIndex, feed_scopes
from s3torrent.torrent import read_torrent
from tests.support.handlers import FakeContext, api_body, header, load_event
from tests.unit.publishing.conftest import BUCKET, Published

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

HOST = "abc123.execute-api.us-east-1.amazonaws.com"
NASTY = 'pub/a & b/<tag> "quoted" \u00e9t\u00e9 \u6f22\u5b57 with spaces.bin'


def request(
    path: str, query: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A signed GET as API Gateway hands it over (path percent-encoded, stage in the context)."""
    event = copy.deepcopy(load_event("apigw_get_torrent_status.json"))
    event["path"] = quote(path, safe="/")
    event["requestContext"]["path"] = "/prod" + event["path"]
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    event["headers"] = {**event["headers"], **(headers or {})}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    return event


def anonymous(event: dict[str, Any]) -> dict[str, Any]:
    identity = event["requestContext"]["identity"]
    for name in ("accessKey", "caller", "user", "userArn", "accountId"):
        identity[name] = None
    return event


def call(event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = api.lambda_handler(event, FakeContext())
    return response


def upload(published: Published, key: str, size: int = 40_000) -> None:
    """An object and its torrent, made by the service (which lists it in the index)."""
    body = (key.encode() * (size // max(1, len(key.encode())) + 1))[:size]
    published.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    result = published.runtime.service.make_torrent(ObjectRef(BUCKET, key))
    assert result.outcome.value == "created"


def test_feed_is_rss_2_read_field_by_field(published: Published) -> None:
    for key in ("pub/old.bin", "pub/sub/middle.bin", NASTY):
        upload(published, key)
    response = call(request("/feeds/media-archive/pub/"))
    assert response["statusCode"] == 200
    assert header(response, "Content-Type") == "application/rss+xml; charset=utf-8"
    body = api_body(response)
    feed = feedparser.parse(body)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "rss20"
    assert feed.feed.title == "s3://media-archive/pub/ torrents"
    assert feed.feed.link == f"https://{HOST}/prod/browse/media-archive/pub/"
    titles = [entry.title for entry in feed.entries]
    assert titles == [NASTY, "pub/sub/middle.bin", "pub/old.bin"]  # newest first
    for entry in feed.entries:
        key = entry.title
        described = published.runtime.service.describe(ObjectRef(BUCKET, key))
        record = described.record
        assert record is not None
        (enclosure,) = entry.enclosures
        assert enclosure.type == "application/x-bittorrent"
        assert enclosure.href == (
            f"https://{HOST}/prod/media-archive/{quote(key, safe='/')}?torrent"
        )
        assert int(enclosure.length) == len(described.torrent_bytes or b"")
        assert entry.id == (f"urn:btih:{record.info_hash_v1} urn:btmh:1220{record.info_hash_v2}")
        assert entry.guidislink is False
        assert entry.published_parsed is not None
        assert entry.torrent_magneturi == described.magnet
        assert entry.torrent_infohash == record.info_hash_v1
        assert int(entry.torrent_contentlength) == record.size
        assert described.magnet and described.magnet in html.unescape(
            entry.summary
        )  # description is HTML to readers
        # The enclosure URL is the API's own GetObjectTorrent: it answers the torrent.
        path = unquote(enclosure.href.split(HOST + "/prod", 1)[1].split("?")[0])
        got = call(request(path, {"torrent": ""}))
        assert got["statusCode"] == 200
        assert api_body(got) == described.torrent_bytes
        assert read_torrent(api_body(got)).info_hash_v1 == record.info_hash_v1
    # The raw XML escapes what XML must (feedparser only sees it right if it was).
    assert b"&amp; b/&lt;tag&gt;" in body


def test_json_format_has_the_same_items(published: Published) -> None:
    upload(published, NASTY)
    upload(published, "pub/second.bin")
    rss = feedparser.parse(api_body(call(request("/feeds/media-archive/pub"))))
    response = call(request("/feeds/media-archive/pub", {"format": "json"}))
    assert header(response, "Content-Type") == "application/json"
    document = json.loads(api_body(response))
    assert [item["key"] for item in document["items"]] == [e.title for e in rss.entries]
    for item, entry in zip(document["items"], rss.entries, strict=True):
        assert item["torrent_url"] == entry.enclosures[0].href
        assert item["magnet"] == entry.torrent_magneturi
        assert item["guid"] == entry.id
    assert document["items"][1]["key"] == NASTY  # unicode round-trips unescaped in JSON


def test_conditional_gets_answer_304(published: Published) -> None:
    upload(published, "pub/one.bin")
    first = call(request("/feeds/media-archive/pub/"))
    etag, modified = header(first, "ETag"), header(first, "Last-Modified")
    assert etag and modified
    again = call(request("/feeds/media-archive/pub/", headers={"If-None-Match": etag}))
    assert again["statusCode"] == 304
    assert api_body(again) == b""
    assert header(again, "ETag") == etag
    since = call(request("/feeds/media-archive/pub/", headers={"If-Modified-Since": modified}))
    assert since["statusCode"] == 304
    upload(published, "pub/two.bin")
    changed = call(request("/feeds/media-archive/pub/", headers={"If-None-Match": etag}))
    assert changed["statusCode"] == 200
    assert header(changed, "ETag") != etag


def test_who_may_read_a_feed(published: Published) -> None:
    upload(published, "pub/one.bin")
    # A prefix outside the allowlist: 403 whoever asks (the bucket's top is not allowed).
    for path in ("/feeds/media-archive", "/feeds/media-archive/elsewhere/", "/feeds/other-bucket"):
        response = call(request(path))
        assert response["statusCode"] == 403, path
        assert json.loads(api_body(response))["error"]["code"] == "AccessDenied"
    # Anonymous: on public prefixes only.
    assert call(anonymous(request("/feeds/media-archive/pub/")))["statusCode"] == 200
    private = call(anonymous(request("/feeds/media-archive/private/")))
    assert private["statusCode"] == 403
    assert call(request("/feeds/media-archive/private/"))["statusCode"] == 200


def test_limits_and_bad_parameters(published: Published) -> None:
    for index in range(3):
        upload(published, f"pub/{index}.bin", size=20_000)
    feed = feedparser.parse(api_body(call(request("/feeds/media-archive/pub", {"limit": "2"}))))
    assert [e.title for e in feed.entries] == ["pub/2.bin", "pub/1.bin"]
    for query in ({"limit": "0"}, {"limit": "201"}, {"limit": "x"}, {"format": "atom"}):
        assert call(request("/feeds/media-archive/pub", query))["statusCode"] == 400, query


def test_a_deleted_torrent_leaves_every_feed(published: Published) -> None:
    upload(published, "pub/a/b/gone.bin")
    upload(published, "pub/a/kept.bin")
    published.s3.delete_object(Bucket=BUCKET, Key="pub/a/b/gone.bin")
    result = published.runtime.service.remove_torrent(ObjectRef(BUCKET, "pub/a/b/gone.bin"))
    assert result.outcome.value == "deleted"
    for scope in ("pub/", "pub/a/", "pub/a/b/"):
        feed = feedparser.parse(api_body(call(request(f"/feeds/media-archive/{scope}"))))
        titles = [e.title for e in feed.entries]
        assert "pub/a/b/gone.bin" not in titles
        assert titles == ([] if scope == "pub/a/b/" else ["pub/a/kept.bin"])


def test_a_bucket_named_feeds_still_serves_get_object_torrent(published: Published) -> None:
    published.s3.put_object(Bucket="feeds", Key="x/y.bin", Body=b"z" * 30_000)
    response = call(request("/feeds/x/y.bin", {"torrent": ""}))
    assert response["statusCode"] == 200
    assert header(response, "Content-Type") == "application/x-bittorrent"


def test_scopes_of_a_key() -> None:
    assert feed_scopes("a.bin") == [""]
    assert feed_scopes("a/b/c.bin") == ["", "a/", "a/b/"]
    assert len(feed_scopes("/".join(["d"] * 100) + "/x")) == 32


def test_a_feed_of_50_from_an_index_of_10000_costs_one_query(published: Published) -> None:
    dynamodb = published.dynamodb
    index = FeedIndex(dynamodb, published.table)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    entries = [
        FeedEntry(
            bucket=BUCKET,
            key=f"pub/batch/{n:05d}.bin",
            size=1000 + n,
            torrent_length=300,
            info_hash_v1=f"{n:040x}",
            info_hash_v2=None,
            magnet=f"magnet:?xt=urn:btih:{n:040x}",
            published=start + timedelta(seconds=n),
        )
        for n in range(10_000)
    ]
    index.put_many(entries)  # two items each (pub/, pub/batch/) and one for the bucket
    # The handler's own client, counted: every DynamoDB request the feed makes.
    calls: list[str] = []
    published.runtime.feed_index.client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.append(model.name)
    )
    response = call(request("/feeds/media-archive/pub/batch/"))
    feed = feedparser.parse(api_body(response))
    assert len(feed.entries) == 50
    assert [e.title for e in feed.entries[:2]] == ["pub/batch/09999.bin", "pub/batch/09998.bin"]
    assert calls == ["Query"]
    calls.clear()
    wide = feedparser.parse(api_body(call(request("/feeds/media-archive/pub/", {"limit": "200"}))))
    assert len(wide.entries) == 200
    assert calls == ["Query"]


def test_a_lookup_dynamodb_keeps_throttling_is_an_error_not_a_miss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from s3torrent import dynamodb

    class Throttled:
        calls = 0

        def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
            self.calls += 1
            return {"Responses": {"t": []}, "UnprocessedKeys": RequestItems}

    monkeypatch.setattr(dynamodb.time, "sleep", lambda seconds: None)
    client = Throttled()
    with pytest.raises(TransientServiceError, match="unprocessed after 3 attempts"):
        FeedIndex(client, "t", attempts=3).lookup(BUCKET, "", ["a", "b"])
    assert client.calls == 3
