"""Collections in feeds and pages: a collection torrent written (by the service, a kept
collection's worker rebuild, a fan-out build) is listed above its prefix, its enclosure is the
API's `GET /{bucket}/{prefix}/?torrent`, a folder's row on the page carries it, and it leaves
every feed when its last member goes (moto in-process)."""

from __future__ import annotations

import html
import json
import random
import shlex
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

import boto3
import feedparser
import pytest

from s3torrent.collections import CollectionRef, CollectionResult
from s3torrent.collections.record_store import TableHashRecords
from s3torrent.errors import TransientServiceError
from s3torrent.fanout import FanoutStore
from s3torrent.handlers import api
from s3torrent.handlers.runtime import Runtime
from s3torrent.job_queue import JobQueue
from s3torrent.model import ObjectRef, Outcome
from s3torrent.publishing import FeedEntry, FeedIndex, feed_scopes
from s3torrent.s3.objects import S3Objects
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.torrent import read_collection_torrent
from s3torrent.worker import Worker
from s3torrent_local.stack import create_progress_table
from tests.support.handlers import SESSION, api_body, load_event
from tests.support.html_page import Page
from tests.support.moto import BUCKET as MOTO_BUCKET
from tests.unit.collections.test_collection_service import SMALL_READS
from tests.unit.publishing.conftest import BUCKET, Published
from tests.unit.publishing.test_feeds import HOST, call, request, upload

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

# User input all the way: `&`, `<`, `"`, a space and non-ASCII in the folder's name.
PARENT = "pub/albums/"
PREFIX = PARENT + 'Sommer & <2024> "ü"/'
NAME = 'Sommer & <2024> "ü"'
FILES = {"a b.bin": b"a" * 40_000, "sub/c+d.txt": b"c" * 10, "zero": b""}
TITLE = f"{PREFIX} (collection of 3 files)"


def put_members(s3: Any, files: dict[str, bytes] = FILES) -> None:
    for name, data in files.items():
        s3.put_object(Bucket=BUCKET, Key=PREFIX + name, Body=data)


def make(published: Published) -> CollectionResult:
    put_members(published.s3)
    result = published.runtime.service.make_collection(CollectionRef(BUCKET, PREFIX))
    assert result.outcome is Outcome.CREATED and result.record is not None
    return result


def stored_collection(s3: Any) -> bytes:
    data: bytes = s3.get_object(Bucket=BUCKET, Key=PREFIX[:-1] + ".torrent")["Body"].read()
    return data


def feed_of(scope: str) -> Any:
    response = call(request(f"/feeds/{BUCKET}/{scope}"))
    assert response["statusCode"] == 200
    feed = feedparser.parse(api_body(response))
    assert not feed.bozo, feed.get("bozo_exception")
    return feed


def fetch_torrent(url: str) -> bytes:
    """The API's answer to a link the feed or page printed, as a client follows it."""
    parts = urlsplit(url)
    assert parts.query == "torrent"
    response = call(request(unquote(parts.path).removeprefix("/prod"), {"torrent": ""}))
    assert response["statusCode"] == 200, api_body(response)[:300]
    return api_body(response)


def test_scopes_of_a_collection() -> None:
    # Listed above its prefix: the pages that show its folder, not the folder's own feed.
    assert feed_scopes("a/b/x/") == ["", "a/", "a/b/"]
    assert feed_scopes("x/") == [""]
    assert feed_scopes("a/b/x.bin") == ["", "a/", "a/b/"]  # objects as before


def test_a_collection_made_is_in_the_feeds_above_its_prefix(published: Published) -> None:
    result = make(published)
    record = result.record
    assert record is not None
    torrent = stored_collection(published.s3)
    for scope in ("pub/", PARENT):
        feed = feed_of(scope)
        (entry,) = [e for e in feed.entries if e.title == TITLE]
        (enclosure,) = entry.enclosures
        assert enclosure.type == "application/x-bittorrent"
        # GetObjectTorrent of the prefix, its trailing slash kept through the quoting.
        assert enclosure.href == f"https://{HOST}/prod/{BUCKET}/{quote(PREFIX, safe='/')}?torrent"
        assert enclosure.href.endswith("%22%C3%BC%22/?torrent")
        assert int(enclosure.length) == len(torrent)
        assert entry.id == f"urn:btih:{record.info_hash_v1}"  # collections are v1 by default
        assert entry.torrent_infohash == record.info_hash_v1
        assert entry.torrent_magneturi == result.magnet
        assert int(entry.torrent_contentlength) == sum(len(d) for d in FILES.values())
        assert "a collection" in html.unescape(entry.summary)
        # Following the enclosure through the API answers the collection's torrent.
        fetched = fetch_torrent(enclosure.href)
        assert fetched == torrent
        assert read_collection_torrent(fetched).info_hash_v1 == record.info_hash_v1
    # Not in its own folder's feed: that one lists the members' torrents.
    assert [e.title for e in feed_of(PREFIX).entries] == []
    document = json.loads(api_body(call(request(f"/feeds/{BUCKET}/{PARENT}", {"format": "json"}))))
    (item,) = document["items"]
    assert item["kind"] == "collection" and item["files"] == 3 and item["key"] == PREFIX
    assert item["title"] == TITLE and item["magnet"] == result.magnet
    raw = api_body(call(request(f"/feeds/{BUCKET}/{PARENT}")))
    assert b"&lt;2024&gt;" in raw and b"<2024>" not in raw


def test_an_object_and_a_collection_in_one_feed(published: Published) -> None:
    upload(published, PARENT + "loose.bin")
    make(published)
    titles = [e.title for e in feed_of(PARENT).entries]
    assert titles == [TITLE, PARENT + "loose.bin"]  # newest first, objects' titles unchanged


class CollectionRows(HTMLParser):
    """The page's folder rows that carry a collection (`data-prefix`)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.prefixes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "li" and values.get("data-prefix") is not None:
            self.prefixes.append(values["data-prefix"] or "")


def page_of(scope: str) -> tuple[Page, CollectionRows, bytes]:
    response = call(request(f"/browse/{BUCKET}/{scope}"))
    assert response["statusCode"] == 200
    raw = api_body(response)
    page, rows = Page(), CollectionRows()
    page.feed(raw.decode("utf-8"))
    rows.feed(raw.decode("utf-8"))
    return page, rows, raw


def test_the_page_shows_a_folders_collection(published: Published) -> None:
    upload(published, PARENT + "loose.bin")
    published.s3.put_object(Bucket=BUCKET, Key=PARENT + "plain/x.bin", Body=b"x")
    result = make(published)
    record = result.record
    assert record is not None
    page, rows, raw = page_of(PARENT)
    assert rows.prefixes == [PREFIX]  # the plain folder has no collection
    # `Sommer … .torrent` is the folder's link, not an object of its own.
    assert page.keys == [PARENT + "loose.bin"]
    hrefs = [link["href"] for link in page.links]
    for folder in (PREFIX, PARENT + "plain/"):
        assert f"https://{HOST}/prod/browse/{BUCKET}/{quote(folder, safe='/')}" in hrefs
    (torrent,) = [link for link in page.links if link.get("class") == "collection-torrent"]
    (magnet,) = [link for link in page.links if link.get("class") == "collection-magnet"]
    assert torrent["href"] == f"https://{HOST}/prod/{BUCKET}/{quote(PREFIX, safe='/')}?torrent"
    assert torrent["aria-label"].startswith(f"{NAME}.torrent")
    assert magnet["href"] == result.magnet
    assert fetch_torrent(torrent["href"]) == stored_collection(published.s3)
    assert record.info_hash_v1 in page.codes
    command = (
        f"aws s3api get-object-torrent --endpoint-url https://{HOST}/prod"
        f" --bucket {BUCKET} --key {shlex.quote(PREFIX)} {shlex.quote(NAME + '.torrent')}"
    )
    assert command in page.codes
    assert "40,010 bytes" in raw.decode("utf-8")
    # The object's own torrent is still shown as before.
    assert [link.get("class") for link in page.links].count("torrent") == 1
    # Escaped in the markup itself, attributes included.
    assert b"<2024>" not in raw and b"&lt;2024&gt;" in raw
    assert b'"\xc3\xbc"' not in raw and b"&quot;\xc3\xbc&quot;" in raw
    assert b"<script" not in raw


def test_a_collection_torrent_the_index_does_not_know_is_shown_as_a_file(
    published: Published,
) -> None:
    make(published)
    published.runtime.feed_index.forget_collection(BUCKET, PREFIX)
    page, rows, _ = page_of(PARENT)
    assert rows.prefixes == []  # a `.torrent` next to a folder may be anyone's file
    assert page.keys == [PREFIX[:-1] + ".torrent"]
    assert [e.title for e in feed_of(PARENT).entries] == []


# -- kept collections: the worker's rebuilds list it, its last member's deletion unlists it --


@pytest.fixture
def kept(published: Published, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    settings = published.runtime.settings.model_dump()
    settings["collections"] = [{"bucket": BUCKET, "prefix": PREFIX}]
    runtime = Runtime(Settings.from_mapping(settings), session=SESSION)
    monkeypatch.setattr(api, "runtime", runtime)
    yield runtime


def s3_event(name: str, keys: list[str]) -> str:
    """One S3 notification body with a record per key (keys URL-encoded, as S3 sends them)."""
    template = json.loads(load_event("sqs_s3_object_created.json")["Records"][0]["body"])
    record = template["Records"][0]
    records = []
    for key in keys:
        one = json.loads(json.dumps(record))
        one["eventName"] = name
        one["s3"]["bucket"]["name"] = BUCKET
        one["s3"]["object"]["key"] = quote_plus(key)
        records.append(one)
    return json.dumps({"Records": records})


def test_a_kept_collection_is_listed_as_rebuilt_and_unlisted_with_its_last_member(
    published: Published, kept: Runtime
) -> None:
    worker = kept.worker
    assert worker.queue is None  # no queue to delay through: each change rebuilds at once
    put_members(published.s3)
    worker.handle_body(s3_event("ObjectCreated:Put", [PREFIX + name for name in FILES]))
    (entry,) = [e for e in feed_of(PARENT).entries if e.title.startswith(PREFIX + " (")]
    assert entry.title == TITLE
    assert fetch_torrent(entry.enclosures[0].href) == stored_collection(published.s3)
    # The members' own torrents are in the folder's own feed, the collection is not.
    assert len(feed_of(PREFIX).entries) == 2  # the 0-byte member has no torrent

    names = list(FILES)
    published.s3.delete_object(Bucket=BUCKET, Key=PREFIX + names[0])
    worker.handle_body(s3_event("ObjectRemoved:Delete", [PREFIX + names[0]]))
    (entry,) = [e for e in feed_of(PARENT).entries if e.title.startswith(PREFIX + " (")]
    assert entry.title == f"{PREFIX} (collection of 2 files)"  # rebuilt: its entry replaced
    assert int(entry.torrent_contentlength) == 10

    for name in names[1:]:
        published.s3.delete_object(Bucket=BUCKET, Key=PREFIX + name)
    worker.handle_body(s3_event("ObjectRemoved:Delete", [PREFIX + name for name in names[1:]]))
    with pytest.raises(published.s3.exceptions.NoSuchKey):
        stored_collection(published.s3)
    for scope in ("pub/", PARENT, PREFIX):
        assert [e.title for e in feed_of(scope).entries] == [], scope
    assert kept.feed_index.lookup(BUCKET, PARENT, [PREFIX]) == {}
    _, rows, _ = page_of(PARENT)
    assert rows.prefixes == []


def test_a_kept_collection_found_fresh_is_listed(published: Published, kept: Runtime) -> None:
    """A collection made before its feeds existed (or whose listing failed) is listed by the
    next rebuild job, which finds it fresh (a backfill queues one for every kept prefix)."""
    put_members(published.s3)
    made = kept.service.collections.make(CollectionRef(BUCKET, PREFIX))  # not listed
    assert made.outcome is Outcome.CREATED
    assert [e for e in feed_of(PARENT).entries if e.title.startswith(PREFIX)] == []
    body = json.dumps({"type": "s3torrent.collection", "bucket": BUCKET, "prefix": PREFIX})
    kept.worker.handle_body(body)
    (entry,) = [e for e in feed_of(PARENT).entries if e.title.startswith(PREFIX + " (")]
    assert fetch_torrent(entry.enclosures[0].href) == stored_collection(published.s3)


def test_an_unlisting_that_failed_is_completed_by_the_retry(
    published: Published, kept: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_members(published.s3)
    kept.worker.handle_body(s3_event("ObjectCreated:Put", [PREFIX + "a b.bin"]))
    assert kept.feed_index.lookup(BUCKET, PARENT, [PREFIX])
    for name in FILES:
        published.s3.delete_object(Bucket=BUCKET, Key=PREFIX + name)
    index = kept.feed_index
    forget = index.forget_collection
    failures = [TransientServiceError("DynamoDB BatchWriteItem: throttled")]

    def flaky(bucket: str, prefix: str) -> None:
        if failures:
            raise failures.pop()
        forget(bucket, prefix)

    monkeypatch.setattr(index, "forget_collection", flaky)
    removed = s3_event("ObjectRemoved:Delete", [PREFIX + "a b.bin"])
    with pytest.raises(TransientServiceError):  # the message fails: SQS delivers it again
        kept.worker.handle_body(removed)
    with pytest.raises(published.s3.exceptions.NoSuchKey):
        stored_collection(published.s3)  # deleted, but still listed
    assert index.lookup(BUCKET, PARENT, [PREFIX])
    kept.worker.handle_body(removed)  # the redelivery: the torrent is gone, the entry too
    assert index.lookup(BUCKET, PARENT, [PREFIX]) == {}


def test_an_index_that_refuses_does_not_fail_the_collection(
    published: Published, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(result: CollectionResult) -> None:
        raise TransientServiceError("DynamoDB BatchWriteItem: throttled")

    monkeypatch.setattr(published.runtime.feed_index, "record_collection", refuse)
    put_members(published.s3)
    result = published.runtime.service.make_collection(CollectionRef(BUCKET, PREFIX))
    assert result.outcome is Outcome.CREATED  # written, answered; the next rebuild lists it
    assert stored_collection(published.s3) == result.torrent_bytes
    assert any("not listed in the feeds" in r.getMessage() for r in caplog.records)


def test_publishing_a_collection_by_its_ref_reads_it_back(published: Published) -> None:
    result = make(published)
    published.runtime.feed_index.forget_collection(BUCKET, PREFIX)
    published.runtime.service.publish_collection(CollectionRef(BUCKET, PREFIX))
    found = published.runtime.feed_index.lookup(BUCKET, PARENT, [PREFIX])
    entry = found[PREFIX]
    assert entry.magnet == result.magnet and entry.files == 3
    assert entry.torrent_length == len(stored_collection(published.s3))
    # Gone since: nothing to list, nothing raised.
    published.runtime.feed_index.forget_collection(BUCKET, PREFIX)
    published.s3.delete_object(Bucket=BUCKET, Key=PREFIX[:-1] + ".torrent")
    published.runtime.service.publish_collection(CollectionRef(BUCKET, PREFIX))
    assert published.runtime.feed_index.lookup(BUCKET, PARENT, [PREFIX]) == {}


def test_a_dry_run_lists_nothing(published: Published) -> None:
    put_members(published.s3)
    result = published.runtime.service.make_collection(CollectionRef(BUCKET, PREFIX), write=False)
    assert result.outcome is Outcome.CREATED
    assert published.runtime.feed_index.lookup(BUCKET, PARENT, [PREFIX]) == {}


# -- a collection built in parts (fan-out) is listed by the invocation that writes it --------

PIECE = 16 * 1024
PART = 8 * PIECE
TABLE = "progress"


def test_a_collection_built_in_parts_is_listed(s3: Any) -> None:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    create_progress_table(dynamodb, TABLE)
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="worker")["QueueUrl"]
    rng = random.Random(5)
    prefix = "sets/in parts/"
    for index in range(12):
        data = rng.randbytes(rng.randrange(PIECE, 3 * PIECE))
        s3.put_object(Bucket=MOTO_BUCKET, Key=f"{prefix}f{index:02}.bin", Body=data)
    settings = Settings.from_mapping(
        {
            "buckets": [{"name": MOTO_BUCKET}],
            "endpoint_url": "http://s3.test",
            "piece_length": PIECE,
            "fanout_part_bytes": PART,
            "queue_url": url,
            "backfill_table": TABLE,
        }
    )
    index = FeedIndex(dynamodb, TABLE)
    service = TorrentService(
        settings,
        S3Objects(s3, reader=SMALL_READS),
        index,
        TableHashRecords(dynamodb, TABLE),
        fanout_store=FanoutStore(dynamodb, TABLE),
        worker_queue=JobQueue(sqs, url),
    )
    ref = CollectionRef(MOTO_BUCKET, prefix)
    assert service.make_collection(ref).outcome is Outcome.STARTED
    assert index.latest(MOTO_BUCKET, "sets/", 10) == []  # nothing written yet
    worker = Worker(service, None)
    parts = 0
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            worker.handle_body(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            parts += 1
    assert parts > 1
    stored = s3.get_object(Bucket=MOTO_BUCKET, Key="sets/in parts.torrent")["Body"].read()
    (entry,) = index.latest(MOTO_BUCKET, "sets/", 10)
    assert isinstance(entry, FeedEntry)
    assert entry.key == prefix and entry.files == 12 and entry.torrent_length == len(stored)
    assert entry.info_hash_v1 == read_collection_torrent(stored).info_hash_v1
    assert [e.key for e in index.latest(MOTO_BUCKET, "", 10)] == [prefix]


def test_an_object_entry_is_not_taken_for_a_collection(published: Published) -> None:
    upload(published, PARENT + "Sommer")
    (entry,) = published.runtime.feed_index.latest(BUCKET, PARENT, 10)
    assert not entry.is_collection and entry.title == PARENT + "Sommer" and entry.files is None
    described = published.runtime.service.describe(ObjectRef(BUCKET, PARENT + "Sommer"))
    assert entry.magnet == described.magnet
