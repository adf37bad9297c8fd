"""A TorrentService wired as the deployed worker's is for fan-out: records, table and queue."""

from __future__ import annotations

from typing import Any

from s3torrent.collections.record_store import TableHashRecords
from s3torrent.fanout import FanoutStore
from s3torrent.job_queue import JobQueue
from s3torrent.s3.objects import S3Objects
from s3torrent.service import TorrentService
from s3torrent.settings import Settings


def fanout_service(
    settings: Settings, objects: S3Objects, dynamodb: Any, table: str, sqs: Any, queue_url: str
) -> TorrentService:
    """The service with collections' hash records and fan-out builds in `table`, parts on
    the queue at `queue_url` (as `handlers/runtime.py` builds it)."""
    return TorrentService(
        settings,
        objects,
        None,
        TableHashRecords(dynamodb, table),
        fanout_store=FanoutStore(dynamodb, table),
        worker_queue=JobQueue(sqs, queue_url),
    )
