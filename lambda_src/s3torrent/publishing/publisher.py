"""What the feed and browse routes ask for: a scope's newest torrents, a folder's page."""

from __future__ import annotations

from typing import Any

from s3torrent.model import TORRENT_SUFFIX
from s3torrent.publishing.feed import Feed
from s3torrent.publishing.index import FeedIndex, folder_scope
from s3torrent.publishing.links import ApiLinks
from s3torrent.publishing.page import object_rows, render_page
from s3torrent.s3.folders import list_folder

PAGE_KEYS = 1000  # one ListObjectsV2 page per browse page; "More" links to the next


class Publisher:
    """Feeds from the index (one Query each), pages from one delimiter listing plus the index."""

    def __init__(self, s3_client: Any, index: FeedIndex) -> None:
        self.s3_client = s3_client
        self.index = index

    def feed(self, bucket: str, prefix: str, limit: int, links: ApiLinks) -> Feed:
        """The `limit` newest torrents under the folder `prefix`."""
        scope = folder_scope(prefix)
        return Feed(bucket, scope, self.index.latest(bucket, scope, limit), links)

    def page(self, bucket: str, prefix: str, token: str | None, links: ApiLinks) -> bytes:
        """The HTML page of the folder `prefix`: its folders (with their collection torrents)
        and objects, their torrents."""
        scope = folder_scope(prefix)
        listing = list_folder(self.s3_client, bucket, scope, token, max_keys=PAGE_KEYS)
        keys = {o.key for o in listing.objects}
        # Ask the index for every object, not only those whose `.torrent` is on this page: a
        # torrent can sort onto the next page (`a`, `a-1`, …, `a.torrent`). And for every
        # folder: its collection torrent (`x.torrent` sorts just before `x/`, maybe on the page
        # before). A listing page holds 1,000 keys and folders together: at most 10 requests.
        sources = [k for k in keys if not k.endswith(TORRENT_SUFFIX)]
        entries = self.index.lookup(bucket, scope, [*sources, *listing.folders])
        collections = {f: entries[f] for f in listing.folders if f in entries}
        next_url = (
            links.page(bucket, scope, continuation=listing.next_token)
            if listing.next_token
            else None
        )
        return render_page(
            bucket=bucket,
            prefix=scope,
            folders=listing.folders,
            rows=object_rows(listing.objects, entries, listing.folders),
            links=links,
            next_url=next_url,
            collections=collections,
        )
