"""The feed index: one DynamoDB item per (torrent, each folder above it), newest first.

It lives in the table the stack already owns for backfill progress (partition key
`backfill_id`), next to the backfill items and `claim_job`'s marks, as a third item type whose
ids start with `feed:`. A feed must cost in proportion to the items it returns, not to the
objects in the bucket, and must be newest first *within a folder scope*. DynamoDB queries
one partition in sort-key order only, so each torrent is written once per scope a feed can
ask for — the bucket (`""`) and every folder above its key (`a/`, `a/b/`) — and a global
secondary index (`feeds`) has the scope as partition key (`feed_scope`: `bucket/prefix`) and
an inverted time as sort key (`feed_order`). A feed is then one `Query` of `limit` items on
one partition, whatever the bucket holds.

Why not one item per torrent and a `begins_with` on the key? A sort key orders by key *or*
by time, not both: a prefix filter on a time-ordered partition would read (and pay for)
every item of the bucket before the `limit` newest of a small folder. Why a GSI rather than
new key attributes? The table's key is `backfill_id` alone (changing it replaces the table);
an index is added in place. The price is write amplification: a key `a/b/c.bin` costs three
items (at most `MAX_SCOPES`), written in one BatchWriteItem; deep keys past `MAX_SCOPES`
folders appear in the feeds of their top `MAX_SCOPES - 1` folders and the bucket only.

Collections (the multi-file `<PREFIX>.torrent` of every object under `PREFIX/`) are entries
too, keyed by the prefix with its trailing slash (`a/x/`, which no object's key can be): they
are listed in the bucket's feed and in the feeds of the folders *above* the prefix (`a/`), the
page that shows the folder `x/` — not in `a/x/`'s own feed, which lists its members.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from s3torrent.dynamodb import batch_get, batch_write, guarded
from s3torrent.model import ObjectRef, TorrentResult

if TYPE_CHECKING:  # the publishing package stays free of the collections' imports at run time
    from s3torrent.collections import CollectionResult

INDEX_NAME = "feeds"
SCOPE_ATTRIBUTE = "feed_scope"
ORDER_ATTRIBUTE = "feed_order"
ID_PREFIX = "feed:"  # backfill ids are hex or `sched-…`, claim_job's marks `queued-job:…`
MAX_SCOPES = 32  # the bucket and the 31 folders nearest the top
_LATEST_MS = 10**15  # inverted milliseconds stay 15 digits wide until the year 33658


@dataclass(frozen=True)
class FeedEntry:
    """One torrent s3torrent made, as feeds and pages show it."""

    bucket: str
    key: str  # the object's key, or a collection's prefix (ending in `/`)
    size: int  # bytes of the object (of every member of a collection)
    torrent_length: int  # bytes of the `.torrent`
    info_hash_v1: str | None
    info_hash_v2: str | None
    magnet: str
    published: datetime  # when the torrent was written (UTC)
    files: int | None = None  # a collection's file count (None: one object)

    @property
    def is_collection(self) -> bool:
        """A collection's entry: its key is the prefix, ending in `/` (no object's can)."""
        return self.key.endswith("/")

    @property
    def title(self) -> str:
        """What feeds call it: the key, or `a/x/ (collection of 3 files)`."""
        if not self.is_collection:
            return self.key
        if self.files is None:
            return f"{self.key} (collection)"
        return f"{self.key} (collection of {self.files} file{'' if self.files == 1 else 's'})"

    @property
    def guid(self) -> str:
        """The torrent's identity: its info hashes as URNs (BEP 9 / BEP 52 magnet forms)."""
        names = []
        if self.info_hash_v1:
            names.append(f"urn:btih:{self.info_hash_v1}")
        if self.info_hash_v2:
            names.append(f"urn:btmh:1220{self.info_hash_v2}")
        return " ".join(names)


def feed_scopes(key: str) -> list[str]:
    """The scopes a key's torrent is listed in: the bucket, then each folder above the key
    (above a collection's prefix `a/x/`: `""` and `a/`, not `a/x/` itself)."""
    parts = key.removesuffix("/").split("/")[:-1]
    scopes = [""]
    for depth in range(1, min(len(parts), MAX_SCOPES - 1) + 1):
        scopes.append("/".join(parts[:depth]) + "/")
    return scopes


def folder_scope(prefix: str) -> str:
    """A feed's or page's scope: a folder (`a/b/`), or `""` for the whole bucket."""
    prefix = prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def entry_from_result(result: TorrentResult, now: datetime | None = None) -> FeedEntry | None:
    """The entry of a torrent the service made or found; None without a stored record."""
    record = result.record
    if record is None or result.magnet is None:
        return None
    length = record.content_length or len(result.torrent_bytes or b"")
    published = record.last_modified or now or datetime.now(UTC)
    return FeedEntry(
        bucket=result.ref.bucket,
        key=result.ref.key,
        size=record.size,
        torrent_length=length,
        info_hash_v1=record.info_hash_v1,
        info_hash_v2=record.info_hash_v2,
        magnet=result.magnet,
        published=published.astimezone(UTC),
    )


def entry_from_collection(
    result: CollectionResult, now: datetime | None = None
) -> FeedEntry | None:
    """The entry of a collection torrent the service wrote (or read back); None without its
    record, bytes or magnet."""
    record = result.record
    if record is None or result.magnet is None or result.torrent_bytes is None:
        return None
    published = record.last_modified or now or datetime.now(UTC)
    return FeedEntry(
        bucket=result.ref.bucket,
        key=result.ref.prefix,
        size=record.size,
        torrent_length=len(result.torrent_bytes),
        info_hash_v1=record.info_hash_v1,
        info_hash_v2=record.info_hash_v2,
        magnet=result.magnet,
        published=published.astimezone(UTC),
        files=record.files,
    )


def item_id(bucket: str, scope: str, key: str) -> str:
    """The table key of one index item (a digest: bucket, scope and key may reach 2 KB)."""
    digest = hashlib.sha256("\0".join((bucket, scope, key)).encode("utf-8")).hexdigest()
    return ID_PREFIX + digest


def index_items(entry: FeedEntry) -> list[dict[str, Any]]:
    """The DynamoDB items of one entry, one per scope."""
    millis = int(entry.published.timestamp() * 1000)
    # Newest first in ascending order; the key's digest keeps equal times apart.
    order = f"{_LATEST_MS - millis:015d}#{hashlib.sha256(entry.key.encode()).hexdigest()[:16]}"
    base: dict[str, Any] = {
        ORDER_ATTRIBUTE: {"S": order},
        "bucket": {"S": entry.bucket},
        "object_key": {"S": entry.key},
        "size": {"N": str(entry.size)},
        "torrent_length": {"N": str(entry.torrent_length)},
        "magnet": {"S": entry.magnet},
        "published_ms": {"N": str(millis)},
    }
    if entry.info_hash_v1:
        base["info_hash_v1"] = {"S": entry.info_hash_v1}
    if entry.info_hash_v2:
        base["info_hash_v2"] = {"S": entry.info_hash_v2}
    if entry.files is not None:
        base["files"] = {"N": str(entry.files)}
    return [
        {
            **base,
            "backfill_id": {"S": item_id(entry.bucket, scope, entry.key)},
            SCOPE_ATTRIBUTE: {"S": f"{entry.bucket}/{scope}"},
        }
        for scope in feed_scopes(entry.key)
    ]


def entry_from_item(item: dict[str, Any]) -> FeedEntry:
    """An entry back from one of its items."""
    millis = int(item["published_ms"]["N"])
    return FeedEntry(
        bucket=item["bucket"]["S"],
        key=item["object_key"]["S"],
        size=int(item["size"]["N"]),
        torrent_length=int(item["torrent_length"]["N"]),
        info_hash_v1=item.get("info_hash_v1", {}).get("S"),
        info_hash_v2=item.get("info_hash_v2", {}).get("S"),
        magnet=item["magnet"]["S"],
        published=datetime.fromtimestamp(millis / 1000, UTC),
        files=int(item["files"]["N"]) if "files" in item else None,
    )


def table_definition() -> dict[str, Any]:
    """What `create_table` needs on top of the progress table's key for the index (local
    stack, tests; infra/torrent_service.py declares the same for CloudFormation)."""
    return {
        "AttributeDefinitions": [
            {"AttributeName": SCOPE_ATTRIBUTE, "AttributeType": "S"},
            {"AttributeName": ORDER_ATTRIBUTE, "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": INDEX_NAME,
                "KeySchema": [
                    {"AttributeName": SCOPE_ATTRIBUTE, "KeyType": "HASH"},
                    {"AttributeName": ORDER_ATTRIBUTE, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }


class FeedIndex:
    """Writes, removes and reads the feed index (the service's `TorrentIndex`)."""

    def __init__(self, client: Any, table: str, *, attempts: int = 5) -> None:
        self.client = client
        self.table = table
        self.attempts = attempts

    # -- the service's hooks --------------------------------------------------------------

    def record_torrent(self, result: TorrentResult) -> None:
        """List a torrent just written (or found fresh) in every feed above its key."""
        entry = entry_from_result(result)
        if entry is not None:
            self.put(entry)

    def forget_torrent(self, ref: ObjectRef) -> None:
        """Remove a deleted torrent from every feed it was listed in."""
        self.forget(ref.bucket, ref.key)

    def record_collection(self, result: CollectionResult) -> None:
        """List a collection torrent just written in the feeds above its prefix."""
        entry = entry_from_collection(result)
        if entry is not None:
            self.put(entry)

    def forget_collection(self, bucket: str, prefix: str) -> None:
        """Remove a deleted collection torrent (key: its prefix, `a/x/`) from the feeds."""
        self.forget(bucket, prefix)

    def forget(self, bucket: str, key: str) -> None:
        """Delete one entry's items (an object's key, or a collection's prefix)."""
        requests = [
            {"DeleteRequest": {"Key": {"backfill_id": {"S": item_id(bucket, scope, key)}}}}
            for scope in feed_scopes(key)
        ]
        self._write(requests)

    # -- writing ----------------------------------------------------------------------------

    def put(self, entry: FeedEntry) -> None:
        """Write one entry's items (replacing the torrent's earlier ones: same ids)."""
        self._write([{"PutRequest": {"Item": item}} for item in index_items(entry)])

    def put_many(self, entries: Iterable[FeedEntry]) -> None:
        """Write many entries' items, 25 to a request (what a backfill of the index would do)."""
        self._write([{"PutRequest": {"Item": i}} for e in entries for i in index_items(e)])

    def _write(self, requests: Sequence[dict[str, Any]]) -> None:
        batch_write(self._call, self.table, requests, attempts=self.attempts)

    # -- reading ----------------------------------------------------------------------------

    def latest(self, bucket: str, prefix: str, limit: int) -> list[FeedEntry]:
        """The `limit` newest torrents in a scope: one Query (two if items pass 1 MB)."""
        scope = f"{bucket}/{folder_scope(prefix)}"
        entries: list[FeedEntry] = []
        start: dict[str, Any] | None = None
        while len(entries) < limit:
            params: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": INDEX_NAME,
                "KeyConditionExpression": "#scope = :scope",
                "ExpressionAttributeNames": {"#scope": SCOPE_ATTRIBUTE},
                "ExpressionAttributeValues": {":scope": {"S": scope}},
                "ScanIndexForward": True,  # inverted times: ascending is newest first
                "Limit": limit - len(entries),
            }
            if start:
                params["ExclusiveStartKey"] = start
            response = self._call("query", **params)
            entries.extend(entry_from_item(item) for item in response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        return entries

    def lookup(self, bucket: str, prefix: str, keys: Iterable[str]) -> dict[str, FeedEntry]:
        """The entries of these keys (directly inside folder `prefix`, or anywhere below it
        with `prefix` `""`: every entry is in the bucket's scope), by key; the missing ones
        were made before the index, or not by s3torrent. One BatchGetItem per 100 keys."""
        scope = folder_scope(prefix)
        ids = list(dict.fromkeys(item_id(bucket, scope, key) for key in keys))  # no repeats
        items = batch_get(self._call, self.table, ids, attempts=self.attempts)
        entries = (entry_from_item(item) for item in items)
        return {entry.key: entry for entry in entries}

    def _call(self, operation: str, **params: Any) -> Any:
        return guarded(
            f"DynamoDB {operation} {self.table}", getattr(self.client, operation), **params
        )
