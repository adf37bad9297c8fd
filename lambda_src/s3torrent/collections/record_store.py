"""Collections' hash records in the deployment's DynamoDB table (the backfill progress table).

One item per collection (`collection-hashes:<bucket>/<prefix>`) holds the compressed record
when it fits in `CHUNK_BYTES` (one GetItem, one PutItem per build); a bigger one is cut into
chunk items of a *generation*, written before the item that names them, and the previous
generation's chunks are deleted after it (TTL removes what a crash leaves). A reader that
finds a chunk missing (a concurrent build replaced it) has no record: it reads everything,
which is always correct. Records only save reads, so a failing table never fails a build:
it is logged and the build reads what it must. Why DynamoDB and what it costs:
docs/collections.md.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3torrent.collections.listing import CollectionRef
from s3torrent.collections.records import HashRecord, decode_record, encode_record

logger = logging.getLogger(__name__)

RECORD_PREFIX = "collection-hashes:"  # ids in the progress table (backfill ids never start so)
# DynamoDB items are at most 400 KB, attribute names and the key included.
CHUNK_BYTES = 380_000
# A collection not rebuilt for this long loses its record (the next build reads everything).
RETENTION_SECONDS = 90 * 24 * 3600


class TableHashRecords:
    """`HashRecords` in the progress table (partition key `backfill_id`)."""

    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.table = table
        self.clock = clock

    def load(self, ref: CollectionRef) -> HashRecord | None:
        """The collection's record; None when absent, incomplete or unreadable."""
        try:
            head = self._get(_record_id(ref))
            if head is None:
                return None
            if "data" in head:
                return decode_record(head["data"]["B"])
            generation = head["generation"]["S"]
            parts: list[bytes] = []
            for index in range(int(head["chunks"]["N"])):
                chunk = self._get(_chunk_id(ref, generation, index))
                if chunk is None:
                    return None  # replaced by a concurrent build: read everything
                parts.append(chunk["data"]["B"])
            return decode_record(b"".join(parts))
        except (ClientError, BotoCoreError, KeyError, ValueError) as error:
            logger.warning("%s: hash record unreadable, reading every member: %s", ref.uri, error)
            return None

    def save(self, ref: CollectionRef, record: HashRecord) -> None:
        """Replace the collection's record (logged, never raised, when the table refuses)."""
        data = encode_record(record)
        expires = {"N": str(int(self.clock()) + RETENTION_SECONDS)}
        try:
            old = self._get(_record_id(ref))
            if len(data) <= CHUNK_BYTES:
                head: dict[str, Any] = {"data": {"B": data}}
            else:
                generation = uuid.uuid4().hex[:16]
                chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
                for index, chunk in enumerate(chunks):
                    self._put(
                        _chunk_id(ref, generation, index),
                        {"data": {"B": chunk}, "expires_at": expires},
                    )
                head = {"generation": {"S": generation}, "chunks": {"N": str(len(chunks))}}
            head.update(bytes={"N": str(len(data))}, expires_at=expires)
            self._put(_record_id(ref), head)
            if old is not None and "generation" in old:
                for index in range(int(old["chunks"]["N"])):
                    self.client.delete_item(
                        TableName=self.table,
                        Key={"backfill_id": {"S": _chunk_id(ref, old["generation"]["S"], index)}},
                    )
        except (ClientError, BotoCoreError) as error:
            logger.warning("%s: hash record not saved: %s", ref.uri, error)

    def _get(self, item_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, Key={"backfill_id": {"S": item_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return dict(item) if item else None

    def _put(self, item_id: str, attributes: dict[str, Any]) -> None:
        self.client.put_item(
            TableName=self.table, Item={"backfill_id": {"S": item_id}, **attributes}
        )


def _record_id(ref: CollectionRef) -> str:
    return f"{RECORD_PREFIX}{ref.bucket}/{ref.prefix}"


def _chunk_id(ref: CollectionRef, generation: str, index: int) -> str:
    return f"{_record_id(ref)}#{generation}/{index}"
