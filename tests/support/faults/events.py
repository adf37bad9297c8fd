"""Events the worker receives, built from helper-5's fixtures in tests/events/*.json."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

EVENTS = Path(__file__).resolve().parents[2] / "events"
_ids = itertools.count(1)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


def _sqs_record_template() -> dict[str, Any]:
    record: dict[str, Any] = load("sqs_s3_object_created.json")["Records"][0]
    return record


def s3_notification(event_name: str, bucket: str, key: str, **object_fields: Any) -> str:
    """The JSON body S3 sends to SQS for one object event (key URL-encoded, as S3 does)."""
    body = json.loads(_sqs_record_template()["body"])
    record = body["Records"][0]
    record["eventName"] = event_name
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"] = {"key": quote_plus(key, safe="/"), "sequencer": "0062E99A88DC407460"}
    record["s3"]["object"].update(object_fields)
    return json.dumps(body)


def sqs_record(body: str, message_id: str | None = None) -> dict[str, Any]:
    """One SQS record (as Lambda's event source mapping delivers it) carrying `body`."""
    record = copy.deepcopy(_sqs_record_template())
    record["body"] = body
    record["messageId"] = message_id or f"msg-{next(_ids):06d}"
    record["receiptHandle"] = f"rh-{record['messageId']}"
    return record


def sqs_event(*bodies: str) -> dict[str, Any]:
    """An SQS event of one record per body."""
    return {"Records": [sqs_record(body) for body in bodies]}


def created(bucket: str, key: str) -> str:
    return s3_notification("ObjectCreated:Put", bucket, key)


def removed(bucket: str, key: str) -> str:
    return s3_notification("ObjectRemoved:Delete", bucket, key)
