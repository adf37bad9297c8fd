"""Every message s3torrent puts on its queues, in one place.

Ours, told apart by `type` (`QueueMessage`, read by `parse_message`):

- `s3torrent.job` on the worker queue: make (or refresh) the torrent of one object;
  `{"type", "bucket", "key", "version_id"?, "backfill_id"?, "overrides"?}`.
- `s3torrent.collection` on the worker queue, sent with a delay: bring the torrent of a kept
  collection up to date; `{"type", "bucket", "prefix"}` (its options are the setting's).
- `s3torrent.part` on the worker queue: hash one part of a fan-out build (docs/fanout.md);
  `{"type", "build_id", "part"}` (the rest is in the build's manifest).
- `s3torrent.backfill` on the backfill queue: one step of a backfill walk;
  `{"type", "backfill_id", "bucket", "prefix", "step", "planner_state"?,
  "continuation_token"?, "start_after"?}`.

Not ours, also on the worker queue, read by the worker as S3 sends them: S3 event
notifications (`{"Records": [...]}`, keys URL-encoded), the `s3:TestEvent` S3 sends when a
notification is configured, and either of them wrapped in an SNS envelope
(`{"Type": "Notification", "Message": "<the S3 body>"}`) when the bucket notifies a topic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from s3torrent.errors import InvalidInput
from s3torrent.model import ObjectRef
from s3torrent.validation import describe_errors

JOB_TYPE: Final = "s3torrent.job"
COLLECTION_TYPE: Final = "s3torrent.collection"
PART_TYPE: Final = "s3torrent.part"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_body(self) -> str:
        """The SQS body: compact JSON, ASCII only (SQS refuses some characters S3 keys allow)."""
        return json.dumps(
            self.model_dump(exclude_none=True), ensure_ascii=True, separators=(",", ":")
        )


class JobMessage(_Message):
    """Make (or refresh) the torrent of one object."""

    type: Literal["s3torrent.job"] = JOB_TYPE
    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    version_id: str | None = None
    backfill_id: str | None = None
    overrides: dict[str, Any] | None = None

    def ref(self) -> ObjectRef:
        return ObjectRef(self.bucket, self.key, self.version_id)


class CollectionMessage(_Message):
    """Bring a kept collection's torrent up to date (rebuilt only if its listing changed)."""

    type: Literal["s3torrent.collection"] = COLLECTION_TYPE
    bucket: str = Field(min_length=1)
    prefix: str = Field(min_length=2, pattern=r"/$")


class PartMessage(_Message):
    """Hash one part of a fan-out build; the last part counted assembles the torrent."""

    type: Literal["s3torrent.part"] = PART_TYPE
    build_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")
    part: int = Field(ge=0)


class BackfillMessage(_Message):
    """One step of a backfill walk: where the listing resumes and what the planner holds."""

    type: Literal["s3torrent.backfill"] = "s3torrent.backfill"
    backfill_id: str = Field(min_length=1, max_length=128)
    bucket: str = Field(min_length=1)
    prefix: str = ""
    step: int = Field(default=0, ge=0)
    planner_state: dict[str, Any] | None = None
    continuation_token: str | None = None
    start_after: str | None = None  # the last key listed: a fallback if the token expired


QueueMessage = Annotated[
    JobMessage | CollectionMessage | PartMessage | BackfillMessage, Field(discriminator="type")
]
"""Any message of ours, the kind named by its `type`."""

_QUEUE_MESSAGE: TypeAdapter[QueueMessage] = TypeAdapter(QueueMessage)
_TYPES = frozenset(
    kind.model_fields["type"].default
    for kind in (JobMessage, CollectionMessage, PartMessage, BackfillMessage)
)


def parse_message(body: str | Mapping[str, Any]) -> QueueMessage:
    """Our message in a queue body (JSON text, or already decoded); InvalidInput says why not.

    The error's text is only the why (`key: Field required`): each queue's reader says
    which message it expected.
    """
    try:
        payload = json.loads(body) if isinstance(body, str) else dict(body)
        return _QUEUE_MESSAGE.validate_python(payload)
    except ValidationError as error:
        raise InvalidInput(_describe(error)) from error
    except ValueError as error:  # not JSON
        raise InvalidInput(str(error)[:200]) from error


def _describe(error: ValidationError) -> str:
    """The first few refusals, each at its field's path (`overrides.x: ...`, `body: ...`)."""
    return describe_errors(
        ({**item, "loc": _field_path(item["loc"])} for item in error.errors()),
        whole="body",
        limit=3,
    )


def _field_path(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # The discriminated union puts the message's type first (`s3torrent.job.key`); the
    # field alone (`key`) is what a reader of the log can act on.
    return loc[1:] if loc and loc[0] in _TYPES else loc
