"""A folder's browse page: plain HTML, no script, readable on a phone. Pure: values in, bytes
out.

Built with f-strings and `html.escape` rather than a template library: the page is one
layout of some forty lines, what ships to Lambda imports only the standard library, boto3
and Powertools (docs/design.md), and every value that comes from a user (keys, bucket names,
URLs) passes through one function, `_e`, which escapes quotes too so the same call is safe
inside attributes.
"""

from __future__ import annotations

import html
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from s3torrent.model import TORRENT_SUFFIX, ListedObject
from s3torrent.publishing.feed import RSS_TYPE, xml_text
from s3torrent.publishing.index import FeedEntry
from s3torrent.publishing.links import ApiLinks

HTML_TYPE = "text/html; charset=utf-8"

# Dark text on white (contrast 16:1), links #0b57d0 (6.6:1): WCAG AA for all text sizes.
_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;
background:#fff;margin:0 auto;max-width:60rem;padding:0 1rem 2rem}
a{color:#0b57d0}a:focus{outline:3px solid #1a1a1a;outline-offset:2px}
h1{font-size:1.4rem;overflow-wrap:anywhere}h2{font-size:1.15rem;margin-top:1.5rem}
h3{font-size:1rem;margin:0;overflow-wrap:anywhere}
ul.items{list-style:none;padding:0;margin:0}
ul.items>li{border-top:1px solid #c4c4c4;padding:.6rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;margin:.4rem 0 0}
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere;min-width:0}
code{font-size:.85rem;overflow-wrap:anywhere;background:#f2f2f2;padding:0 .2rem}
nav ol{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.3rem}
nav li+li::before{content:"/";padding-right:.3rem;color:#555}
""".strip()


@dataclass(frozen=True)
class ObjectRow:
    """One object on the page and what the service knows of its torrent."""

    obj: ListedObject
    has_torrent: bool  # `<key>.torrent` is listed next to it
    entry: FeedEntry | None  # from the feed index: magnet and info hashes


def _e(value: str) -> str:
    """Escaped for text and attribute values alike (keys are user input)."""
    return html.escape(xml_text(value), quote=True)


def human_size(size: int) -> str:
    """1,536 → "1.5 KiB" (the exact bytes are shown next to it)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def object_rows(
    objects: Sequence[ListedObject],
    entries: Mapping[str, FeedEntry],
    folders: Sequence[str] = (),
) -> list[ObjectRow]:
    """The page's objects: a `.torrent` listed next to its object is shown as that object's
    link, not as an object of its own; so is `x.torrent` next to the folder `x/` when the
    index knows it as that folder's collection torrent."""
    keys = {o.key for o in objects}
    collections = {f for f in folders if f in entries}
    rows = []
    for obj in objects:
        if obj.key.endswith(TORRENT_SUFFIX):
            base = obj.key[: -len(TORRENT_SUFFIX)]
            if base in keys or base + "/" in collections:
                continue
        has = obj.key + TORRENT_SUFFIX in keys or obj.key in entries
        rows.append(ObjectRow(obj, has, entries.get(obj.key)))
    return rows


def get_object_torrent_command(links: ApiLinks, bucket: str, key: str) -> str:
    """The AWS CLI line that fetches the torrent (S3's GetObjectTorrent on the API); for a
    collection's prefix (`a/x/`) its torrent, saved as `x.torrent`."""
    name = key.removesuffix("/").rsplit("/", 1)[-1] + TORRENT_SUFFIX
    return (
        f"aws s3api get-object-torrent --endpoint-url {shlex.quote(links.base)}"
        f" --bucket {shlex.quote(bucket)} --key {shlex.quote(key)} {shlex.quote(name)}"
    )


def render_page(
    *,
    bucket: str,
    prefix: str,
    folders: Sequence[str],
    rows: Sequence[ObjectRow],
    links: ApiLinks,
    next_url: str | None,
    collections: Mapping[str, FeedEntry] | None = None,
) -> bytes:
    """The folder page; `collections` are the folders (`a/x/`) whose collection torrent the
    index knows, each shown with its torrent next to the link into the folder."""
    collections = collections or {}
    title = f"s3://{bucket}/{prefix}"
    feed = links.feed(bucket, prefix)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)} — s3torrent</title>",
        f'<link rel="alternate" type="{RSS_TYPE}" title="{_e(title)} torrents" href="{_e(feed)}">',
        f"<style>{_STYLE}</style></head><body>",
        _breadcrumbs(bucket, prefix, links),
        f"<main><h1>{_e(title)}</h1>",
        f'<p><a href="{_e(feed)}">RSS feed of the newest torrents here</a>'
        f' (<a href="{_e(links.feed(bucket, prefix, format="json"))}">JSON</a>)</p>',
        f'<section aria-labelledby="folders"><h2 id="folders">Folders ({len(folders)})</h2>',
    ]
    if folders:
        parts.append('<ul class="items">')
        for folder in folders:
            entry = collections.get(folder)
            if entry is not None:
                parts.append(_collection(entry, folder, prefix, links))
                continue
            name = folder[len(prefix) :]
            parts.append(
                f'<li class="folder"><a href="{_e(links.page(bucket, folder))}">{_e(name)}</a></li>'
            )
        parts.append("</ul>")
    else:
        parts.append("<p>No folders.</p>")
    parts.append(
        f'</section><section aria-labelledby="objects"><h2 id="objects">Objects ({len(rows)})</h2>'
    )
    if rows:
        parts.append('<ul class="items">')
        parts.extend(_object(row, bucket, prefix, links) for row in rows)
        parts.append("</ul>")
    else:
        parts.append("<p>No objects.</p>")
    parts.append("</section>")
    if next_url:
        parts.append(f'<p><a rel="next" href="{_e(next_url)}">More in this folder</a></p>')
    parts.append("</main></body></html>")
    return "\n".join(parts).encode("utf-8")


def _breadcrumbs(bucket: str, prefix: str, links: ApiLinks) -> str:
    crumbs = [f'<li><a href="{_e(links.page(bucket, ""))}">{_e(bucket)}</a></li>']
    folder = ""
    for segment in [s for s in prefix.split("/")[:-1]]:
        folder += segment + "/"
        crumbs.append(f'<li><a href="{_e(links.page(bucket, folder))}">{_e(segment)}</a></li>')
    return f'<nav aria-label="Folders above"><ol>{"".join(crumbs)}</ol></nav>'


def _object(row: ObjectRow, bucket: str, prefix: str, links: ApiLinks) -> str:
    obj = row.obj
    name = obj.key[len(prefix) :]
    details = [
        f"<dt>Size</dt><dd>{human_size(obj.size)} ({obj.size:,} bytes)</dd>",
        f"<dt>Modified</dt><dd>{obj.last_modified:%Y-%m-%d %H:%M} UTC</dd>",
    ]
    if row.has_torrent:
        torrent = links.torrent(bucket, obj.key)
        details.append(
            f'<dt>Torrent</dt><dd><a class="torrent" type="application/x-bittorrent"'
            f' href="{_e(torrent)}" aria-label="{_e(name)}.torrent">{_e(name)}.torrent</a></dd>'
        )
        entry = row.entry
        if entry is not None:
            details.append(
                f'<dt>Magnet</dt><dd><a class="magnet" href="{_e(entry.magnet)}"'
                f' aria-label="magnet link of {_e(name)}">magnet link</a></dd>'
            )
            for label, css, value in (
                ("Info hash v1", "btih", entry.info_hash_v1),
                ("Info hash v2", "btmh", entry.info_hash_v2),
            ):
                if value:
                    details.append(
                        f'<dt>{label}</dt><dd><code class="{css}">{_e(value)}</code></dd>'
                    )
        command = get_object_torrent_command(links, bucket, obj.key)
        details.append(f'<dt>AWS CLI</dt><dd><code class="cli">{_e(command)}</code></dd>')
    else:
        details.append("<dt>Torrent</dt><dd>none yet</dd>")
    return (
        f'<li class="object" data-key="{_e(obj.key)}"><h3>{_e(name)}</h3>'
        f"<dl>{''.join(details)}</dl></li>"
    )


def _collection(entry: FeedEntry, folder: str, prefix: str, links: ApiLinks) -> str:
    """A folder whose collection torrent exists: the link into it, and the torrent of every
    object under it (`GET /b/a/x/?torrent`, its magnet, size, hashes, the CLI line)."""
    bucket = entry.bucket
    name = folder[len(prefix) :]
    file_name = name.removesuffix("/") + TORRENT_SUFFIX
    files = f"{entry.files:,} files, " if entry.files is not None else ""
    details = [
        f"<dt>Collection</dt><dd>every object under {_e(name)}: {files}"
        f"{human_size(entry.size)} ({entry.size:,} bytes)</dd>",
        f'<dt>Torrent</dt><dd><a class="collection-torrent" type="application/x-bittorrent"'
        f' href="{_e(links.torrent(bucket, folder))}"'
        f' aria-label="{_e(file_name)}, the collection of {_e(name)}">{_e(file_name)}</a></dd>',
        f'<dt>Magnet</dt><dd><a class="collection-magnet" href="{_e(entry.magnet)}"'
        f' aria-label="magnet link of the collection {_e(name)}">magnet link</a></dd>',
    ]
    for label, css, value in (
        ("Info hash v1", "btih", entry.info_hash_v1),
        ("Info hash v2", "btmh", entry.info_hash_v2),
    ):
        if value:
            details.append(f'<dt>{label}</dt><dd><code class="{css}">{_e(value)}</code></dd>')
    command = get_object_torrent_command(links, bucket, folder)
    details.append(f'<dt>AWS CLI</dt><dd><code class="cli">{_e(command)}</code></dd>')
    return (
        f'<li class="folder collection" data-prefix="{_e(folder)}">'
        f'<h3><a href="{_e(links.page(bucket, folder))}">{_e(name)}</a></h3>'
        f"<dl>{''.join(details)}</dl></li>"
    )
