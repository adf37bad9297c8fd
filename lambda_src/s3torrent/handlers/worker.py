"""The worker: S3 notifications and jobs from the SQS worker queue, and S3 Batch Operations.

SQS: Powertools' BatchProcessor reports partial batch failures; a record fails (and comes
back, then lands in the DLQ) only for an error worth retrying (s3torrent.worker decides).
S3 Batch Operations (invocationSchemaVersion 2.0), told apart by the event's shape: each
task answers Succeeded, TemporaryFailure (Batch Operations retries it) or PermanentFailure.
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
from aws_lambda_powertools.utilities.data_classes import S3BatchOperationEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from s3torrent.handlers.runtime import Runtime
from s3torrent.observability import logger, metrics, tracer
from s3torrent.settings import Settings
from s3torrent.worker import Delivery

runtime = Runtime(Settings.from_env(os.environ))
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    """One worker-queue message; raises only what is worth retrying."""
    receives = int(record.attributes.approximate_receive_count or 1)
    delivery = Delivery(
        last=receives >= runtime.settings.job_max_receives,
        time_left=(
            (lambda: lambda_context.get_remaining_time_in_millis() / 1000)
            if lambda_context
            else None
        ),
    )
    runtime.worker.handle_body(record.body, delivery)


def batch_operations(event: dict[str, Any]) -> dict[str, Any]:
    """Answer an S3 Batch Operations invocation, one result per task."""
    batch = S3BatchOperationEvent(event)
    results = []
    for task in batch.tasks:
        try:
            code, text = runtime.worker.handle_task(task.s3_bucket, task.s3_key)
        except Exception as error:  # an unexpected failure: let Batch Operations retry it
            logger.exception("batch task raised", extra={"task_id": task.task_id})
            code, text = "TemporaryFailure", f"{type(error).__name__}: {error}"[:1024]
        results.append({"taskId": task.task_id, "resultCode": code, "resultString": text})
    return {
        "invocationSchemaVersion": batch.invocation_schema_version,
        "treatMissingKeysAs": "PermanentFailure",
        "invocationId": batch.invocation_id,
        "results": results,
    }


@logger.inject_lambda_context(correlation_id_path="Records[0].messageId || invocationId")
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, object]:
    if "invocationSchemaVersion" in event and "tasks" in event:
        return batch_operations(event)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
