"""The URLs feeds and pages print: absolute, on the API that answered, stage included.

A feed reader fetches the enclosure from wherever it read the feed, so every link is built
from the request itself: its `Host` (API Gateway's or a custom domain), its scheme
(`X-Forwarded-Proto`, which API Gateway always sets), and the part of
`requestContext.path` before the route's path (the stage, or a custom domain's base path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode


@dataclass(frozen=True)
class ApiLinks:
    """Builds the API's absolute URLs for one request."""

    base: str  # scheme://host[/stage], no trailing slash

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ApiLinks:
        """The API's base URL as the caller reached it."""
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        context = event.get("requestContext") or {}
        host = headers.get("host") or context.get("domainName") or "localhost"
        scheme = headers.get("x-forwarded-proto", "http").split(",")[0].strip() or "http"
        path = str(event.get("path") or "")
        full = str(context.get("path") or path)
        # API Gateway keeps `path` percent-encoded and `requestContext.path` may be decoded:
        # compare segment counts, not text.
        extra = len(full.rstrip("/").split("/")) - len(path.rstrip("/").split("/"))
        mount = "/".join(full.split("/")[: extra + 1]) if extra > 0 else ""
        return cls(f"{scheme}://{host}{mount}")

    def torrent(self, bucket: str, key: str) -> str:
        """GetObjectTorrent: `GET /{bucket}/{key}?torrent` returns the `.torrent`; for a
        collection's prefix (`a/x/`, its trailing slash kept) the collection's torrent."""
        return f"{self.base}/{quote(bucket, safe='')}/{quote(key, safe='/')}?torrent"

    def feed(self, bucket: str, prefix: str, **query: str) -> str:
        """The RSS feed of a folder (or the bucket)."""
        url = f"{self.base}/feeds/{quote(bucket, safe='')}"
        if prefix:
            url += "/" + quote(prefix, safe="/")
        return url + ("?" + urlencode(query) if query else "")

    def page(self, bucket: str, prefix: str, **query: str) -> str:
        """The browse page of a folder (or the bucket)."""
        url = f"{self.base}/browse/{quote(bucket, safe='')}/" + quote(prefix, safe="/")
        return url + ("?" + urlencode(query) if query else "")
