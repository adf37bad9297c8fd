"""What the handler tests share: events from tests/events, a Lambda context, AWS resources.

Resources are real (moto in-process for unit tests, moto's server over HTTP for integration
tests); nothing here stubs a boto3 call.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import moto.core.models  # noqa: F401  (registers moto's botocore hook before SESSION exists)

from s3torrent.settings import Settings
from s3torrent_local.stack import create_progress_table

EVENTS = Path(__file__).resolve().parents[1] / "events"
# One session for every client the tests make: botocore loads its service models once.
SESSION = boto3.session.Session()
FIXTURE_BUCKET = "s3torrent-demo"
MOTO_ACCOUNT = "123456789012"  # moto's default account


def load_event(name: str, bucket: str | None = None) -> dict[str, Any]:
    """A fixture event; `bucket` replaces the fixtures' bucket name everywhere in it."""
    text = (EVENTS / name).read_text()
    if bucket:
        text = text.replace(FIXTURE_BUCKET, bucket)
    event: dict[str, Any] = json.loads(text)
    return event


@dataclass
class FakeContext:
    """A LambdaContext whose clock is either real (`budget_ms` from creation) or scripted.

    With `tick_ms`, every call to get_remaining_time_in_millis costs that much time, so a
    test decides exactly how many pages a backfill step lists.
    """

    budget_ms: int = 900_000
    tick_ms: int = 0
    function_name: str = "s3torrent-test"
    memory_limit_in_mb: int = 1769
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:s3torrent-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=time.monotonic)
    _spent: int = 0

    def get_remaining_time_in_millis(self) -> int:
        if self.tick_ms:
            self._spent += self.tick_ms
            return max(0, self.budget_ms - self._spent)
        return max(0, self.budget_ms - int((time.monotonic() - self._started) * 1000))


def sqs_event(bodies: list[str], queue: str = "s3torrent-worker") -> dict[str, Any]:
    """An SQS event as Lambda delivers it, one record per body."""
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"handle-{index}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764057600000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
                "awsRegion": "us-east-1",
            }
            for index, body in enumerate(bodies)
        ]
    }


def drain(sqs: Any, url: str, *, wait: int = 0) -> list[str]:
    """Every message body in the queue (deleted as read)."""
    bodies: list[str] = []
    while True:
        response = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait, VisibilityTimeout=60
        )
        messages = response.get("Messages", [])
        if not messages:
            return bodies
        bodies.extend(message["Body"] for message in messages)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


@dataclass
class Resources:
    """The queues and table one test's Runtime talks to."""

    queue_url: str
    backfill_queue_url: str
    table: str

    def settings(self, values: Mapping[str, Any]) -> Settings:
        """`values` with these queues and table, as the stack sets them on every function."""
        return Settings.from_mapping(
            {
                "queue_url": self.queue_url,
                "backfill_queue_url": self.backfill_queue_url,
                "backfill_table": self.table,
                **values,
            }
        )


def client(service: str, endpoint: str | None = None) -> Any:
    """A client from the shared session (moto in-process when endpoint is None)."""
    return SESSION.client(service, endpoint_url=endpoint, region_name="us-east-1")


def make_resources(endpoint: str | None = None) -> Resources:
    """A worker queue, a backfill queue and a progress table, with unique names."""
    suffix = uuid.uuid4().hex[:10]
    sqs = client("sqs", endpoint)
    dynamodb = client("dynamodb", endpoint)
    queue_url = sqs.create_queue(QueueName=f"worker-{suffix}")["QueueUrl"]
    backfill_url = sqs.create_queue(QueueName=f"backfill-{suffix}")["QueueUrl"]
    table = f"backfills-{suffix}"
    create_progress_table(dynamodb, table)
    return Resources(queue_url, backfill_url, table)


def age(bucket: str, key: str, by: timedelta) -> None:
    """Move an object's LastModified back in moto (in-process, also behind its server).

    Listings have 1-second resolution: this makes "older than its object" exact.
    """
    from moto.s3.models import s3_backends

    stored = s3_backends[MOTO_ACCOUNT]["aws"].buckets[bucket].keys[key]
    stored.last_modified = datetime.now(UTC).replace(tzinfo=None) - by


def emf_metrics(stdout: str) -> dict[str, float]:
    """Sum of every EMF metric printed to stdout (Powertools flushes one JSON line each time)."""
    totals: dict[str, float] = {}
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                values = value if isinstance(value, list) else [value]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(values)
    return totals


def api_body(response: dict[str, Any]) -> bytes:
    """The response body as bytes (base64-decoded when API Gateway would decode it)."""
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        return base64.b64decode(body)
    return str(body).encode("utf-8")


def header(response: dict[str, Any], name: str) -> str | None:
    """A response header, whether Powertools put it in headers or multiValueHeaders."""
    for source in ("headers", "multiValueHeaders"):
        for key, value in (response.get(source) or {}).items():
            if key.lower() == name.lower():
                return value[0] if isinstance(value, list) else str(value)
    return None


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class FaultyProxy:
    """An HTTP proxy in front of an S3 endpoint that answers 503 SlowDown for chosen requests.

    A real throttled S3, as far as botocore can tell: `fail(method, path)` decides.
    """

    def __init__(self, upstream: str, fail: Any) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        target = urlsplit(upstream)
        host, port = target.hostname or "127.0.0.1", target.port or 80
        self.failures = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if fail(self.command, self.path):
                    proxy.failures += 1
                    error = (
                        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                        b"<Message>Please reduce your request rate.</Message></Error>"
                    )
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("x-amz-request-id", "PROXY503")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(error)
                    return
                connection = http.client.HTTPConnection(host, port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                upstream_length = response.getheader("Content-Length")
                if self.command != "HEAD" or upstream_length is None:
                    upstream_length = str(len(data))
                self.send_header("Content-Length", upstream_length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
