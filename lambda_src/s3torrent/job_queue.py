"""The SQS adapter: sends message bodies to a queue, and queues the jobs the API asks for.

Below the worker and the backfill walk, which both send through it: it knows the job
marks only as `JobMarks` (the backfill table implements them), so it imports nothing of
theirs.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from s3torrent.errors import InvalidInput, TransientServiceError
from s3torrent.messages import CollectionMessage, JobMessage
from s3torrent.observability import logger

SQS_BATCH = 10  # SendMessageBatch takes at most 10 entries
SEND_ATTEMPTS = 5

# How long a job queued on request holds off the same job (same object version, same
# options): the longest a worker runs (15 minutes). A client polling `?torrent` every
# Retry-After would otherwise start one more full read of a huge object per poll, all
# hashing the same bytes at once.
REQUESTED_JOB_HOLD_SECONDS = 900.0


class JobMarks(Protocol):
    """Short-lived marks of the jobs queued on request (`ProgressStore` keeps them)."""

    def claim_job(self, job_id: str, seconds: float) -> bool: ...

    def release_job(self, job_id: str) -> None: ...


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

    def send(self, body: str, *, delay_seconds: int = 0) -> None:
        """Send one body (TransientServiceError if SQS will not take it), visible to
        receivers after `delay_seconds` (at most 900, SQS's limit)."""
        rejected = self.send_all([body], delay_seconds=delay_seconds)
        if rejected:
            raise InvalidInput(f"SQS refused the message: {rejected[0][1]}")

    def send_all(self, bodies: Sequence[str], *, delay_seconds: int = 0) -> list[tuple[str, str]]:
        """Send every body; returns the ones SQS refuses for good (sender faults) with why.

        Entries failed by SQS itself are retried with backoff; TransientServiceError when
        some still fail after `attempts`.
        """
        rejected: list[tuple[str, str]] = []
        for start in range(0, len(bodies), SQS_BATCH):
            rejected.extend(self._send_batch(bodies[start : start + SQS_BATCH], delay_seconds))
        return rejected

    def _send_batch(self, bodies: Sequence[str], delay_seconds: int) -> list[tuple[str, str]]:
        pending = {str(index): body for index, body in enumerate(bodies)}
        rejected: list[tuple[str, str]] = []
        for attempt in range(self.attempts):
            entries: list[dict[str, Any]] = [
                {"Id": key, "MessageBody": body} for key, body in pending.items()
            ]
            if delay_seconds:
                for entry in entries:
                    entry["DelaySeconds"] = delay_seconds
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
    marks: JobMarks | None,
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


def queue_collection_rebuild(
    queue: JobQueue, marks: JobMarks | None, job: CollectionMessage, delay_seconds: int
) -> bool:
    """Send a kept collection's rebuild, visible in `delay_seconds`, unless one already sent
    is still waiting; True when this call sent it (the debounce, docs/collections.md).

    The mark lapses a second or more *before* the job it stands for is delivered (marks
    count whole seconds): a change refused by the mark happened before that job lists the
    prefix, so the job sees it; a change after the job started sends the next job.
    """
    body = job.to_body()
    if marks is None:  # no table: every change sends (correct, only costlier)
        queue.send(body, delay_seconds=delay_seconds)
        return True
    job_id = "collection:" + hashlib.sha256(body.encode()).hexdigest()
    if not marks.claim_job(job_id, delay_seconds - 1):
        return False
    try:
        queue.send(body, delay_seconds=delay_seconds)
    except Exception:
        marks.release_job(job_id)  # the next change must be able to send it
        raise
    return True
