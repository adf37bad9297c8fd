"""A folder's torrents as RSS 2.0 (or JSON): what a feed reader or a BitTorrent client's RSS
downloader subscribes to. Pure: entries in, bytes out.

The XML is built with `xml.etree.ElementTree`, which escapes text and attributes itself;
keys are user input, so what it cannot escape — characters XML 1.0 forbids even as
references (most C0 controls, lone surrogates) — is replaced with U+FFFD first.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from xml.etree import ElementTree

from s3torrent.publishing.index import FeedEntry
from s3torrent.publishing.links import ApiLinks

RSS_TYPE = "application/rss+xml"
TORRENT_TYPE = "application/x-bittorrent"
ATOM_NS = "http://www.w3.org/2005/Atom"
# The "torrent" RSS module most BitTorrent clients and trackers read (infoHash, magnetURI).
TORRENT_NS = "http://xmlns.ezrss.it/0.1/"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
TTL_MINUTES = 5  # a hint to readers: the index changes as objects are uploaded

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

ElementTree.register_namespace("atom", ATOM_NS)
ElementTree.register_namespace("torrent", TORRENT_NS)


def xml_text(text: str) -> str:
    """Text XML 1.0 can carry: forbidden characters become U+FFFD (escaping is the writer's)."""
    return _NOT_XML.sub("\ufffd", text)


def http_date(moment: datetime) -> str:
    """RFC 1123 date (RSS pubDate, Last-Modified), whole seconds."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


@dataclass(frozen=True)
class Feed:
    """One scope's newest torrents and where everything is."""

    bucket: str
    prefix: str  # a folder (`a/b/`) or "" for the bucket
    entries: Sequence[FeedEntry]  # newest first
    links: ApiLinks

    @property
    def title(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} torrents"

    @property
    def last_modified(self) -> datetime | None:
        return max((e.published for e in self.entries), default=None)

    def item(self, entry: FeedEntry) -> dict[str, Any]:
        """One item as JSON (the RSS item's fields, named)."""
        return {
            "title": entry.title,
            "kind": "collection" if entry.is_collection else "object",
            "bucket": entry.bucket,
            "key": entry.key,
            "size": entry.size,
            "files": entry.files,
            "torrent_url": self.links.torrent(entry.bucket, entry.key),
            "torrent_length": entry.torrent_length,
            "magnet": entry.magnet,
            "info_hash_v1": entry.info_hash_v1,
            "info_hash_v2": entry.info_hash_v2,
            "guid": entry.guid,
            "published": entry.published.isoformat(timespec="milliseconds"),
        }

    def to_json(self) -> bytes:
        """The feed as JSON: the same items and fields as the RSS."""
        document = {
            "title": self.title,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "link": self.links.page(self.bucket, self.prefix),
            "feed_url": self.links.feed(self.bucket, self.prefix),
            "items": [self.item(entry) for entry in self.entries],
        }
        return json.dumps(document, ensure_ascii=False).encode("utf-8")

    def to_rss(self) -> bytes:
        """The feed as RSS 2.0 (https://www.rssboard.org/rss-specification)."""
        rss = ElementTree.Element("rss", {"version": "2.0"})
        channel = ElementTree.SubElement(rss, "channel")
        page = self.links.page(self.bucket, self.prefix)
        _text(channel, "title", self.title)
        _text(channel, "link", page)
        _text(
            channel,
            "description",
            f"The newest torrents s3torrent made under s3://{self.bucket}/{self.prefix}",
        )
        ElementTree.SubElement(
            channel,
            f"{{{ATOM_NS}}}link",
            {
                "href": self.links.feed(self.bucket, self.prefix),
                "rel": "self",
                "type": RSS_TYPE,
            },
        )
        _text(channel, "generator", "s3torrent")
        _text(channel, "ttl", str(TTL_MINUTES))
        if self.last_modified is not None:
            _text(channel, "lastBuildDate", http_date(self.last_modified))
        for entry in self.entries:
            self._rss_item(channel, entry)
        body: bytes = ElementTree.tostring(rss, encoding="utf-8", xml_declaration=True)
        return body

    def _rss_item(self, channel: ElementTree.Element, entry: FeedEntry) -> None:
        item = ElementTree.SubElement(channel, "item")
        _text(item, "title", entry.title)
        # The object's folder page, not the magnet: a client reading `link` as the torrent to
        # fetch (qBittorrent takes a magnet `link` over the enclosure) would need peers for the
        # metadata, while the enclosure downloads through the web seed alone.
        _text(item, "link", self.links.page(self.bucket, self.prefix))
        hashes = ", ".join(h for h in (entry.info_hash_v1, entry.info_hash_v2) if h)
        what = f"{entry.size} bytes"
        if entry.is_collection:
            files = f"{entry.files} files, " if entry.files is not None else ""
            what = f"a collection (every object under {entry.key}): {files}{what}"
        _text(item, "description", f"{what}; info hashes {hashes}; {entry.magnet}")
        # A collection's URL keeps the prefix's trailing slash: `GET /b/a/x/?torrent` is the
        # collection's torrent (as `aws s3api get-object-torrent --key a/x/` asks).
        ElementTree.SubElement(
            item,
            "enclosure",
            {
                "url": self.links.torrent(entry.bucket, entry.key),
                "length": str(entry.torrent_length),
                "type": TORRENT_TYPE,
            },
        )
        guid = _text(item, "guid", entry.guid)
        guid.set("isPermaLink", "false")
        _text(item, "pubDate", http_date(entry.published))
        torrent = ElementTree.SubElement(item, f"{{{TORRENT_NS}}}torrent")
        _text(torrent, f"{{{TORRENT_NS}}}contentLength", str(entry.size))
        if entry.info_hash_v1:
            _text(torrent, f"{{{TORRENT_NS}}}infoHash", entry.info_hash_v1)
        _text(torrent, f"{{{TORRENT_NS}}}magnetURI", entry.magnet)


def _text(parent: ElementTree.Element, tag: str, text: str) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, tag)
    element.text = xml_text(text)
    return element


def entity_tag(body: bytes) -> str:
    """A strong ETag of a rendered feed (it differs per format and per host it names)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def not_modified(headers: dict[str, str], etag: str, last_modified: datetime | None) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    lower = {k.lower(): v for k, v in headers.items()}
    if_none_match = lower.get("if-none-match")
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or etag in tags
    since = lower.get("if-modified-since")
    if since is None or last_modified is None:
        return False
    try:
        moment = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False  # an unreadable date is ignored, as the RFC says
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return last_modified.replace(microsecond=0) <= moment
