"""What the adapters of the deployment's DynamoDB table share: which errors are worth another
try (raised as TransientServiceError), and a refused condition told apart from the rest."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from s3torrent.errors import TransientServiceError

T = TypeVar("T")

BATCH_GET = 100  # BatchGetItem takes at most 100 keys
BATCH_WRITE = 25  # BatchWriteItem at most 25 requests
BATCH_ATTEMPTS = 5

TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
"""Error codes of DynamoDB throttling and server faults, once botocore's retries are spent."""


def error_code(error: ClientError) -> str:
    code: str = error.response.get("Error", {}).get("Code", "")
    return code


def conditional_failed(error: ClientError) -> bool:
    """True when a write was refused by its ConditionExpression (not a fault)."""
    return error_code(error) == "ConditionalCheckFailedException"


def guarded(what: str, call: Callable[..., T], *args: Any, **params: Any) -> T:
    """`call(*args, **params)`; throttling, server faults and connection trouble raise
    TransientServiceError naming `what` (worth another delivery), anything else as it is."""
    try:
        return call(*args, **params)
    except ClientError as error:
        code = error_code(error)
        if code in TRANSIENT_CODES:
            raise TransientServiceError(f"{what}: {code}") from error
        raise
    except BotoCoreError as error:
        raise TransientServiceError(f"{what}: {error}") from error


Call = Callable[..., Any]
"""An adapter's `_call(operation, **params)`: one DynamoDB request, errors translated."""


def batch_get(
    call: Call, table: str, ids: Sequence[str], *, consistent: bool = False, attempts: int
) -> list[dict[str, Any]]:
    """The items of these ids (partition key `backfill_id`), 100 to a request; keys DynamoDB
    leaves unprocessed are asked again with backoff, and TransientServiceError says so when
    some still are after `attempts` (an answer short of them would read as "no such item")."""
    items: list[dict[str, Any]] = []
    for start in range(0, len(ids), BATCH_GET):
        keys = [{"backfill_id": {"S": item}} for item in ids[start : start + BATCH_GET]]
        request: dict[str, Any] = {table: {"Keys": keys}}
        if consistent:
            request[table]["ConsistentRead"] = True
        for attempt in range(attempts):
            response = call("batch_get_item", RequestItems=request)
            items.extend(response.get("Responses", {}).get(table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            _backoff(attempt)
        if request:
            left = len(request[table]["Keys"])
            raise TransientServiceError(
                f"DynamoDB BatchGetItem {table}: {left} keys unprocessed after {attempts} attempts"
            )
    return items


def batch_write(
    call: Call, table: str, requests: Sequence[dict[str, Any]], *, attempts: int
) -> None:
    """Put and delete requests, 25 to a request; unprocessed ones are sent again with backoff,
    and TransientServiceError says so when some still are after `attempts`."""
    for start in range(0, len(requests), BATCH_WRITE):
        pending: list[dict[str, Any]] = list(requests[start : start + BATCH_WRITE])
        for attempt in range(attempts):
            response = call("batch_write_item", RequestItems={table: pending})
            pending = response.get("UnprocessedItems", {}).get(table, [])
            if not pending:
                break
            _backoff(attempt)
        if pending:
            raise TransientServiceError(
                f"DynamoDB BatchWriteItem {table}: {len(pending)} items unprocessed after"
                f" {attempts} attempts"
            )


def _backoff(attempt: int) -> None:
    time.sleep(min(0.05 * 2**attempt, 1.0))
