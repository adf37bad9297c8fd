"""Who may ask about what: the bucket allowlist, and anonymous callers on public prefixes only.

API Gateway's IAM authorizer has already checked a signed caller's own permissions; these
checks are the deployment's, on top of them.
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


def check_caller(event: APIGatewayProxyEvent, settings: Settings, ref: ObjectRef) -> None:
    """Signed callers pass (IAM already checked them); anonymous ones only on public prefixes."""
    context = event.raw_event.get("requestContext") or {}
    identity = context.get("identity") or {}
    if any(identity.get(name) for name in _SIGNED):
        return
    if identity.get("sourceIp") in LOOPBACK:  # the local stack (never API Gateway)
        return
    if settings.is_public(ref.bucket, ref.key):
        return
    raise AccessDenied(f"{ref.uri}: anonymous requests are served only under the public prefixes")
