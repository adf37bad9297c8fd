"""What the publishing tests share: moto in-process, a progress table with the feed index."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto import mock_aws

from s3torrent.handlers import api
from s3torrent.handlers.runtime import Runtime
from s3torrent.settings import Settings
from s3torrent_local.stack import create_progress_table
from tests.support.handlers import SESSION, client

BUCKET = "media-archive"


@dataclass
class Published:
    s3: Any
    dynamodb: Any
    runtime: Runtime
    table: str


def make_table(dynamodb: Any) -> str:
    """The progress table as the stack declares it: `backfill_id`, plus the `feeds` GSI."""
    table = f"backfills-{uuid.uuid4().hex[:10]}"
    create_progress_table(dynamodb, table)
    return table


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Iterator[Published]:
    with mock_aws():
        s3 = client("s3")
        for name in (BUCKET, "feeds", "other-bucket"):
            s3.create_bucket(Bucket=name)
        dynamodb = client("dynamodb")
        table = make_table(dynamodb)
        settings = Settings.from_mapping(
            {
                "buckets": [
                    {"name": BUCKET, "prefix": "pub/"},
                    {"name": BUCKET, "prefix": "private/"},
                    {"name": "feeds"},
                ],
                "public_prefixes": [{"name": BUCKET, "prefix": "pub/"}],
                "backfill_table": table,
                "meta_version": "hybrid",
                "read_transport": "sdk",
            }
        )
        runtime = Runtime(settings, session=SESSION)
        monkeypatch.setattr(api, "runtime", runtime)
        yield Published(s3, dynamodb, runtime, table)
