"""The backfill walk: starts backfills and walks each one step (one invocation) at a time.

A step lists from where its message says, hands what it lists to the planner, queues a job
for every object whose torrent is missing or stale — and for every fresh one the feed index
does not list yet (a torrent made before publishing existed: its job finds it fresh and lists
it, at one BatchGetItem per 100 fresh objects here) — and, when the invocation runs low on
time, commits its counters and sends the rest of the walk on as a continuation message.
`ProgressStore` makes a step that SQS delivers twice walk once (see `progress`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from s3torrent.backfill.planner import BackfillPlanner, PlannedObject
from s3torrent.backfill.progress import ProgressStore, StepClaim
from s3torrent.errors import BackfillStepBusy, InvalidInput, S3TorrentError
from s3torrent.job_queue import JobQueue
from s3torrent.messages import BackfillMessage, CollectionMessage, JobMessage
from s3torrent.model import ListPage
from s3torrent.observability import logger
from s3torrent.publishing.index import FeedIndex
from s3torrent.s3.objects import S3Objects
from s3torrent.settings import Settings

# How much longer than its invocation's time left a step's lease lasts.
LEASE_SLACK_SECONDS = 30.0


def scoped_prefix(settings: Settings, bucket: str, prefix: str) -> str | None:
    """The prefix to walk for a backfill of bucket/prefix, or None if the allowlist has none.

    A request wider than the configured scope walks the scope's prefix instead.
    """
    scopes = [scope for scope in settings.buckets if scope.name == bucket]
    if any(prefix.startswith(scope.prefix) for scope in scopes):
        return prefix
    narrower = [scope.prefix for scope in scopes if scope.prefix.startswith(prefix)]
    if len(narrower) == 1:
        return narrower[0]
    return prefix if narrower else None  # several: walk them all; the planner skips the rest


@dataclass
class StepReport:
    """What one backfill step did: how its claim went, what it counted, how it ended."""

    claim: StepClaim
    tally: Counter[str]
    finished: bool = False
    continued: bool = False


class Backfills:
    """Starts backfills and walks them one step (one invocation's worth) at a time."""

    def __init__(
        self,
        settings: Settings,
        objects: S3Objects,
        *,
        worker_queue: JobQueue,
        backfill_queue: JobQueue,
        progress: ProgressStore,
        page_size: int = 1000,
        index: FeedIndex | None = None,
    ) -> None:
        self.settings = settings
        self.objects = objects
        self.worker_queue = worker_queue
        self.backfill_queue = backfill_queue
        self.progress = progress
        self.page_size = page_size  # ListObjectsV2 MaxKeys (1000, S3's maximum)
        # The feed index lives in the progress table (publishing/index.py): fresh torrents
        # it does not list get a job, which lists them.
        self.index = index if index is not None else FeedIndex(progress.client, progress.table)

    # -- starting ----------------------------------------------------------------------------

    def start(self, bucket: str, prefix: str, backfill_id: str | None = None) -> str:
        """Record a new backfill and queue its first step; returns its id.

        With an id that already exists (a redelivered schedule), nothing new starts; a
        start that was recorded but never sent is sent again.
        """
        backfill_id = backfill_id or uuid.uuid4().hex
        message = BackfillMessage(backfill_id=backfill_id, bucket=bucket, prefix=prefix)
        if not self.progress.create(backfill_id, bucket, prefix):
            existing = self.progress.get(backfill_id)
            if existing is None or existing.status != "queued":
                return backfill_id
        self.backfill_queue.send(message.to_body())
        logger.info(
            "backfill started", extra={"backfill_id": backfill_id, "uri": f"s3://{bucket}/{prefix}"}
        )
        self._refresh_kept_collections(bucket, prefix)
        return backfill_id

    def _refresh_kept_collections(self, bucket: str, prefix: str) -> None:
        """Kept collections the backfill's scope touches get a rebuild job now: it lists the
        prefix and builds only when the stored torrent is missing or its listing digest stale
        (changes made while no event reached the worker)."""
        for kept in self.settings.collections:
            if kept.bucket == bucket and (
                kept.prefix.startswith(prefix) or prefix.startswith(kept.prefix)
            ):
                job = CollectionMessage(bucket=kept.bucket, prefix=kept.prefix)
                self.worker_queue.send(job.to_body())

    def start_scheduled(self, event_id: str, event_time: str) -> list[str]:
        """One backfill per configured bucket scope, with ids derived from the event."""
        stamp = "".join(ch for ch in event_time if ch.isalnum())[:16] or "now"
        started = []
        for scope in self.settings.buckets:
            digest = hashlib.sha256(
                f"{event_id}\n{scope.name}\n{scope.prefix}".encode()
            ).hexdigest()
            started.append(self.start(scope.name, scope.prefix, f"sched-{stamp}-{digest[:12]}"))
        return started

    # -- walking -----------------------------------------------------------------------------

    def run_step(
        self,
        message: BackfillMessage,
        *,
        owner: str,
        remaining_ms: Callable[[], int],
        margin_ms: int,
    ) -> StepReport:
        """Walk from where `message` says until the listing ends or time runs low."""
        lease = remaining_ms() / 1000 + LEASE_SLACK_SECONDS
        claim = self.progress.claim_step(message.backfill_id, message.step, owner, lease)
        if claim is StepClaim.BUSY:
            raise BackfillStepBusy(
                f"backfill {message.backfill_id} step {message.step} is being walked elsewhere"
            )
        if claim is StepClaim.DONE:
            self._resend_lost_continuation(message)
            return StepReport(claim, Counter())
        try:
            return self._walk(message, owner, remaining_ms, margin_ms)
        except S3TorrentError as error:
            if not error.retryable:  # e.g. the bucket is gone or denies ListObjectsV2
                self.progress.fail(message.backfill_id, f"{error.code}: {error}")
            raise

    def _walk(
        self,
        message: BackfillMessage,
        owner: str,
        remaining_ms: Callable[[], int],
        margin_ms: int,
    ) -> StepReport:
        planner = (
            BackfillPlanner.restore(self.settings, message.bucket, message.planner_state)
            if message.planner_state is not None
            else BackfillPlanner(self.settings, message.bucket)
        )
        tally: Counter[str] = Counter()
        token, start_after = message.continuation_token, message.start_after
        first = True
        while first or remaining_ms() >= margin_ms:
            first = False
            page = self._list(message, token, start_after)
            tally["requests"] += 1
            self._dispatch(message, planner.feed(page.objects), tally)
            if page.objects:
                start_after = page.objects[-1].key
            token = page.next_token
            if token is None:
                self._dispatch(message, planner.finish(), tally)
                self._commit(message, owner, tally, None)
                logger.info("backfill listed", extra={"backfill_id": message.backfill_id, **tally})
                return StepReport(StepClaim.CLAIMED, tally, finished=True)
        follow = message.model_copy(
            update={
                "step": message.step + 1,
                "planner_state": planner.state(),
                "continuation_token": token,
                "start_after": start_after,
            }
        )
        tally["continuations"] += 1
        body = follow.to_body()
        if self._commit(message, owner, tally, body):
            self.backfill_queue.send(body)
        logger.info(
            "backfill continues",
            extra={"backfill_id": message.backfill_id, "step": follow.step, **tally},
        )
        return StepReport(StepClaim.CLAIMED, tally, continued=True)

    def _list(
        self, message: BackfillMessage, token: str | None, start_after: str | None
    ) -> ListPage:
        try:
            return self.objects.list_page(
                message.bucket,
                message.prefix,
                token,
                start_after=start_after,
                max_keys=self.page_size,
            )
        except InvalidInput:
            if not (token and start_after):
                raise
            # A continuation token S3 no longer takes: resume after the last key instead.
            logger.warning("continuation token refused, resuming after the last key")
            return self.objects.list_page(
                message.bucket,
                message.prefix,
                None,
                start_after=start_after,
                max_keys=self.page_size,
            )

    def _dispatch(
        self, message: BackfillMessage, planned: Iterable[PlannedObject], tally: Counter[str]
    ) -> None:
        keys: list[str] = []
        fresh: list[str] = []
        for item in planned:
            tally["listed"] += 1
            if item.action in ("missing", "stale"):
                keys.append(item.key)
            elif item.action == "fresh":
                fresh.append(item.key)
            else:
                tally["skipped"] += 1
        if fresh:
            # Fresh torrents the feeds do not list (made before the index existed, or an
            # index write that never succeeded) are queued too: the worker finds each fresh
            # (a HEAD and a GET, nothing hashed) and lists it. Every entry is in the bucket's
            # scope, so one BatchGetItem per 100 keys, whatever folders they are in.
            listed = self.index.lookup(message.bucket, "", fresh)
            unlisted = [key for key in fresh if key not in listed]
            tally["fresh"] += len(fresh) - len(unlisted)
            keys.extend(unlisted)
        if not keys:
            return
        jobs = [
            JobMessage(bucket=message.bucket, key=key, backfill_id=message.backfill_id).to_body()
            for key in keys
        ]
        rejected = self.worker_queue.send_all(jobs)
        for body, why in rejected:
            logger.error("SQS refused a job", extra={"job": body[:300], "reason": why})
        tally["queued"] += len(jobs) - len(rejected)
        tally["failed"] += len(rejected)

    def _commit(
        self, message: BackfillMessage, owner: str, tally: Counter[str], body: str | None
    ) -> bool:
        committed = self.progress.commit_step(
            message.backfill_id, message.step, owner, tally, next_message=body
        )
        if not committed:
            logger.warning(
                "lease lost: another invocation took this step over",
                extra={"backfill_id": message.backfill_id, "step": message.step},
            )
        return committed

    def _resend_lost_continuation(self, message: BackfillMessage) -> None:
        """A redelivered step: if its continuation may never have been sent, send it again."""
        current = self.progress.get(message.backfill_id)
        if (
            current is not None
            and current.cursor == message.step + 1
            and current.next_message
            and current.status == "running"
            and (current.lease_until is None or current.lease_until < self.progress.clock())
        ):
            logger.info("resending the continuation of a redelivered step")
            self.backfill_queue.send(current.next_message)
        else:
            logger.info(
                "step already walked: acknowledged",
                extra={"backfill_id": message.backfill_id, "step": message.step},
            )
