"""What the handlers share: the settings (read once) and the clients built from them, lazily.

Each handler module holds one `Runtime` at module level, so a warm Lambda reuses its
clients; tests swap it for one built from their own settings. Two sessions: the role's
(SQS, DynamoDB, Secrets Manager) and the store's (S3 only), which differ when a store outside
AWS is reached with keys from a Secrets Manager secret.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3

from s3torrent.backfill import Backfills, ProgressStore
from s3torrent.collections.record_store import TableHashRecords
from s3torrent.errors import NotConfigured
from s3torrent.fanout import FanoutStore
from s3torrent.job_queue import JobQueue
from s3torrent.publishing import FeedIndex, Publisher
from s3torrent.s3.objects import S3Objects
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.wiring import build_objects, endpoint_session
from s3torrent.worker import Worker


class Runtime:
    """The service, queues and progress table for one Settings (SQS and DynamoDB endpoints
    come from boto3's own `AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL_DYNAMODB`)."""

    def __init__(self, settings: Settings, *, session: Any | None = None) -> None:
        self.settings = settings
        # The function's role: SQS, DynamoDB, and the secret holding the store's keys.
        self.session = session or boto3.session.Session()
        # Read now, not on first use: the handlers build their Runtime at import, so a
        # missing, unreadable or malformed secret fails the Lambda's init with its name
        # (EndpointSecretUnusable) rather than every request with AWS's own complaint.
        self.store_session = endpoint_session(settings, self.session)

    @cached_property
    def objects(self) -> S3Objects:
        return build_objects(self.settings, session=self.store_session)

    @cached_property
    def service(self) -> TorrentService:
        # Torrents are listed in the feed index, and collections' hash records kept, where
        # the deployment has its table.
        if not self.settings.backfill_table:
            return TorrentService(self.settings, self.objects)
        table = self.settings.backfill_table
        records = TableHashRecords(self._client("dynamodb"), table)
        # Fan-out builds need the worker queue for their parts (docs/fanout.md).
        fanout = FanoutStore(self._client("dynamodb"), table) if self.settings.queue_url else None
        return TorrentService(
            self.settings,
            self.objects,
            self.feed_index,
            records,
            fanout_store=fanout,
            worker_queue=self.worker_queue if self.settings.queue_url else None,
        )

    @cached_property
    def feed_index(self) -> FeedIndex:
        if not self.settings.backfill_table:
            raise NotConfigured("this deployment has no table for feeds (S3TORRENT_BACKFILL_TABLE)")
        return FeedIndex(self._client("dynamodb"), self.settings.backfill_table)

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher(self.objects.client, self.feed_index)

    @cached_property
    def worker_queue(self) -> JobQueue:
        if not self.settings.queue_url:
            raise NotConfigured("this deployment has no worker queue (S3TORRENT_QUEUE_URL)")
        return JobQueue(self._client("sqs"), self.settings.queue_url)

    @cached_property
    def backfill_queue(self) -> JobQueue:
        if not self.settings.backfill_queue_url:
            raise NotConfigured(
                "this deployment has no backfill queue (S3TORRENT_BACKFILL_QUEUE_URL)"
            )
        return JobQueue(self._client("sqs"), self.settings.backfill_queue_url)

    @cached_property
    def progress(self) -> ProgressStore:
        if not self.settings.backfill_table:
            raise NotConfigured("this deployment has no backfill table (S3TORRENT_BACKFILL_TABLE)")
        return ProgressStore(self._client("dynamodb"), self.settings.backfill_table)

    @cached_property
    def worker(self) -> Worker:
        progress = self.progress if self.settings.backfill_table else None
        queue = self.worker_queue if self.settings.queue_url else None
        return Worker(self.service, progress, queue)

    @cached_property
    def backfills(self) -> Backfills:
        return Backfills(
            self.settings,
            self.objects,
            worker_queue=self.worker_queue,
            backfill_queue=self.backfill_queue,
            progress=self.progress,
        )

    def _client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.settings.region)
