"""Fixtures of the reliability tests: the fault proxy in front of moto, the local API."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from s3torrent.settings import Settings
from s3torrent_local.stack import create_progress_table
from tests.support.faults.proxy import FaultPolicy, FaultProxy
from tests.support.ports import free_port


@pytest.fixture
def fault_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of moto, with no faults until a test sets rules."""
    proxy = FaultProxy(moto_endpoint, FaultPolicy(seed=7)).start()
    try:
        yield proxy
    finally:
        proxy.stop()


class LocalApi:
    """The API Lambda behind helper-6's local API Gateway (`s3torrent_local.gateway`), on a
    free loopback port, with this test's settings; plain HTTP requests to it."""

    def __init__(self, gateway: Any, settings: Settings) -> None:
        self.gateway = gateway
        self.settings = settings
        self.url = gateway.url

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and body; `path` is sent exactly as given."""
        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        data = body.encode() if isinstance(body, str) else body
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        payload = response.read()
        found = {name.lower(): value for name, value in response.getheaders()}
        conn.close()
        return response.status, found, payload

    def post_json(self, path: str, document: Any, **headers: str) -> tuple[int, dict[str, Any]]:
        status, _, body = self.request(
            "POST",
            path,
            body=json.dumps(document),
            headers={"Content-Type": "application/json", **headers},
        )
        return status, json.loads(body) if body else {}


@pytest.fixture
def local_api(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, sqs_client: Any
) -> Iterator[Callable[..., LocalApi]]:
    """Start the API with settings of the test's choosing: `local_api(buckets=[...], ...)`."""
    from s3torrent.handlers import api
    from s3torrent.handlers.runtime import Runtime
    from s3torrent_local.gateway import ApiGateway
    from s3torrent_local.stack import StackConfig

    started: list[Any] = []
    # 202 answers queue a job: a worker queue on moto (SQS clients find it from the env).
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    name = f"reliability-{uuid.uuid4().hex[:12]}"
    queue_url = sqs_client.create_queue(QueueName=f"{name}-jobs")["QueueUrl"]
    backfill_url = sqs_client.create_queue(QueueName=f"{name}-backfills")["QueueUrl"]
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    create_progress_table(dynamodb, name)

    def start(**values: Any) -> LocalApi:
        values.setdefault("endpoint_url", moto_endpoint)
        values.setdefault("queue_url", queue_url)
        values.setdefault("backfill_queue_url", backfill_url)
        values.setdefault("backfill_table", name)
        settings = Settings.from_mapping(values)
        monkeypatch.setattr(api, "runtime", Runtime(settings))
        gateway = ApiGateway(
            "127.0.0.1",
            free_port(),
            lambda: api.lambda_handler,
            stage="prod",
            binary_media_types=StackConfig().binary_media_types,
        )
        gateway.start()
        started.append(gateway)
        return LocalApi(gateway, settings)

    yield start
    for gateway in started:
        gateway.stop()
    for url in (queue_url, backfill_url):
        sqs_client.delete_queue(QueueUrl=url)
    dynamodb.delete_table(TableName=name)
