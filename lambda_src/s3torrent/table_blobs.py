"""Values of any size in the deployment's DynamoDB table (the backfill progress table).

A value that fits in `CHUNK_BYTES` lives in one item (one GetItem, one PutItem). A bigger one
is cut into chunk items of a *generation*, written before the item that names them; the
previous generation's chunks are deleted after it, and TTL (`expires_at`) removes what a crash
leaves. A reader that finds a chunk missing (a concurrent writer replaced it) gets None.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

# DynamoDB items are at most 400 KB, attribute names and the key included.
CHUNK_BYTES = 380_000


class TableBlobs:
    """Bytes by id in a table whose partition key is `backfill_id` (DynamoDB errors raise)."""

    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.table = table
        self.clock = clock

    def get(self, item_id: str) -> bytes | None:
        """The value stored under `item_id`; None when absent or incomplete."""
        head = self._get(item_id)
        if head is None:
            return None
        if "data" in head:
            return bytes(head["data"]["B"])
        generation = head["generation"]["S"]
        parts: list[bytes] = []
        for index in range(int(head["chunks"]["N"])):
            chunk = self._get(_chunk_id(item_id, generation, index))
            if chunk is None:
                return None  # replaced by a concurrent writer
            parts.append(bytes(chunk["data"]["B"]))
        return b"".join(parts)

    def put(self, item_id: str, data: bytes, *, retention_seconds: int) -> None:
        """Store `data` under `item_id`, replacing what was there, for `retention_seconds`."""
        expires = {"N": str(int(self.clock()) + retention_seconds)}
        old = self._get(item_id)
        if len(data) <= CHUNK_BYTES:
            head: dict[str, Any] = {"data": {"B": data}}
        else:
            generation = uuid.uuid4().hex[:16]
            chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
            for index, chunk in enumerate(chunks):
                self._put(
                    _chunk_id(item_id, generation, index),
                    {"data": {"B": chunk}, "expires_at": expires},
                )
            head = {"generation": {"S": generation}, "chunks": {"N": str(len(chunks))}}
        head.update(bytes={"N": str(len(data))}, expires_at=expires)
        self._put(item_id, head)
        if old is not None:
            self._delete_chunks(item_id, old)

    def delete(self, item_id: str) -> None:
        """Remove the value (and its chunks); nothing happens when there is none."""
        old = self._get(item_id)
        if old is None:
            return
        self._delete(item_id)
        self._delete_chunks(item_id, old)

    def _delete_chunks(self, item_id: str, head: dict[str, Any]) -> None:
        if "generation" in head:
            for index in range(int(head["chunks"]["N"])):
                self._delete(_chunk_id(item_id, head["generation"]["S"], index))

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

    def _delete(self, item_id: str) -> None:
        self.client.delete_item(TableName=self.table, Key={"backfill_id": {"S": item_id}})


def _chunk_id(item_id: str, generation: str, index: int) -> str:
    return f"{item_id}#{generation}/{index}"
