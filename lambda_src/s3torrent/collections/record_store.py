"""Collections' hash records in the deployment's DynamoDB table (the backfill progress table).

One value per collection (`collection-hashes:<bucket>/<prefix>`), chunked when it is big
(`TableBlobs`): one GetItem and one PutItem per build for most collections. A reader that
finds a record incomplete (a concurrent build replaced it) reads everything, which is always
correct. Records only save reads, so a failing table never fails a build: it is logged and
the build reads what it must. Why DynamoDB and what it costs: docs/collections.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3torrent.collections.listing import CollectionRef
from s3torrent.collections.records import HashRecord, decode_record, encode_record
from s3torrent.table_blobs import TableBlobs

logger = logging.getLogger(__name__)

RECORD_PREFIX = "collection-hashes:"  # ids in the progress table (backfill ids never start so)
# A collection not rebuilt for this long loses its record (the next build reads everything).
RETENTION_SECONDS = 90 * 24 * 3600


class TableHashRecords:
    """`HashRecords` in the progress table (partition key `backfill_id`)."""

    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.blobs = TableBlobs(client, table, clock=clock)

    def load(self, ref: CollectionRef) -> HashRecord | None:
        """The collection's record; None when absent, incomplete or unreadable."""
        try:
            data = self.blobs.get(_record_id(ref))
        except (ClientError, BotoCoreError, KeyError, ValueError) as error:
            logger.warning("%s: hash record unreadable, reading every member: %s", ref.uri, error)
            return None
        return None if data is None else decode_record(data)

    def save(self, ref: CollectionRef, record: HashRecord) -> None:
        """Replace the collection's record (logged, never raised, when the table refuses)."""
        try:
            self.blobs.put(
                _record_id(ref), encode_record(record), retention_seconds=RETENTION_SECONDS
            )
        except (ClientError, BotoCoreError) as error:
            logger.warning("%s: hash record not saved: %s", ref.uri, error)


def _record_id(ref: CollectionRef) -> str:
    return f"{RECORD_PREFIX}{ref.bucket}/{ref.prefix}"
