"""The backfill: walks a bucket/prefix one invocation at a time and fans jobs out.

Triggers: the backfill SQS queue (a start from `POST /backfills` or the schedule, or a
continuation this function sent itself), and the EventBridge schedule, which starts one
backfill per configured bucket scope. A step stops listing `MARGIN_MS` before the Lambda's
time runs out and hands the rest of the walk to a continuation message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from s3torrent.errors import InvalidInput, S3TorrentError
from s3torrent.handlers.runtime import Runtime
from s3torrent.messages import BackfillMessage, parse_message
from s3torrent.observability import Metric, count, logger, metrics, tracer
from s3torrent.settings import Settings

MARGIN_MS = 60_000  # time left when a step hands over (a page and a commit fit in far less)

runtime = Runtime(Settings.from_env(os.environ))
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    """One backfill step; a message that can never be walked is logged and acknowledged."""
    try:
        runtime.backfills.run_step(
            _backfill_message(record.body),
            owner=f"{lambda_context.aws_request_id}/{record.message_id}",
            remaining_ms=lambda_context.get_remaining_time_in_millis,
            margin_ms=MARGIN_MS,
        )
    except S3TorrentError as error:
        if error.retryable:
            raise
        logger.error(
            "backfill message acknowledged", extra={"reason": str(error), "code": error.code}
        )
        count(Metric.TORRENTS_FAILED)


def _backfill_message(body: str) -> BackfillMessage:
    """The step a backfill-queue body asks for; InvalidInput when it is no such message."""
    try:
        message = parse_message(body)
    except InvalidInput as error:
        raise InvalidInput(f"not a backfill message: {error}") from error
    if not isinstance(message, BackfillMessage):
        raise InvalidInput(f"not a backfill message: type: {message.type!r}")
    return message


@logger.inject_lambda_context(correlation_id_path="Records[0].messageId || id")
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, object]:
    if event.get("detail-type") == "Scheduled Event":
        started = runtime.backfills.start_scheduled(str(event.get("id")), str(event.get("time")))
        return {"started": started}
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
