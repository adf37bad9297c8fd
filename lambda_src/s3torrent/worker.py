"""The worker: what one worker-queue message (or S3 Batch Operations task) asks for, done once.

The rule it lives by: a message fails (SQS retries it, then the DLQ keeps it) only for an
error worth retrying; one that can never succeed is logged with its reason, counted, and
acknowledged. The bodies it reads are listed in `s3torrent.messages`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event

from s3torrent.backfill import ProgressStore
from s3torrent.collections import CollectionRef
from s3torrent.errors import InvalidInput, ObjectNotFound, OutOfTime, S3TorrentError
from s3torrent.job_queue import JobQueue, queue_collection_rebuild
from s3torrent.messages import (
    COLLECTION_TYPE,
    JOB_TYPE,
    PART_TYPE,
    CollectionMessage,
    JobMessage,
    PartMessage,
    parse_message,
)
from s3torrent.model import ObjectRef, Outcome, TorrentResult
from s3torrent.observability import Metric, count, logger, record_result
from s3torrent.service import HashProgress, TorrentService

# Seconds a worker keeps in hand to write a torrent once its object is hashed (a HEAD and
# a PUT): a read still going with less than this left in the invocation stops, so the
# record fails on its own (retried, or counted at its last delivery) instead of the whole
# batch timing out.
WRITE_MARGIN_SECONDS = 20.0


@dataclass(frozen=True)
class Delivery:
    """What the worker knows about the SQS delivery it is handling."""

    last: bool = False  # SQS moves the message to the DLQ if this attempt fails too
    time_left: Callable[[], float] | None = None  # seconds left in the invocation


FIRST_DELIVERY = Delivery()


def _deadline(what: str, time_left: Callable[[], float] | None) -> HashProgress | None:
    """A progress callback that stops a read (of `what`) the invocation cannot see to its end."""
    if time_left is None:
        return None

    def check(done: int, total: int) -> None:
        left = time_left()
        if left < WRITE_MARGIN_SECONDS and done < total:
            raise OutOfTime(
                f"{what}: {done} of {total} bytes hashed with {left:.0f} s of the"
                " invocation left; retrying (more memory gives more vCPUs, see Sizing)"
            )

    return check


class Worker:
    """What one worker-queue message (or S3 Batch Operations task) asks for, done once."""

    def __init__(
        self,
        service: TorrentService,
        progress: ProgressStore | None,
        queue: JobQueue | None = None,
    ) -> None:
        self.service = service
        self.progress = progress
        self.queue = queue  # the worker queue: kept collections' delayed rebuilds

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
        elif payload.get("type") == COLLECTION_TYPE:
            self._collection_job(payload, delivery)
        elif payload.get("type") == PART_TYPE:
            self._part(payload, delivery)
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
        if result.outcome is Outcome.FRESH:
            # An inventory-driven run visits every object: it lists old torrents in the feeds.
            self.service.publish(result)
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
        if name.startswith(("ObjectCreated:", "ObjectRemoved:")) and not key.endswith(".torrent"):
            self._collections_changed(bucket, key)
        if name.startswith("ObjectCreated:"):
            self._create(ref, delivery=delivery)
        elif name.startswith("ObjectRemoved:"):
            self._remove(ref)
        else:
            self._reject("unsupported S3 event type", event_name=name, uri=ref.uri)

    def _job(self, payload: dict[str, Any], delivery: Delivery) -> None:
        try:
            job = parse_message(payload)
        except InvalidInput as error:
            self._reject(f"malformed job message: {error}")
            return
        assert isinstance(job, JobMessage)  # handle_body passes `s3torrent.job` bodies only
        if job.key.endswith("/"):  # a collection the API queued (too large to make inline)
            ref = CollectionRef(job.bucket, job.key)
            self._build_collection(ref, job.overrides, delivery)
            return
        self._create(
            job.ref(),
            overrides=job.overrides,
            backfill_id=job.backfill_id,
            delivery=delivery,
        )

    def _collection_job(self, payload: dict[str, Any], delivery: Delivery) -> None:
        try:
            job = parse_message(payload)
        except InvalidInput as error:
            self._reject(f"malformed collection message: {error}")
            return
        assert isinstance(job, CollectionMessage)  # handle_body passes this type only
        kept = self.service.settings.kept_collection(job.bucket, job.prefix)
        if kept is None:
            self._reject("not a kept collection (any more)", uri=f"s3://{job.bucket}/{job.prefix}")
            return
        self._build_collection(CollectionRef(kept.bucket, kept.prefix), kept.overrides(), delivery)

    def _part(self, payload: dict[str, Any], delivery: Delivery) -> None:
        try:
            job = parse_message(payload)
        except InvalidInput as error:
            self._reject(f"malformed part message: {error}")
            return
        assert isinstance(job, PartMessage)  # handle_body passes this type only
        fanout = self.service.fanout
        if fanout is None:
            self._reject("a fan-out part, but this deployment has no table or queue for them")
            return
        fanout.run_part(
            job.build_id,
            job.part,
            last_delivery=delivery.last,
            on_progress=_deadline(f"build {job.build_id} part {job.part}", delivery.time_left),
        )

    # -- doing it ----------------------------------------------------------------------------

    def _collections_changed(self, bucket: str, key: str) -> None:
        """A change under kept prefixes: their rebuilds are due after the delay (debounced)."""
        settings = self.service.settings
        for kept in settings.kept_collections(bucket, key):
            if self.queue is None:  # no queue to delay through: bring it up to date now
                ref = CollectionRef(kept.bucket, kept.prefix)
                self._build_collection(ref, kept.overrides(), FIRST_DELIVERY)
                continue
            job = CollectionMessage(bucket=kept.bucket, prefix=kept.prefix)
            if queue_collection_rebuild(
                self.queue, self.progress, job, settings.collection_delay_seconds
            ):
                logger.info(
                    "collection rebuild due",
                    extra={
                        "uri": f"s3://{kept.bucket}/{kept.prefix}",
                        "delay_seconds": settings.collection_delay_seconds,
                    },
                )

    def _build_collection(
        self, ref: CollectionRef, overrides: Mapping[str, Any] | None, delivery: Delivery
    ) -> None:
        try:
            result = self.service.make_collection(
                ref,
                overrides=overrides or None,
                on_progress=_deadline(ref.uri, delivery.time_left),
            )
        except InvalidInput as error:
            if self.service.collections.remove_if_empty(ref):
                logger.info("collection removed: no member left", extra={"uri": ref.uri})
                return
            self._reject(str(error), uri=ref.uri, error=error.code)
            return
        except S3TorrentError as error:
            if error.retryable:
                logger.warning("retrying", extra={"uri": ref.uri, "reason": str(error)})
                raise
            self._reject(str(error), uri=ref.uri, error=error.code)
            return
        if result.outcome is Outcome.FRESH:  # a redelivery, or made before feeds: list it
            self.service.publish_collection(result)
        # CHANGED: a member changed while it was read; its event sends the next rebuild.
        logger.info(
            f"collection {result.outcome.value}: {ref.torrent_key}",
            extra={
                "uri": ref.uri,
                "outcome": result.outcome.value,
                "bytes_read": result.counters.bytes_read,
                "files": result.record.files if result.record else None,
            },
        )

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
                ref, overrides=overrides, on_progress=_deadline(ref.uri, delivery.time_left)
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
        if result.outcome is Outcome.FRESH:  # a redelivery: finish listing it in the feeds
            self.service.publish(result)
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
