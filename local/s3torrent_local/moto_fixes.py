"""Fixes to moto's SQS for the local stack: O(1) per message again, and thread-safe deletes.

moto (5.2.5) asks for "now" through `datetime` (two datetimes and a subtraction per call),
and asks it for *every* message on every queue operation: `Queue.attributes` counts the
visible, delayed and in-flight messages on each SendMessage, and ReceiveMessage computes
all of a queue's attributes once per message it considers, only to read its retention
period. A burst of 500 uploads into the local stack spent about half of the process's CPU
there (py-spy), so the time to settle grew with the square of the queue's depth.

The fixes: "now" from `time.time()` (the same clock moto reads, without the datetimes),
and the retention check reading the queue's retention period directly. Nothing else
changes; `tests/unit/test_moto_fixes.py` checks the answers against moto's own.

And one race: `Queue.delete_message` rebuilds the queue's message list without the lock
`add_message` takes, so under moto's threaded server two deletes at once could put a
deleted message back (in flight, its receipt handles already spent: stuck until its
visibility timeout, 90 minutes on the worker queue) and a send during a delete could be
lost. The local stack's four worker pollers delete batches concurrently; a burst of 500
uploads on a loaded machine left 5 messages stuck that way. Deletes now take the lock.

And S3's ranged GETs: moto answers `Range: bytes=a-b` by reading the *whole* object out of
its buffer and slicing it, so reading a 2 GiB object in 16 MiB ranges copied 256 GiB and
held 2 GiB per request in flight. During a plain single-range GET, `FakeKey.value` is now a
window that reads only the bytes asked for (the same bytes: tested against moto's own).
"""

from __future__ import annotations

import datetime
import re
import threading
import time
from typing import Any

import moto.s3.models as s3_models
import moto.s3.responses as s3_responses
import moto.sqs.models as sqs_models

# moto's module, untyped where it imports its clock from moto.core.utils.
_MODULE: Any = sqs_models
_ORIGINAL_UNIX_TIME = _MODULE.unix_time
_ORIGINAL_UNIX_TIME_MILLIS = _MODULE.unix_time_millis
_ORIGINAL_RETENTION_CHECK = sqs_models.SQSBackend.is_message_valid_based_on_retention_period
_ORIGINAL_DELETE = sqs_models.Queue.delete_message
_ORIGINAL_VALUE: property = s3_models.FakeKey.value  # type: ignore[assignment]
_ORIGINAL_KEY_RESPONSE = s3_responses.S3Response.key_response
_SIMPLE_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")
_IN_RANGED_GET = threading.local()


def unix_time(dt: datetime.datetime | None = None) -> float:
    """moto's `unix_time`, without building two datetimes to learn the current time."""
    return time.time() if dt is None else _ORIGINAL_UNIX_TIME(dt)


def unix_time_millis(dt: datetime.datetime | None = None) -> float:
    """moto's `unix_time_millis`, likewise."""
    return time.time() * 1000.0 if dt is None else _ORIGINAL_UNIX_TIME_MILLIS(dt)


def is_message_valid_based_on_retention_period(
    self: sqs_models.SQSBackend, queue_name: str, message: sqs_models.Message
) -> bool:
    """Whether `message` is still within its queue's retention period (moto's rule)."""
    queue: Any = self.get_queue(queue_name)
    sent = float(message.sent_timestamp or 0)
    return int(queue.message_retention_period) + sent / 1000 > unix_time()


def delete_message(self: sqs_models.Queue, receipt_handle: str) -> None:
    """moto's `Queue.delete_message`, under the lock `add_message` already takes."""
    lock: Any = self._messages_lock  # a Condition over an RLock
    with lock:
        _ORIGINAL_DELETE(self, receipt_handle)


class _RangeWindow:
    """An object's bytes as moto's range handling uses them (a length and one slice), read
    from the object's buffer without copying the rest."""

    def __init__(self, key: Any) -> None:
        self._key = key

    def __len__(self) -> int:
        return int(self._key.contentsize)

    def __getitem__(self, item: slice) -> bytes:
        start, stop, _ = item.indices(len(self))
        with self._key.lock:
            self._key._value_buffer.seek(start)
            data: bytes = self._key._value_buffer.read(max(0, stop - start))
        return data


def _value(self: Any) -> Any:
    if getattr(_IN_RANGED_GET, "active", False):
        return _RangeWindow(self)
    return _ORIGINAL_VALUE.fget(self)  # type: ignore[misc]


def key_response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
    """moto's `key_response`, with a single-range GET reading only its range."""
    match = _SIMPLE_RANGE.match(request.headers.get("range") or "")
    _IN_RANGED_GET.active = bool(
        request.method == "GET" and match and int(match[1]) <= int(match[2])
    )
    try:
        return _ORIGINAL_KEY_RESPONSE(self, request, full_url, headers)
    finally:
        _IN_RANGED_GET.active = False


# (where, name, the fix, moto's own)
_PATCHES: tuple[tuple[Any, str, Any, Any], ...] = (
    (_MODULE, "unix_time", unix_time, _ORIGINAL_UNIX_TIME),
    (_MODULE, "unix_time_millis", unix_time_millis, _ORIGINAL_UNIX_TIME_MILLIS),
    (
        sqs_models.SQSBackend,
        "is_message_valid_based_on_retention_period",
        is_message_valid_based_on_retention_period,
        _ORIGINAL_RETENTION_CHECK,
    ),
    (sqs_models.Queue, "delete_message", delete_message, _ORIGINAL_DELETE),
    (s3_models.FakeKey, "value", property(_value, _ORIGINAL_VALUE.fset), _ORIGINAL_VALUE),
    (s3_responses.S3Response, "key_response", key_response, _ORIGINAL_KEY_RESPONSE),
)


def install() -> None:
    """Apply the fixes (idempotent). Every moto server in this process gets them."""
    for owner, name, fixed, _ in _PATCHES:
        setattr(owner, name, fixed)


def uninstall() -> None:
    """moto as it ships (for tests comparing the two)."""
    for owner, name, _, original in _PATCHES:
        setattr(owner, name, original)
