"""Unit tests run on moto's in-process mock, which intercepts botocore only.

The direct range transport (s3/direct.py) sends its GETs with http.client, which the mock
never sees, so unit tests read ranges through botocore (`SdkRanges`), exactly as
`read_transport: sdk` does. The direct path is tested over real HTTP in tests/integration,
tests/reliability and tests/e2e.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from s3torrent import wiring
from tests.support.moto import BUCKET


@pytest.fixture(autouse=True)
def _ranges_through_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "direct_connections", lambda settings, data_client: None)


@pytest.fixture
def s3() -> Iterator[Any]:
    """An in-process moto S3 with one empty bucket, `BUCKET`."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
