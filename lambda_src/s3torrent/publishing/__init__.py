"""Publishing: RSS feeds and browse pages of the torrents s3torrent made.

`index` keeps a newest-first index of torrents per folder in DynamoDB (written by the
service as it writes and deletes torrents); `feed` and `page` render it (pure); `publisher`
is what the API's `feeds` and `browse` routers call. docs/publishing.md tells the story.
"""

from s3torrent.publishing.feed import DEFAULT_LIMIT, MAX_LIMIT, RSS_TYPE, Feed
from s3torrent.publishing.index import FeedEntry, FeedIndex, feed_scopes, folder_scope
from s3torrent.publishing.links import ApiLinks
from s3torrent.publishing.page import HTML_TYPE
from s3torrent.publishing.publisher import Publisher

__all__ = [
    "DEFAULT_LIMIT",
    "HTML_TYPE",
    "MAX_LIMIT",
    "RSS_TYPE",
    "ApiLinks",
    "Feed",
    "FeedEntry",
    "FeedIndex",
    "Publisher",
    "feed_scopes",
    "folder_scope",
]
