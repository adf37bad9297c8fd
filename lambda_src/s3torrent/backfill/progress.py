"""Backfill progress in DynamoDB: one item per backfill (partition key `backfill_id`).

Counters only ever grow, by atomic `ADD`. The walk itself advances one *step* at a time:
a step is one invocation's share of the listing, numbered by `cursor`. An invocation claims
step N with a lease (conditional on `cursor = N`), and commits it by moving the cursor to
N+1 (conditional on still holding the lease), storing the continuation it is about to send.
So a step that SQS delivers twice is walked once, and a continuation lost after its commit
is sent again by whichever delivery of step N comes next.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from s3torrent.dynamodb import TRANSIENT_CODES, conditional_failed, error_code
from s3torrent.errors import BackfillNotFound, TransientServiceError

COUNTERS = ("listed", "queued", "fresh", "skipped", "done", "failed", "requests", "continuations")
RETENTION_SECONDS = 30 * 24 * 3600  # `expires_at` is the table's TTL attribute
QUEUED_JOB_PREFIX = "queued-job:"  # ids of claim_job's marks (backfill ids are hex or sched-)
FEED_ITEM_PREFIX = "feed:"  # ids of the feed index's items (s3torrent/publishing/index.py)
# Collections' hash records and rebuild marks (s3torrent/collections/) share the table too.
COLLECTION_ITEM_PREFIX = "collection-"
# Fan-out builds' status, manifests, part records and pointers (s3torrent/fanout/store.py).
FANOUT_ITEM_PREFIX = "fanout"


class StepClaim(enum.StrEnum):
    """What a claim on a backfill step found."""

    CLAIMED = "claimed"  # ours: walk it
    DONE = "done"  # already committed by an earlier delivery
    BUSY = "busy"  # another invocation holds a live lease on it


@dataclass(frozen=True)
class BackfillProgress:
    """One backfill as the table holds it."""

    backfill_id: str
    bucket: str
    prefix: str
    status: str  # queued / running / listed / failed
    cursor: int
    counters: Mapping[str, int] = field(default_factory=dict)
    next_message: str | None = None  # the continuation committed with the last step
    lease_until: float | None = None
    created_at: str | None = None
    updated_at: str | None = None
    error: str | None = None

    @property
    def state(self) -> str:
        """queued / running / listed, or complete once every queued job is accounted for."""
        settled = self.counters.get("done", 0) + self.counters.get("failed", 0)
        if self.status == "listed" and settled >= self.counters.get("queued", 0):
            return "complete"
        return self.status


def _now_iso(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).isoformat(timespec="seconds")


class ProgressStore:
    """Reads and atomically updates backfill items."""

    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.table = table
        self.clock = clock

    # -- create / read ------------------------------------------------------------------

    def create(self, backfill_id: str, bucket: str, prefix: str) -> bool:
        """A new item at step 0; False when one with this id exists (a redelivered start)."""
        now = _now_iso(self.clock)
        item: dict[str, Any] = {
            "backfill_id": {"S": backfill_id},
            "bucket": {"S": bucket},
            "prefix": {"S": prefix},
            "status": {"S": "queued"},
            "cursor": {"N": "0"},
            "created_at": {"S": now},
            "updated_at": {"S": now},
            "expires_at": {"N": str(int(self.clock()) + RETENTION_SECONDS)},
        }
        item.update({name: {"N": "0"} for name in COUNTERS})
        try:
            self._call(
                "put_item",
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(backfill_id)",
            )
        except ClientError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    def get(self, backfill_id: str) -> BackfillProgress | None:
        """The item, read consistently; None when there is none."""
        if backfill_id.startswith(
            (QUEUED_JOB_PREFIX, FEED_ITEM_PREFIX, COLLECTION_ITEM_PREFIX, FANOUT_ITEM_PREFIX)
        ):
            return None  # a mark, a feed item or a record, never a backfill: no need to read it
        response = self._call(
            "get_item",
            TableName=self.table,
            Key={"backfill_id": {"S": backfill_id}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return _backfill_progress(item) if item else None

    # -- queued jobs ----------------------------------------------------------------------

    def claim_job(self, job_id: str, seconds: float) -> bool:
        """Mark a job as queued for `seconds`; False while an earlier mark is still live.

        The marks share the table (their ids start with `QUEUED_JOB_PREFIX`, which no
        backfill id does; `get` never returns one). A mark past its time counts as gone
        even before DynamoDB's TTL deletes it.
        """
        now = self.clock()
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key={"backfill_id": {"S": QUEUED_JOB_PREFIX + job_id}},
                UpdateExpression="SET expires_at = :until",
                ConditionExpression="attribute_not_exists(backfill_id) OR expires_at < :now",
                ExpressionAttributeValues={
                    ":until": {"N": str(int(now + seconds))},
                    ":now": {"N": str(int(now))},
                },
            )
        except ClientError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    def release_job(self, job_id: str) -> None:
        """Let the job be queued again at once (its message could not be sent)."""
        self._call(
            "update_item",
            TableName=self.table,
            Key={"backfill_id": {"S": QUEUED_JOB_PREFIX + job_id}},
            UpdateExpression="SET expires_at = :gone",
            ExpressionAttributeValues={":gone": {"N": "0"}},
        )

    # -- counters -------------------------------------------------------------------------

    def add(self, backfill_id: str, **counters: int) -> None:
        """Atomically add to counters of an existing backfill (a missing one is left alone)."""
        values = {name: value for name, value in counters.items() if value}
        if not values:
            return
        names = {f"#c{i}": name for i, name in enumerate(values)}
        amounts = {f":c{i}": {"N": str(value)} for i, value in enumerate(values.values())}
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key={"backfill_id": {"S": backfill_id}},
                UpdateExpression="ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(values))),
                ConditionExpression="attribute_exists(backfill_id)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=amounts,
            )
        except ClientError as error:
            if not conditional_failed(error):
                raise

    # -- steps ----------------------------------------------------------------------------

    def claim_step(
        self, backfill_id: str, step: int, owner: str, lease_seconds: float
    ) -> StepClaim:
        """Take the lease on `step` if the walk is there and nobody else holds it."""
        now = self.clock()
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key={"backfill_id": {"S": backfill_id}},
                UpdateExpression=(
                    "SET lease_owner = :owner, lease_until = :until, #status = :running,"
                    " updated_at = :updated"
                ),
                ConditionExpression=(
                    "#cursor = :step AND (attribute_not_exists(lease_until)"
                    " OR lease_until < :now OR lease_owner = :owner)"
                ),
                ExpressionAttributeNames={"#cursor": "cursor", "#status": "status"},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":until": {"N": repr(now + lease_seconds)},
                    ":running": {"S": "running"},
                    ":updated": {"S": _now_iso(self.clock)},
                    ":step": {"N": str(step)},
                    ":now": {"N": repr(now)},
                },
            )
        except ClientError as error:
            if not conditional_failed(error):
                raise
            current = self.get(backfill_id)
            if current is None:
                raise BackfillNotFound(backfill_id) from error
            return StepClaim.DONE if current.cursor > step else StepClaim.BUSY
        return StepClaim.CLAIMED

    def commit_step(
        self,
        backfill_id: str,
        step: int,
        owner: str,
        counters: Mapping[str, int],
        *,
        next_message: str | None,
    ) -> bool:
        """Move the cursor past `step` with its counters; False if the lease was lost.

        `next_message` is the continuation about to be sent (None: the listing is done).
        """
        names = {"#cursor": "cursor", "#status": "status"}
        values: dict[str, Any] = {
            ":step": {"N": str(step)},
            ":next": {"N": str(step + 1)},
            ":owner": {"S": owner},
            ":updated": {"S": _now_iso(self.clock)},
            ":status": {"S": "running" if next_message else "listed"},
        }
        sets = ["#cursor = :next", "#status = :status", "updated_at = :updated"]
        removes = ["lease_owner", "lease_until"]
        if next_message is not None:
            sets.append("next_message = :message")
            values[":message"] = {"S": next_message}
        else:
            removes.append("next_message")
        adds = []
        for i, (name, value) in enumerate(item for item in counters.items() if item[1]):
            names[f"#c{i}"] = name
            values[f":c{i}"] = {"N": str(value)}
            adds.append(f"#c{i} :c{i}")
        expression = f"SET {', '.join(sets)} REMOVE {', '.join(removes)}"
        if adds:
            expression += " ADD " + ", ".join(adds)
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key={"backfill_id": {"S": backfill_id}},
                UpdateExpression=expression,
                ConditionExpression="#cursor = :step AND lease_owner = :owner",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    def fail(self, backfill_id: str, reason: str) -> None:
        """Mark a backfill that can never finish (its bucket is gone, listing is denied)."""
        self._call(
            "update_item",
            TableName=self.table,
            Key={"backfill_id": {"S": backfill_id}},
            UpdateExpression="SET #status = :failed, #error = :reason, updated_at = :updated"
            " REMOVE lease_owner, lease_until",
            ExpressionAttributeNames={"#status": "status", "#error": "error"},
            ExpressionAttributeValues={
                ":failed": {"S": "failed"},
                ":reason": {"S": reason[:1000]},
                ":updated": {"S": _now_iso(self.clock)},
            },
        )

    # -- internals ------------------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> Any:
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as error:
            code = error_code(error)
            if code in TRANSIENT_CODES:
                raise TransientServiceError(f"DynamoDB {operation} {self.table}: {code}") from error
            raise


def _number(item: Mapping[str, Any], name: str) -> int:
    value = item.get(name, {}).get("N")
    return int(float(value)) if value is not None else 0


def _text(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name, {}).get("S")
    return str(value) if value is not None else None


def _backfill_progress(item: Mapping[str, Any]) -> BackfillProgress:
    lease = item.get("lease_until", {}).get("N")
    return BackfillProgress(
        backfill_id=_text(item, "backfill_id") or "",
        bucket=_text(item, "bucket") or "",
        prefix=_text(item, "prefix") or "",
        status=_text(item, "status") or "queued",
        cursor=_number(item, "cursor"),
        counters={name: _number(item, name) for name in COUNTERS},
        next_message=_text(item, "next_message"),
        lease_until=float(lease) if lease is not None else None,
        created_at=_text(item, "created_at"),
        updated_at=_text(item, "updated_at"),
        error=_text(item, "error"),
    )
