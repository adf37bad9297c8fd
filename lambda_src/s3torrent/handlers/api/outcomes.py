"""What the routes make of a service result that is not simply a torrent.

An object over the API's inline size is handed to the worker as a job; a result without a
torrent becomes the domain error that says why (the error handlers turn it into HTTP).
"""

from __future__ import annotations

from typing import Any

from s3torrent.collections import CollectionResult
from s3torrent.errors import (
    BucketNotAllowed,
    CustomTorrentNotInline,
    ObjectChanged,
    UnsupportedObject,
)
from s3torrent.handlers.api.schemas import TorrentInfo
from s3torrent.handlers.runtime import Runtime
from s3torrent.job_queue import queue_requested_job
from s3torrent.messages import JobMessage
from s3torrent.model import Outcome, SkipReason, TorrentResult

# A synchronous Lambda response is at most 6 MB and base64 adds a third: a torrent made for
# one caller (never stored, so no presigned redirect) must fit in the JSON answer.
MAX_CUSTOM_TORRENT_BYTES = 4 * 1024 * 1024


def needs_worker(result: TorrentResult) -> bool:
    """True when the object is too large to hash within an API request."""
    return result.outcome is Outcome.SKIPPED and result.skip_reason is SkipReason.TOO_LARGE


def queue_torrent(
    runtime: Runtime,
    result: TorrentResult,
    *,
    bucket: str,
    key: str,
    version_id: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> None:
    """Send the worker a job for this torrent, unless the same job is still held as sent."""
    job = JobMessage(bucket=bucket, key=key, version_id=version_id, overrides=overrides)
    # The table marks recent jobs; without one every request sends (still correct, costlier).
    marks = runtime.progress if runtime.settings.backfill_table else None
    queue_requested_job(runtime.worker_queue, marks, job, result.source_etag)


def collection_needs_worker(result: CollectionResult) -> bool:
    """True when a collection is too large to hash within an API request and the worker can
    read it (a requester-pays read is the caller's to pay: not queued)."""
    return (
        result.outcome is Outcome.SKIPPED
        and result.skip_reason is SkipReason.TOO_LARGE
        and not result.ref.request_payer
    )


def queue_collection(
    runtime: Runtime, result: CollectionResult, overrides: dict[str, Any] | None = None
) -> None:
    """Send the worker a job for this collection (a key ending in '/'), unless the same job
    for the same listing is still held as sent; big ones fan out there (docs/fanout.md)."""
    job = JobMessage(bucket=result.ref.bucket, key=result.ref.prefix, overrides=overrides)
    marks = runtime.progress if runtime.settings.backfill_table else None
    queue_requested_job(runtime.worker_queue, marks, job, result.listing_digest)


def require_torrent(result: TorrentResult) -> TorrentResult:
    """The result if it has a torrent; else the error that says why not."""
    if result.outcome is Outcome.SKIPPED:
        if result.skip_reason is SkipReason.OUTSIDE_SCOPE:
            raise BucketNotAllowed(result.ref.bucket, result.ref.key)
        reason = result.skip_reason.value if result.skip_reason else "no torrent"
        raise UnsupportedObject(result.ref.bucket, result.ref.key, reason)
    if result.outcome is Outcome.CHANGED:
        raise ObjectChanged(f"{result.ref.uri} changed while it was read: retry")
    return result


def custom_torrent(result: TorrentResult) -> TorrentInfo:
    """The answer carrying a torrent made with a caller's own options (never stored)."""
    size = len(result.torrent_bytes or b"")
    if size > MAX_CUSTOM_TORRENT_BYTES:
        raise CustomTorrentNotInline(
            result.ref.bucket,
            result.ref.key,
            f"its torrent is {size} bytes, over the {MAX_CUSTOM_TORRENT_BYTES} a response carries",
        )
    return TorrentInfo.from_custom(result)


def require_collection(result: CollectionResult, inline_max_bytes: int) -> CollectionResult:
    """The collection result if it has a torrent; else the error that says why not.

    Routes queue one over the API's inline size first (`collection_needs_worker`); what is
    left too large here (requester pays) is refused with what to run instead.
    """
    ref = result.ref
    if result.outcome is Outcome.SKIPPED:
        if result.skip_reason is SkipReason.OUTSIDE_SCOPE:
            raise BucketNotAllowed(ref.bucket, ref.prefix)
        if result.skip_reason is SkipReason.TOO_LARGE:
            raise UnsupportedObject(
                ref.bucket,
                ref.prefix,
                f"the collection is over the API's inline size ({inline_max_bytes} bytes):"
                f" make it with `s3torrent create {ref.uri}`",
            )
        reason = result.skip_reason.value if result.skip_reason else "no torrent"
        raise UnsupportedObject(ref.bucket, ref.prefix, reason)
    if result.outcome is Outcome.CHANGED:
        raise ObjectChanged(f"an object under {ref.uri} changed while it was read: retry")
    return result
