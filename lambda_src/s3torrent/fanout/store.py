"""Fan-out builds in the deployment's DynamoDB table (the backfill progress table).

Per build: a status item (`fanout:<id>`) holding the part count and the *completion count*
(`parts_done`, and the set of part numbers counted, so a duplicate delivery counts nothing);
the manifest (`fanout-manifest:<id>`, chunked when big); one item per part's hashes
(`fanout-part:<id>/<n>`). Per object or collection, a pointer to its latest build
(`fanout-of:<bucket>/<key>`), for `GET /torrents`. Every item expires (TTL `expires_at`);
parts and manifest are deleted when the build ends. Why DynamoDB: docs/fanout.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from s3torrent.dynamodb import (
    BATCH_ATTEMPTS,
    batch_get,
    batch_write,
    conditional_failed,
    guarded,
)
from s3torrent.fanout.records import (
    BuildManifest,
    UnreadableRecord,
    decode_manifest,
    encode_manifest,
)
from s3torrent.table_blobs import TableBlobs

RETENTION_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class BuildState:
    """Where a fan-out build stands."""

    build_id: str
    bucket: str
    key: str
    etag: str
    status: str  # running, done or failed
    parts: int
    parts_done: int
    done_parts: frozenset[int]
    updated_at: float
    reason: str | None = None

    @property
    def complete(self) -> bool:
        return self.parts_done >= self.parts


class FanoutStore:
    """Builds' status, manifests and part records (partition key `backfill_id`)."""

    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.table = table
        self.clock = clock
        self.blobs = TableBlobs(client, table, clock=clock)

    # -- a build's life ---------------------------------------------------------------------

    def create(self, build_id: str, manifest: BuildManifest) -> None:
        """Record a new build (manifest first: a part never finds a build without one)."""
        self._guard(
            self.blobs.put,
            _manifest_id(build_id),
            encode_manifest(manifest),
            retention_seconds=RETENTION_SECONDS,
        )
        now = self.clock()
        common = {"bucket": {"S": manifest.bucket}, "key": {"S": manifest.key}}
        common["etag"] = {"S": manifest.etag}
        self._call(
            "put_item",
            TableName=self.table,
            Item={
                "backfill_id": {"S": _status_id(build_id)},
                **common,
                "status": {"S": "running"},
                "parts": {"N": str(manifest.parts)},
                "parts_done": {"N": "0"},
                "updated_at": {"N": f"{now:.3f}"},
                "expires_at": self._expires(),
            },
            ConditionExpression="attribute_not_exists(backfill_id)",
        )
        self._call(
            "put_item",
            TableName=self.table,
            Item={
                "backfill_id": {"S": _pointer_id(manifest.bucket, manifest.key)},
                **common,
                "build_id": {"S": build_id},
                "expires_at": self._expires(),
            },
        )

    def get(self, build_id: str) -> BuildState | None:
        item = self._get_item(_status_id(build_id))
        return None if item is None else _state(build_id, item)

    def latest(self, bucket: str, key: str) -> BuildState | None:
        """The latest build of this object or collection, if one was started."""
        pointer = self._get_item(_pointer_id(bucket, key))
        if pointer is None:
            return None
        return self.get(pointer["build_id"]["S"])

    def manifest(self, build_id: str) -> BuildManifest | None:
        data = self._guard(self.blobs.get, _manifest_id(build_id))
        if data is None:
            return None
        try:
            return decode_manifest(data)
        except UnreadableRecord:
            return None

    def save_part(self, build_id: str, index: int, data: bytes) -> None:
        """Store one part's hashes (a redelivered part writes the same bytes again)."""
        self._call(
            "put_item",
            TableName=self.table,
            Item={
                "backfill_id": {"S": _part_id(build_id, index)},
                "data": {"B": data},
                "expires_at": self._expires(),
            },
        )

    def delete_part(self, build_id: str, index: int) -> None:
        """Remove one part's record (written after its build had ended)."""
        self._call(
            "delete_item",
            TableName=self.table,
            Key={"backfill_id": {"S": _part_id(build_id, index)}},
        )

    def count_part(self, build_id: str, index: int) -> BuildState | None:
        """Count part `index` done, once: the build's state after it, or None when it was
        counted already or the build is no longer running (then nothing changed)."""
        try:
            response = self._call(
                "update_item",
                TableName=self.table,
                Key={"backfill_id": {"S": _status_id(build_id)}},
                UpdateExpression="ADD parts_done :one, done_parts :index SET updated_at = :now",
                ConditionExpression="#status = :running AND NOT contains(done_parts, :number)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":index": {"NS": [str(index)]},
                    ":number": {"N": str(index)},
                    ":running": {"S": "running"},
                    ":now": {"N": f"{self.clock():.3f}"},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if conditional_failed(error):
                return None
            raise
        return _state(build_id, response["Attributes"])

    def end(self, build_id: str, status: str, reason: str | None = None) -> bool:
        """Move a running build to `done` or `failed` (with why); False if it had ended."""
        values: dict[str, Any] = {
            ":status": {"S": status},
            ":running": {"S": "running"},
            ":now": {"N": f"{self.clock():.3f}"},
        }
        update = "SET #status = :status, updated_at = :now"
        if reason is not None:
            update += ", reason = :reason"
            values[":reason"] = {"S": reason[:1000]}
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key={"backfill_id": {"S": _status_id(build_id)}},
                UpdateExpression=update,
                ConditionExpression="#status = :running",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    def load_parts(self, build_id: str, parts: int) -> list[bytes | None]:
        """Every part's record, in order (None where one is missing)."""
        ids = [_part_id(build_id, index) for index in range(parts)]
        items = batch_get(self._call, self.table, ids, consistent=True, attempts=BATCH_ATTEMPTS)
        found = {item["backfill_id"]["S"]: bytes(item["data"]["B"]) for item in items}
        return [found.get(item) for item in ids]

    def forget(self, build_id: str, parts: int) -> None:
        """Delete the build's part records and manifest (its status item stays until TTL)."""
        deletes = [
            {"DeleteRequest": {"Key": {"backfill_id": {"S": _part_id(build_id, index)}}}}
            for index in range(parts)
        ]
        batch_write(self._call, self.table, deletes, attempts=BATCH_ATTEMPTS)
        self._guard(self.blobs.delete, _manifest_id(build_id))

    # -- internals --------------------------------------------------------------------------

    def _expires(self) -> dict[str, str]:
        return {"N": str(int(self.clock()) + RETENTION_SECONDS)}

    def _get_item(self, item_id: str) -> dict[str, Any] | None:
        response = self._call(
            "get_item",
            TableName=self.table,
            Key={"backfill_id": {"S": item_id}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return dict(item) if item else None

    def _call(self, operation: str, **params: Any) -> Any:
        return self._guard(getattr(self.client, operation), **params)

    def _guard(self, call: Callable[..., Any], *args: Any, **params: Any) -> Any:
        return guarded(f"DynamoDB {self.table}", call, *args, **params)


def _state(build_id: str, item: dict[str, Any]) -> BuildState:
    return BuildState(
        build_id=build_id,
        bucket=item["bucket"]["S"],
        key=item["key"]["S"],
        etag=item["etag"]["S"],
        status=item["status"]["S"],
        parts=int(item["parts"]["N"]),
        parts_done=int(item.get("parts_done", {}).get("N", "0")),
        done_parts=frozenset(int(n) for n in item.get("done_parts", {}).get("NS", [])),
        updated_at=float(item.get("updated_at", {}).get("N", "0")),
        reason=item.get("reason", {}).get("S"),
    )


def _status_id(build_id: str) -> str:
    return f"fanout:{build_id}"


def _manifest_id(build_id: str) -> str:
    return f"fanout-manifest:{build_id}"


def _part_id(build_id: str, index: int) -> str:
    return f"fanout-part:{build_id}/{index}"


def _pointer_id(bucket: str, key: str) -> str:
    return f"fanout-of:{bucket}/{key}"
