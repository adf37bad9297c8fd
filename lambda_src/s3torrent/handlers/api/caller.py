"""Who may ask about what: the bucket allowlist, and anonymous callers on public prefixes only.

API Gateway's IAM authorizer has already checked a signed caller's own permissions; these
checks are the deployment's, on top of them, and every route makes them: a route that API
Gateway was (mis)configured to leave open still serves no one it should not.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from s3torrent.errors import AccessDenied, BucketNotAllowed
from s3torrent.model import ObjectRef
from s3torrent.settings import Settings

LOOPBACK = frozenset({"127.0.0.1", "::1"})
_SIGNED = ("userArn", "caller", "accessKey", "cognitoIdentityId")


def check_allowed(settings: Settings, ref: ObjectRef) -> None:
    """BucketNotAllowed unless the object is inside the configured allowlist."""
    if not settings.allows(ref.bucket, ref.key):
        raise BucketNotAllowed(ref.bucket, ref.key)


def is_signed(event: APIGatewayProxyEvent) -> bool:
    """True for a caller IAM authenticated, or one on loopback (the local stack)."""
    context = event.raw_event.get("requestContext") or {}
    identity = context.get("identity") or {}
    if any(identity.get(name) for name in _SIGNED):
        return True
    return identity.get("sourceIp") in LOOPBACK  # the local stack (never API Gateway)


def check_caller(event: APIGatewayProxyEvent, settings: Settings, ref: ObjectRef) -> None:
    """Reading a torrent: signed callers pass (IAM checked them), anonymous ones only on
    public prefixes; and only inside the allowlist, whoever asks."""
    check_allowed(settings, ref)
    if is_signed(event) or settings.is_public(ref.bucket, ref.key):
        return
    raise AccessDenied(f"{ref.uri}: anonymous requests are served only under the public prefixes")


def check_signed(event: APIGatewayProxyEvent, action: str) -> None:
    """Making torrents and backfills costs reads and writes: signed callers only."""
    if not is_signed(event):
        raise AccessDenied(f"{action}: anonymous requests may only read torrents")
