"""Every error s3torrent raises on purpose: one base class, each subclass says what was wrong.

`retryable` tells the handlers what to do: a retryable error fails the SQS record (so it comes
back, and ends in the DLQ if it never clears); a non-retryable one can never succeed as
asked, so it is logged with its reason and answered (4xx, acknowledged record, PermanentFailure).
`code` is the S3-style error code the API answers with. The torrent engine has errors of its
own (`s3torrent.torrent.errors`), which the service translates where they reach a caller.
"""

from __future__ import annotations


class S3TorrentError(Exception):
    """Base class of every error s3torrent raises on purpose."""

    retryable: bool = False
    code: str = "InvalidRequest"
    http_status: int = 400


# --- inputs the service refuses -----------------------------------------------------------


class InvalidInput(S3TorrentError):
    """A request that can never succeed as asked (bad option, bad URL, bad key)."""


class UnsupportedObject(S3TorrentError):
    """An object BitTorrent or this service cannot describe (empty, marker, SSE-C, archived …)."""

    def __init__(self, bucket: str, key: str, reason: str) -> None:
        super().__init__(f"s3://{bucket}/{key}: {reason}")
        self.bucket = bucket
        self.key = key
        self.reason = reason


class BucketNotAllowed(S3TorrentError):
    """A bucket (or prefix) outside the configured allowlist."""

    code = "AccessDenied"
    http_status = 403

    def __init__(self, bucket: str, key: str = "") -> None:
        where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
        super().__init__(f"{where} is not in the configured buckets")
        self.bucket = bucket
        self.key = key


# --- what S3 answered ---------------------------------------------------------------------


class ObjectNotFound(S3TorrentError):
    """The object (or its bucket, or the version asked for) does not exist."""

    code = "NoSuchKey"
    http_status = 404


class BucketNotFound(ObjectNotFound):
    """The bucket does not exist."""

    code = "NoSuchBucket"


class AccessDenied(S3TorrentError):
    """S3 refused the request (credentials, requester pays, expected bucket owner, KMS)."""

    code = "AccessDenied"
    http_status = 403


class ObjectChanged(S3TorrentError):
    """The object was overwritten or deleted while it was being read (If-Match failed).

    Not retried as such: the change itself sends a new event that makes the right torrent.
    """

    code = "PreconditionFailed"
    http_status = 409


class NativeTorrentUnavailable(S3TorrentError):
    """The store does not serve GetObjectTorrent for this object, or served a wrong torrent."""

    code = "NotImplemented"
    http_status = 501


class EndpointError(S3TorrentError):
    """The endpoint does not speak S3 (or could not be reached)."""

    code = "ServiceUnavailable"
    http_status = 502


class TransientS3Error(S3TorrentError):
    """A failure worth retrying: throttling, 5xx, a reset connection, a stalled read."""

    retryable = True
    code = "ServiceUnavailable"
    http_status = 503


class OutOfTime(S3TorrentError):
    """The invocation would end before this object's torrent is written: retry elsewhere."""

    retryable = True
    code = "ServiceUnavailable"
    http_status = 503


# --- the handlers' own ---------------------------------------------------------


class NotConfigured(S3TorrentError):
    """This deployment has no resource for the request (no worker queue, no progress table)."""

    code = "NotImplemented"
    http_status = 501


class EndpointSecretUnusable(NotConfigured):
    """The Secrets Manager secret holding the store's keys is missing, unreadable or malformed.

    Raised when a handler's runtime is built, so a misconfigured Lambda fails at init, saying
    which secret and what is wrong; never anything of the secret's content.
    """

    def __init__(self, secret: str, problem: str) -> None:
        super().__init__(f"endpoint credentials secret {secret}: {problem}")
        self.secret = secret
        self.problem = problem


class CustomTorrentNotInline(InvalidInput):
    """A torrent with the caller's own options that cannot be answered within the request.

    Such a torrent is never stored (the stored one is everyone's) nor queued (a job has
    nowhere to put it): it is made inline or not at all.
    """

    def __init__(self, bucket: str, key: str, reason: str) -> None:
        super().__init__(
            f"s3://{bucket}/{key}: {reason}; a torrent with options of its own is only made"
            " within the request. Ask without options for the deployment's torrent"
        )
        self.bucket = bucket
        self.key = key
        self.reason = reason


class BackfillNotFound(S3TorrentError):
    """No backfill with this id."""

    code = "NoSuchBackfill"
    http_status = 404

    def __init__(self, backfill_id: str) -> None:
        super().__init__(f"no backfill with id {backfill_id!r}")
        self.backfill_id = backfill_id


class BackfillStepBusy(S3TorrentError):
    """Another invocation holds this backfill step's lease: try the message again later."""

    retryable = True
    code = "ServiceUnavailable"
    http_status = 503


class TransientServiceError(S3TorrentError):
    """SQS or DynamoDB failed in a way worth retrying (throttling, 5xx), botocore retries spent."""

    retryable = True
    code = "ServiceUnavailable"
    http_status = 503


class TorrentPending(S3TorrentError):
    """The object is too large to hash inside the API's time budget: its job was queued."""

    retryable = True
    code = "ServiceUnavailable"
    http_status = 503

    def __init__(self, bucket: str, key: str, retry_after: int) -> None:
        super().__init__(
            f"s3://{bucket}/{key} is too large to hash within this request; its torrent is"
            f" being made: retry in {retry_after} seconds"
        )
        self.retry_after = retry_after
