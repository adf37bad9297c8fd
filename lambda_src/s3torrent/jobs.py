"""The work the queues carry, and what the worker and the backfill do with it.

Worker queue bodies: S3 event notifications (also `s3:TestEvent`, also wrapped in an SNS
envelope) and job messages
`{"type": "s3torrent.job", "bucket", "key", "version_id"?, "backfill_id"?, "overrides"?}`.
Backfill queue bodies: `{"type": "s3torrent.backfill", "backfill_id", "bucket", "prefix",
"step", "planner_state"?, "continuation_token"?, "start_after"?}`.

The rule the worker lives by: a message fails (SQS retries it, then the DLQ keeps it) only
for an error worth retrying; one that can never succeed is logged with its reason, counted,
and acknowledged.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from s3torrent.backfill.planner import BackfillPlanner, PlannedObject
from s3torrent.backfill.progress import ProgressStore, StepClaim
from s3torrent.errors import (
    BackfillStepBusy,
    InvalidInput,
    ObjectNotFound,
    OutOfTime,
    S3TorrentError,
    TransientServiceError,
)
from s3torrent.model import ObjectRef, Outcome, TorrentResult
from s3torrent.observability import Metric, count, logger, record_result
from s3torrent.s3.objects import ListPage, S3Objects
from s3torrent.service import HashProgress, TorrentService
from s3torrent.settings import Settings

JOB_TYPE = "s3torrent.job"
BACKFILL_TYPE = "s3torrent.backfill"
SQS_BATCH = 10  # SendMessageBatch takes at most 10 entries
SEND_ATTEMPTS = 5
LEASE_SLACK_SECONDS = 30.0


# --- messages ------------------------------------------------------------------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_body(self) -> str:
        """The SQS body: compact JSON, ASCII only (SQS refuses some characters S3 keys allow)."""
        return json.dumps(
            self.model_dump(exclude_none=True), ensure_ascii=True, separators=(",", ":")
        )


class JobMessage(_Message):
    """Make (or refresh) the torrent of one object."""

    type: Literal["s3torrent.job"] = "s3torrent.job"
    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    version_id: str | None = None
    backfill_id: str | None = None
    overrides: dict[str, Any] | None = None

    def ref(self) -> ObjectRef:
        return ObjectRef(self.bucket, self.key, self.version_id)


class BackfillMessage(_Message):
    """One step of a backfill walk: where the listing resumes and what the planner holds."""

    type: Literal["s3torrent.backfill"] = "s3torrent.backfill"
    backfill_id: str = Field(min_length=1, max_length=128)
    bucket: str = Field(min_length=1)
    prefix: str = ""
    step: int = Field(default=0, ge=0)
    planner_state: dict[str, Any] | None = None
    continuation_token: str | None = None
    start_after: str | None = None  # the last key listed: a fallback if the token expired


def parse_backfill_message(body: str | Mapping[str, Any]) -> BackfillMessage:
    """A backfill queue body; InvalidInput when it is not one."""
    try:
        payload = json.loads(body) if isinstance(body, str) else dict(body)
        return BackfillMessage.model_validate(payload)
    except (ValueError, ValidationError) as error:
        raise InvalidInput(f"not a backfill message: {_short(error)}") from error


def _short(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'body'}: {item['msg']}"
            for item in error.errors()[:3]
        )
    return str(error)[:200]


# --- sending -------------------------------------------------------------------------------

# How long a job queued on request holds off the same job (same object version, same
# options): the longest a worker runs (15 minutes). A client polling `?torrent` every
# Retry-After would otherwise start one more full read of a huge object per poll, all
# hashing the same bytes at once.
REQUESTED_JOB_HOLD_SECONDS = 900.0

# Seconds a worker keeps in hand to write a torrent once its object is hashed (a HEAD and
# a PUT): a read still going with less than this left in the invocation stops, so the
# record fails on its own (retried, or counted at its last delivery) instead of the whole
# batch timing out.
WRITE_MARGIN_SECONDS = 20.0


class JobQueue:
    """Sends bodies to one SQS queue, 10 at a time, retrying the entries SQS failed."""

    def __init__(
        self,
        client: Any,
        url: str,
        *,
        attempts: int = SEND_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.url = url
        self.attempts = attempts
        self.sleep = sleep
        self.requests = 0  # SendMessage(Batch) calls made, for cost accounting

    def send(self, body: str) -> None:
        """Send one body (TransientServiceError if SQS will not take it)."""
        rejected = self.send_all([body])
        if rejected:
            raise InvalidInput(f"SQS refused the message: {rejected[0][1]}")

    def send_all(self, bodies: Sequence[str]) -> list[tuple[str, str]]:
        """Send every body; returns the ones SQS refuses for good (sender faults) with why.

        Entries failed by SQS itself are retried with backoff; TransientServiceError when
        some still fail after `attempts`.
        """
        rejected: list[tuple[str, str]] = []
        for start in range(0, len(bodies), SQS_BATCH):
            rejected.extend(self._send_batch(bodies[start : start + SQS_BATCH]))
        return rejected

    def _send_batch(self, bodies: Sequence[str]) -> list[tuple[str, str]]:
        pending = {str(index): body for index, body in enumerate(bodies)}
        rejected: list[tuple[str, str]] = []
        for attempt in range(self.attempts):
            entries = [{"Id": key, "MessageBody": body} for key, body in pending.items()]
            self.requests += 1
            try:
                response = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            except (ClientError, BotoCoreError) as error:
                if attempt + 1 == self.attempts:
                    raise TransientServiceError(f"SendMessageBatch {self.url}: {error}") from error
                self._backoff(attempt)
                continue
            retry: dict[str, str] = {}
            for failure in response.get("Failed", ()):
                body = pending[failure["Id"]]
                why = f"{failure.get('Code')}: {failure.get('Message', '')}".strip()
                if failure.get("SenderFault"):
                    rejected.append((body, why))
                else:
                    retry[failure["Id"]] = body
            if not retry:
                return rejected
            pending = retry
            self._backoff(attempt)
        raise TransientServiceError(
            f"SendMessageBatch {self.url}: {len(pending)} messages still failing"
            f" after {self.attempts} attempts"
        )

    def _backoff(self, attempt: int) -> None:
        self.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random() / 2))


def queue_requested_job(
    queue: JobQueue,
    marks: ProgressStore | None,
    job: JobMessage,
    source_etag: str | None,
    *,
    hold_seconds: float = REQUESTED_JOB_HOLD_SECONDS,
) -> bool:
    """Send a job asked for through the API, unless the same one was sent in the last
    `hold_seconds` for the same object version; True when this call sent it.

    Without a table (`marks` None) or an ETag, every request sends (duplicates stay
    correct, only costlier: writes are ETag-checked and identical).
    """
    body = job.to_body()
    if marks is None or not source_etag:
        queue.send(body)
        return True
    job_id = hashlib.sha256(f"{body}\n{source_etag}".encode()).hexdigest()
    if not marks.claim_job(job_id, hold_seconds):
        logger.info("same job queued recently", extra={"uri": job.ref().uri})
        return False
    try:
        queue.send(body)
    except Exception:
        marks.release_job(job_id)  # the next request must be able to queue it
        raise
    return True


# --- the worker ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What the worker knows about the SQS delivery it is handling."""

    last: bool = False  # SQS moves the message to the DLQ if this attempt fails too
    time_left: Callable[[], float] | None = None  # seconds left in the invocation


FIRST_DELIVERY = Delivery()


def _deadline(ref: ObjectRef, time_left: Callable[[], float] | None) -> HashProgress | None:
    """A progress callback that stops a read the invocation cannot see to its end."""
    if time_left is None:
        return None

    def check(done: int, total: int) -> None:
        left = time_left()
        if left < WRITE_MARGIN_SECONDS and done < total:
            raise OutOfTime(
                f"{ref.uri}: {done} of {total} bytes hashed with {left:.0f} s of the"
                " invocation left; retrying (more memory gives more vCPUs, see Sizing)"
            )

    return check


class Worker:
    """What one worker-queue message (or S3 Batch Operations task) asks for, done once."""

    def __init__(self, service: TorrentService, progress: ProgressStore | None) -> None:
        self.service = service
        self.progress = progress

    def handle_body(self, body: str, delivery: Delivery = FIRST_DELIVERY) -> None:
        """Process one SQS body; raises only what is worth retrying."""
        try:
            payload = json.loads(body)
        except ValueError:
            self._reject("malformed message body: not JSON", body=body[:200])
            return
        if not isinstance(payload, dict):
            self._reject("malformed message body: not a JSON object", body=body[:200])
            return
        if payload.get("Type") == "Notification" and isinstance(payload.get("Message"), str):
            self.handle_body(payload["Message"], delivery)  # S3 -> SNS -> SQS
            return
        if payload.get("Event") == "s3:TestEvent":
            logger.info("s3:TestEvent acknowledged", extra={"bucket": payload.get("Bucket")})
            return
        if "Records" in payload:
            self._notifications(payload, delivery)
        elif payload.get("type") == JOB_TYPE:
            self._job(payload, delivery)
        else:
            self._reject("unknown message type", keys=sorted(payload)[:10])

    def handle_task(self, bucket: str, key: str) -> tuple[str, str]:
        """One S3 Batch Operations task: (resultCode, resultString)."""
        ref = ObjectRef(bucket, key)
        try:
            result = self.service.make_torrent(ref)
        except S3TorrentError as error:
            code = "TemporaryFailure" if error.retryable else "PermanentFailure"
            logger.warning(
                "batch task failed",
                extra={"uri": ref.uri, "result_code": code, "error": error.code},
            )
            count(Metric.TORRENTS_FAILED)
            return code, f"{error.code}: {error}"[:1024]
        record_result(result)
        if result.outcome is Outcome.CHANGED:
            # Changed while it was read: hashing again now gets the new content.
            return "TemporaryFailure", "object changed while it was read"
        return "Succeeded", _describe(result)[:1024]

    # -- kinds of message -------------------------------------------------------------------

    def _notifications(self, payload: dict[str, Any], delivery: Delivery) -> None:
        retry: S3TorrentError | None = None
        if not isinstance(payload["Records"], list):
            self._reject("malformed S3 notification: Records is not a list")
            return
        records = list(S3Event(payload).records)
        for record in records:
            try:
                name = record.event_name
                bucket = record.s3.bucket.name
                # Keys in notifications are URL-encoded, `+` for space (NOTES.md).
                key = unquote_plus(record.s3.get_object.key)
            except (KeyError, TypeError, AttributeError):
                self._reject("malformed S3 notification record")
                continue
            try:
                self._object_event(name, bucket, key, delivery)
            except S3TorrentError as error:
                retry = retry or error  # the others in this message still get their turn
        if retry is not None:
            raise retry

    def _object_event(self, name: str, bucket: str, key: str, delivery: Delivery) -> None:
        # The event's version id is deliberately not used: the torrent next to a key
        # describes the object as it is now, so an old or reordered event can never write
        # a torrent of a version that is no longer current.
        ref = ObjectRef(bucket, key)
        if name.startswith("ObjectCreated:"):
            self._create(ref, delivery=delivery)
        elif name.startswith("ObjectRemoved:"):
            self._remove(ref)
        else:
            self._reject("unsupported S3 event type", event_name=name, uri=ref.uri)

    def _job(self, payload: dict[str, Any], delivery: Delivery) -> None:
        try:
            job = JobMessage.model_validate(payload)
        except ValidationError as error:
            self._reject(f"malformed job message: {_short(error)}")
            return
        self._create(
            job.ref(),
            overrides=job.overrides,
            backfill_id=job.backfill_id,
            delivery=delivery,
        )

    # -- doing it ----------------------------------------------------------------------------

    def _create(
        self,
        ref: ObjectRef,
        *,
        overrides: Mapping[str, Any] | None = None,
        backfill_id: str | None = None,
        delivery: Delivery = FIRST_DELIVERY,
    ) -> None:
        if ref.key.endswith(".torrent"):
            # Our own writes come back as events: never a source (no trigger loop).
            logger.debug("ignoring a .torrent key", extra={"uri": ref.uri})
            return
        # On its last delivery a backfill's job is counted failed *before* it runs: SQS moves
        # the message to the DLQ after this attempt however it ends, and an attempt that
        # dies (out of memory, killed at the function's timeout) runs none of our code after
        # it, so its backfill would wait for it forever. Every way this attempt does end
        # moves that mark to its real outcome in the same atomic ADD.
        presumed_failed = 1 if delivery.last and backfill_id else 0
        self._count(backfill_id, failed=presumed_failed)
        try:
            result = self.service.make_torrent(
                ref, overrides=overrides, on_progress=_deadline(ref, delivery.time_left)
            )
        except ObjectNotFound as error:
            # Deleted since the event: its ObjectRemoved event settles the torrent.
            logger.info("object gone, nothing to do", extra={"uri": ref.uri, "reason": str(error)})
            count(Metric.TORRENTS_SKIPPED)
            self._count(backfill_id, done=1, failed=-presumed_failed)
            return
        except S3TorrentError as error:
            if not error.retryable:
                self._reject(str(error), uri=ref.uri, error=error.code)
                self._count(backfill_id, failed=1 - presumed_failed)
                return
            if not delivery.last:
                logger.warning("retrying", extra={"uri": ref.uri, "reason": str(error)})
                raise
            # SQS moves the message to the DLQ after this; its backfill counted it above.
            logger.error(
                "last delivery failed: off to the dead-letter queue",
                extra={"uri": ref.uri, "reason": str(error), "error": error.code},
            )
            count(Metric.TORRENTS_FAILED)
            raise
        record_result(result)
        self._log_result(result)
        self._count(backfill_id, done=1, failed=-presumed_failed)

    def _remove(self, ref: ObjectRef) -> None:
        if ref.key.endswith(".torrent"):
            return
        try:
            result = self.service.remove_torrent(ref)
        except S3TorrentError as error:
            if error.retryable:
                raise
            self._reject(str(error), uri=ref.uri, error=error.code)
            return
        record_result(result)
        self._log_result(result)

    def _reject(self, reason: str, **extra: Any) -> None:
        """Acknowledge a message that can never succeed: say why, and count it."""
        logger.warning("acknowledged without a torrent", extra={"reason": reason, **extra})
        count(Metric.TORRENTS_FAILED)

    def _count(self, backfill_id: str | None, **counters: int) -> None:
        if backfill_id and self.progress is not None:
            self.progress.add(backfill_id, **counters)

    @staticmethod
    def _log_result(result: TorrentResult) -> None:
        extra: dict[str, Any] = {"uri": result.ref.uri, "outcome": result.outcome.value}
        if result.skip_reason is not None:
            extra["reason"] = result.skip_reason.value
        if result.outcome is Outcome.CREATED:
            extra.update(
                source=result.source,
                bytes=result.counters.bytes_read,
                seconds=round(result.counters.seconds, 3),
                info_hash_v1=result.record.info_hash_v1 if result.record else None,
            )
        logger.info(_describe(result), extra=extra)


def _describe(result: TorrentResult) -> str:
    if result.outcome is Outcome.SKIPPED and result.skip_reason is not None:
        return f"skipped: {result.skip_reason.value}"
    if result.outcome is Outcome.CHANGED:
        return "changed while read: a newer event follows"
    if result.record is not None and result.outcome in (Outcome.CREATED, Outcome.FRESH):
        hashes = result.record.info_hash_v2 or result.record.info_hash_v1
        return f"{result.outcome.value}: {result.torrent_key} ({hashes})"
    return f"{result.outcome.value}: {result.torrent_key}"


# --- backfills -----------------------------------------------------------------------------


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
    """What one backfill step did (also what the tests read)."""

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
    ) -> None:
        self.settings = settings
        self.objects = objects
        self.worker_queue = worker_queue
        self.backfill_queue = backfill_queue
        self.progress = progress
        self.page_size = page_size  # ListObjectsV2 MaxKeys (1000, S3's maximum)

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
        return backfill_id

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
        jobs: list[str] = []
        for item in planned:
            tally["listed"] += 1
            if item.action in ("missing", "stale"):
                job = JobMessage(
                    bucket=message.bucket, key=item.key, backfill_id=message.backfill_id
                )
                jobs.append(job.to_body())
            else:
                tally["fresh" if item.action == "fresh" else "skipped"] += 1
        if not jobs:
            return
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
