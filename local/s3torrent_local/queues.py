"""Lambda's SQS event source mapping, locally: poll a queue, hand batches to a handler.

Each batch becomes the event Lambda would build (Records with messageId, receiptHandle, body,
attributes, eventSource `aws:sqs`, eventSourceARN); the handler's `batchItemFailures` stay on
the queue and come back (into the DLQ after the redrive policy's maxReceiveCount), the rest
are deleted. A handler that raises fails the whole batch, as on Lambda.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from s3torrent_local.lambda_context import REGION, FakeLambdaContext, Handler

log = logging.getLogger("s3torrent_local")


@dataclass(frozen=True)
class EventSource:
    """One queue → function mapping, with the knobs Lambda's event source mapping has."""

    function_name: str
    queue_url: str
    queue_arn: str
    handler: Callable[[], Handler]  # resolved per batch, so the handler module loads lazily
    timeout_seconds: float  # the function's timeout: its context's time budget
    batch_size: int = 10
    max_receive_count: int = 3  # the queue's redrive policy (DLQ after this many receives)
    # Locally a failed record is made visible again after this many seconds instead of
    # waiting out the visibility timeout, so retries (and the DLQ) show up quickly.
    retry_delay_seconds: int = 2
    poll_seconds: int = 1  # long-poll wait: also how fast a stop request is noticed


def lambda_record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """One SQS message as Lambda puts it in an event's Records."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def _lambda_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    # The SQS API spells message attributes `StringValue`; Lambda's event `stringValue`.
    return {
        "stringValue": value.get("StringValue"),
        "binaryValue": value.get("BinaryValue"),
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": list(value.get("BinaryListValues", [])),
        "dataType": value.get("DataType", "String"),
    }


def describe_body(body: str) -> str:
    """A short human description of a worker/backfill queue message, for the console."""
    try:
        data = json.loads(body)
    except ValueError:
        return "unparsable message"
    if not isinstance(data, dict):
        return "unexpected message"
    if data.get("Event") == "s3:TestEvent":
        return f"s3:TestEvent for bucket {data.get('Bucket')}"
    if isinstance(data.get("Records"), list) and data["Records"]:
        parts = []
        for record in data["Records"]:
            s3 = record.get("s3", {}) if isinstance(record, dict) else {}
            key = unquote_plus(str(s3.get("object", {}).get("key", "?")))
            bucket = s3.get("bucket", {}).get("name", "?")
            parts.append(f"{record.get('eventName', '?')} s3://{bucket}/{key}")
        return ", ".join(parts)
    kind = data.get("type")
    if kind == "s3torrent.job":
        return f"job s3://{data.get('bucket')}/{data.get('key')}"
    if kind == "s3torrent.backfill":
        where = f"s3://{data.get('bucket')}/{data.get('prefix', '')}"
        return f"backfill {data.get('backfill_id')} {where}"
    return f"message of type {kind!r}" if kind else "message"


class QueueConsumer:
    """Threads that poll one queue and invoke one handler, like Lambda's event source mapping."""

    def __init__(self, sqs: Any, source: EventSource, *, concurrency: int = 1) -> None:
        self._sqs = sqs
        self._source = source
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"{source.function_name}-{n}", daemon=True)
            for n in range(concurrency)
        ]

    @property
    def name(self) -> str:
        return self._source.function_name

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def request_stop(self) -> None:
        """Ask the pollers to stop after their current poll or batch."""
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the pollers to stop and wait for batches in flight; False if one is still busy."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # keep polling whatever one batch did; say it
                if self._stop.is_set():
                    return
                log.exception("%s: polling %s failed", self.name, self._source.queue_url)
                self._stop.wait(1.0)

    def poll_once(self) -> int:
        """Receive one batch and process it; returns how many messages it held."""
        source = self._source
        answer = self._sqs.receive_message(
            QueueUrl=source.queue_url,
            MaxNumberOfMessages=source.batch_size,
            WaitTimeSeconds=source.poll_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = answer.get("Messages", [])
        if messages:
            self._process(messages)
        return len(messages)

    def _process(self, messages: list[dict[str, Any]]) -> None:
        source = self._source
        event = {"Records": [lambda_record(message, source.queue_arn) for message in messages]}
        context = FakeLambdaContext(source.function_name, source.timeout_seconds)
        started = time.monotonic()
        failed: set[str]
        try:
            response = source.handler()(event, context)
            failed = _failed_ids(response, messages)
        except Exception as error:
            # Powertools raises BatchProcessingError when every record failed (each one is
            # logged by the handler); anything else is a crash worth its traceback.
            crashed = not isinstance(error, BatchProcessingError)
            log.warning(
                "%s: invocation failed, the whole batch comes back: %s: %s",
                source.function_name,
                type(error).__name__,
                error,
                exc_info=crashed or log.isEnabledFor(logging.DEBUG),
            )
            failed = {message["MessageId"] for message in messages}
        seconds = time.monotonic() - started
        done = [message for message in messages if message["MessageId"] not in failed]
        retry = [message for message in messages if message["MessageId"] in failed]
        self._delete(done)
        self._retry_soon(retry)
        for message in messages:
            attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            if message["MessageId"] not in failed:
                outcome = "ok"
            elif attempt >= source.max_receive_count:
                outcome = f"FAILED (attempt {attempt}/{source.max_receive_count}: off to the DLQ)"
            else:
                outcome = f"failed (attempt {attempt}/{source.max_receive_count}: retried)"
            log.info(
                "%-8s %s  %s  %.2f s",
                source.function_name.removeprefix("s3torrent-"),
                describe_body(message["Body"]),
                outcome,
                seconds,
            )

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self._source.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
                    for n, message in enumerate(chunk)
                ],
            )

    def _retry_soon(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            self._sqs.change_message_visibility_batch(
                QueueUrl=self._source.queue_url,
                Entries=[
                    {
                        "Id": str(n),
                        "ReceiptHandle": message["ReceiptHandle"],
                        "VisibilityTimeout": self._source.retry_delay_seconds,
                    }
                    for n, message in enumerate(chunk)
                ],
            )


def _failed_ids(response: Any, messages: list[dict[str, Any]]) -> set[str]:
    """The messages a handler reported as failed (ReportBatchItemFailures semantics)."""
    if not isinstance(response, Mapping):
        return set()
    items = response.get("batchItemFailures") or []
    known = {message["MessageId"] for message in messages}
    failed = {str(item.get("itemIdentifier")) for item in items if isinstance(item, Mapping)}
    if failed - known:
        # Lambda treats an unknown or empty itemIdentifier as a failure of the whole batch.
        return known
    return failed
