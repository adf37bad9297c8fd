"""Backfill decisions from a ListObjectsV2 walk alone: missing, stale, fresh or skip.

S3 lists keys in UTF-8 binary order, and `<key>.torrent` sorts after `<key>` (it extends
it), so the torrent of an object, if any, appears later in the same walk — maybe pages
later, with other keys in between (`a`, `a-1`, `a.b`, `a.torrent`). An object is held until
the listing has passed the place its torrent would be, then decided:

- its torrent was listed, at least as new as the object (LastModified): fresh — no request;
- its torrent was listed but is older than the object: stale;
- the listing went past `<key>.torrent` without it: missing.

Pure: no I/O, and its state is plain JSON so a Lambda can hand the walk to a continuation.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from s3torrent.model import TORRENT_SUFFIX, ListedObject, SkipReason
from s3torrent.policy import ARCHIVE_CLASSES, key_skip_reason
from s3torrent.settings import Settings

Action = Literal["missing", "stale", "fresh", "skip"]

STATE_VERSION = 1

# A continuation carries the held objects in its SQS message (256 KiB at most; a held
# object costs up to ~3.2 KiB of it with a 1,024-byte key of non-ASCII characters). Objects
# pile up only along a chain of keys each extending the last (`a`, `a-1`, `a-1-x`, ...: every
# torrent key of the chain sorts after all of it). Past this many, the object whose torrent
# would come soonest is decided "missing" at once: its job then finds a fresh torrent by
# itself (a HEAD and a GET), so the cap costs requests, never a wrong torrent.
MAX_PENDING = 64


@dataclass(frozen=True)
class PlannedObject:
    """What the backfill does with one source object."""

    key: str
    size: int
    etag: str
    action: Action
    reason: str | None = None  # for "skip": the SkipReason text


class BackfillPlanner:
    """Feed listing pages in order; get back each object once it can be decided.

    `.torrent` keys are never sources: they pair with their object (or count as orphans)
    and produce no PlannedObject. `listed` counts source keys, `torrents_listed` the rest.
    """

    def __init__(self, settings: Settings, bucket: str) -> None:
        self.settings = settings
        self.bucket = bucket
        self.listed = 0
        self.torrents_listed = 0
        self.orphans = 0
        self._last_key: str | None = None
        self._pending: dict[str, ListedObject] = {}
        self._heap: list[str] = []  # torrent keys of pending objects, smallest first

    # -- feeding ------------------------------------------------------------------------

    def feed(self, page: Sequence[ListedObject]) -> list[PlannedObject]:
        """Take the next listing page; return the objects it allowed to decide."""
        decided: list[PlannedObject] = []
        for item in page:
            if self._last_key is not None and item.key <= self._last_key:
                raise ValueError(f"listing out of order: {item.key!r} after {self._last_key!r}")
            self._last_key = item.key
            self._settle_before(item.key, decided)
            if item.key.endswith(TORRENT_SUFFIX):
                self._pair(item, decided)
            else:
                self._add(item, decided)
        return decided

    def finish(self) -> list[PlannedObject]:
        """The listing ended: every object still held has no torrent."""
        decided: list[PlannedObject] = []
        while self._heap:
            self._pop_missing(decided)
        return decided

    @property
    def pending(self) -> int:
        """Objects listed but not decided yet."""
        return len(self._pending)

    # -- continuation state ------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-serializable state; `restore` continues the walk from it."""
        return {
            "version": STATE_VERSION,
            "last_key": self._last_key,
            "listed": self.listed,
            "torrents_listed": self.torrents_listed,
            "orphans": self.orphans,
            "pending": [
                [item.key, item.size, item.etag, item.last_modified.isoformat(), item.storage_class]
                for item in self._pending.values()
            ],
        }

    @classmethod
    def restore(cls, settings: Settings, bucket: str, state: dict[str, Any]) -> BackfillPlanner:
        """A planner that continues where `state()` was taken."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown planner state version: {state.get('version')!r}")
        planner = cls(settings, bucket)
        planner._last_key = state.get("last_key")
        planner.listed = int(state.get("listed", 0))
        planner.torrents_listed = int(state.get("torrents_listed", 0))
        planner.orphans = int(state.get("orphans", 0))
        for key, size, etag, modified, storage_class in state.get("pending", []):
            item = ListedObject(
                key=key,
                size=int(size),
                etag=etag,
                last_modified=datetime.fromisoformat(modified),
                storage_class=storage_class,
            )
            planner._pending[key] = item
            planner._heap.append(key + TORRENT_SUFFIX)
        heapq.heapify(planner._heap)
        return planner

    # -- the decisions -------------------------------------------------------------------------

    def _settle_before(self, key: str, decided: list[PlannedObject]) -> None:
        # Every held object whose torrent key sorts before `key` has been passed: missing.
        while self._heap and self._heap[0] < key:
            self._pop_missing(decided)

    def _pop_missing(self, decided: list[PlannedObject]) -> None:
        # The held object whose torrent key comes first is decided missing (its heap entry
        # may be stale: the object already paired with its torrent).
        source = heapq.heappop(self._heap)[: -len(TORRENT_SUFFIX)]
        item = self._pending.pop(source, None)
        if item is not None:
            decided.append(_planned(item, "missing"))

    def _pair(self, torrent: ListedObject, decided: list[PlannedObject]) -> None:
        self.torrents_listed += 1
        item = self._pending.pop(torrent.key[: -len(TORRENT_SUFFIX)], None)
        if item is None:
            # No source held: deleted, skipped, outside the prefix, or past MAX_PENDING.
            self.orphans += 1
            return
        # Same-second writes count as fresh: S3 lists LastModified to the second, and an
        # event-driven torrent is usually written within a second of its object.
        action: Action = "fresh" if torrent.last_modified >= item.last_modified else "stale"
        decided.append(_planned(item, action))

    def _add(self, item: ListedObject, decided: list[PlannedObject]) -> None:
        self.listed += 1
        reason = key_skip_reason(self.settings, self.bucket, item.key)
        if reason is None and item.size == 0:
            reason = SkipReason.EMPTY
        if reason is None and item.storage_class in ARCHIVE_CLASSES:
            # The listing cannot tell a restored copy: those are made on request instead.
            reason = SkipReason.ARCHIVED
        if reason is None and item.size > self.settings.max_object_bytes:
            reason = SkipReason.TOO_LARGE
        if reason is not None:
            decided.append(_planned(item, "skip", str(reason)))
            return
        self._pending[item.key] = item
        heapq.heappush(self._heap, item.key + TORRENT_SUFFIX)
        while len(self._pending) > MAX_PENDING:
            self._pop_missing(decided)


def _planned(item: ListedObject, action: Action, reason: str | None = None) -> PlannedObject:
    return PlannedObject(key=item.key, size=item.size, etag=item.etag, action=action, reason=reason)
