"""What a collection is made of: the objects under s3://BUCKET/PREFIX/, as one listing says.

A collection is every object under the prefix, recursively; directory markers and `.torrent`
keys never count, 0-byte objects do (as 0-byte files). Each member's path in the torrent is
the rest of its key split on `/`; a key that is not a valid path there (an empty segment,
`.`, `..`) is left out with its reason, never silently. The listing's digest (keys, ETags,
sizes, in listing order) is what the stored torrent records, so freshness is decided from a
listing alone (docs/collections.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from s3torrent.errors import InvalidInput
from s3torrent.model import MAX_KEY_BYTES, TORRENT_SUFFIX, ListedObject, ListPage, ObjectRef
from s3torrent.policy import is_archived

ARCHIVED = "archived and not restored: its bytes cannot be read"


@dataclass(frozen=True)
class CollectionRef:
    """A collection, as a caller names it: s3://bucket/prefix/ (the trailing slash included)."""

    bucket: str
    prefix: str
    request_payer: bool = False
    expected_bucket_owner: str | None = None

    def __post_init__(self) -> None:
        if not self.prefix.endswith("/") or not self.prefix.strip("/"):
            raise InvalidInput(
                f"s3://{self.bucket}/{self.prefix}: a collection is a prefix ending in '/'"
                " below the bucket's root (s3://BUCKET/PREFIX/)"
            )

    @property
    def base(self) -> str:
        """The prefix without its trailing slash: the torrent is `<base>.torrent`."""
        return self.prefix[:-1]

    @property
    def name(self) -> str:
        """The torrent's `name`: the prefix's last segment (`datasets/set1/` -> `set1`)."""
        return self.base.rsplit("/", 1)[-1]

    @property
    def torrent_key(self) -> str:
        """Where its torrent lives: `<PREFIX without its trailing slash>.torrent`."""
        return self.base + TORRENT_SUFFIX

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def torrent_ref(self) -> ObjectRef:
        """The ObjectRef whose `torrent_key` is this collection's (the S3 adapter's terms)."""
        return ObjectRef(
            self.bucket,
            self.base,
            request_payer=self.request_payer,
            expected_bucket_owner=self.expected_bucket_owner,
        )

    def member_ref(self, key: str) -> ObjectRef:
        """One member, with the flags every request about the collection carries."""
        return ObjectRef(
            self.bucket,
            key,
            request_payer=self.request_payer,
            expected_bucket_owner=self.expected_bucket_owner,
        )

    @property
    def key_too_long(self) -> bool:
        """True when `<base>.torrent` would pass S3's 1,024-byte key limit."""
        return len(self.torrent_key.encode("utf-8")) > MAX_KEY_BYTES


@dataclass(frozen=True)
class Member:
    """One object of a collection: a file of its torrent."""

    key: str
    path: tuple[str, ...]  # the key after the prefix, split on "/"
    size: int
    etag: str
    last_modified: datetime | None = None


@dataclass(frozen=True)
class Skipped:
    """A key under the prefix that is not in the torrent, and why."""

    key: str
    reason: str


@dataclass(frozen=True)
class Listing:
    """The members of a collection in S3 listing order (UTF-8 binary), and what was left out."""

    members: tuple[Member, ...]
    skipped: tuple[Skipped, ...] = ()
    requests: int = 0  # ListObjectsV2 pages read
    marker: bool = False  # the prefix's own directory marker (`PREFIX/`, 0 bytes) is there

    @property
    def size(self) -> int:
        """Bytes of every member together."""
        return sum(member.size for member in self.members)

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the members' keys, ETags and sizes in listing order."""
        return listing_digest(self.members)


def listing_digest(members: Iterable[Member]) -> str:
    """SHA-256 (hex) of `key NUL etag NUL size NL` per member: what a torrent describes.

    Keys cannot contain NUL... but they can contain newlines, hence NUL separators and the
    size last, a run of digits, so no two listings share a digest by concatenation.
    """
    digest = hashlib.sha256()
    for member in members:
        digest.update(member.key.encode("utf-8") + b"\0" + member.etag.encode("utf-8") + b"\0")
        digest.update(str(member.size).encode("ascii") + b"\n")
    return digest.hexdigest()


KeyProblems = Callable[[list[str]], dict[str, str]]
"""From the keys below the prefix, those that cannot be files, each with the reason (the
engine's `invalid_collection_keys` for the meta version being built)."""


def collect(ref: CollectionRef, pages: Iterable[ListPage], problems_of: KeyProblems) -> Listing:
    """The Listing of a collection from its ListObjectsV2 pages.

    Directory markers, `.torrent` keys and keys outside the prefix are left out without a
    reason (they are never content); keys that cannot be paths, and archived objects, with one.
    """
    candidates: list[ListedObject] = []
    requests = 0
    marker = False
    for page in pages:
        requests += 1
        for item in page.objects:
            if not item.key.startswith(ref.prefix):
                continue
            rest = item.key[len(ref.prefix) :]
            if not rest or rest.endswith("/"):
                marker = marker or not rest
                continue  # a directory marker
            if item.key.endswith(TORRENT_SUFFIX):
                continue  # a torrent (maybe of a collection below this one)
            candidates.append(item)
    problems = problems_of([item.key[len(ref.prefix) :] for item in candidates])
    members: list[Member] = []
    skipped: list[Skipped] = []
    for item in candidates:
        rest = item.key[len(ref.prefix) :]
        if rest in problems:
            skipped.append(Skipped(item.key, problems[rest]))
        elif is_archived(item.storage_class, None, False):
            skipped.append(Skipped(item.key, ARCHIVED))
        else:
            members.append(
                Member(item.key, tuple(rest.split("/")), item.size, item.etag, item.last_modified)
            )
    return Listing(tuple(members), tuple(skipped), requests, marker)
