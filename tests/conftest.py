"""Fixtures every test layer shares: a real HTTP S3-compatible endpoint (moto's server)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent

EVENTS = ROOT / "tests" / "events"

# No test may reach AWS: fake credentials, a fixed region, tracing off, set before
# anything imports boto3.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "s3torrent",
        "POWERTOOLS_METRICS_NAMESPACE": "s3torrent",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
)
for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(name, None)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3/SQS/DynamoDB server over real HTTP on loopback, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_client(moto_endpoint: str):  # type: ignore[no-untyped-def]
    """A boto3 S3 client talking HTTP to moto's server."""
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def sqs_client(moto_endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3_client, request: pytest.FixtureRequest) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty bucket on the moto server, named after the test."""
    raw = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())
    name = f"t-{raw}"[:55].strip("-") + f"-{os.getpid() % 10000}"
    s3_client.create_bucket(Bucket=name)
    return name
