"""Builds the boto3 clients and the TorrentService from one Settings (Lambda, CLI, local stack)."""

from __future__ import annotations

import json
import logging
import os
import ssl
import urllib.request
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.httpsession import get_cert_path

from s3torrent.errors import EndpointSecretUnusable
from s3torrent.s3.direct import HttpConnections
from s3torrent.s3.objects import S3Objects
from s3torrent.s3.reader import ReaderConfig
from s3torrent.service import TorrentService
from s3torrent.settings import Settings

logger = logging.getLogger(__name__)

# Control calls (HEAD, PUT, LIST, GetObjectTorrent): botocore's standard retries with
# backoff. Ranged GETs: none, because read_parts retries each range itself and two
# layers would multiply (5 x 5 attempts on a throttled prefix is a retry storm).
CONTROL_ATTEMPTS = 4
EXTRA_CONNECTIONS = 4


def _config(settings: Settings, *, attempts: int, pool: int, read_timeout: float) -> Config:
    values: dict[str, Any] = {
        "retries": {"mode": "standard", "total_max_attempts": attempts},
        "max_pool_connections": pool,
        "connect_timeout": 10,
        "read_timeout": read_timeout,
        "user_agent_extra": "s3torrent",
        # Presigned torrent URLs (the API's 307 for large torrents) must be SigV4: regions
        # opened since 2014 refuse SigV2, and SigV4 scopes the signature to a region.
        "signature_version": "s3v4",
    }
    if settings.endpoint_url:
        # S3-compatible stores: path-style URLs (no wildcard DNS needed), and no default
        # CRC trailers, which older stores (radosgw 16, MinIO before 2023) reject.
        values["s3"] = {"addressing_style": "path"}
        values["request_checksum_calculation"] = "when_required"
        values["response_checksum_validation"] = "when_required"
    return Config(**values)


def s3_client(
    settings: Settings,
    *,
    session: Any | None = None,
    attempts: int = CONTROL_ATTEMPTS,
    concurrency: int = 1,
    read_timeout: float = 60.0,
) -> Any:
    """A boto3 S3 client for `settings` (endpoint, region), its pool sized for the reader.

    `concurrency`: how many objects are read at once through this client (CLI backfill).
    """
    session = session or boto3.session.Session()
    pool = settings.read_window * max(1, concurrency) + EXTRA_CONNECTIONS
    return session.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        config=_config(settings, attempts=attempts, pool=pool, read_timeout=read_timeout),
    )


# The secret's JSON, in either spelling: the documented one, or the AWS credential names.
_KEY_NAMES = (
    ("access_key_id", "secret_access_key", "session_token"),
    ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"),
)


def endpoint_session(settings: Settings, session: Any | None = None) -> Any:
    """The boto3 session S3 calls use: the store's own keys when a secret names them.

    `session` (the function's role) reads the secret; only S3 calls use the keys it holds.
    EndpointSecretUnusable names the secret and what is wrong with it, never its content.
    """
    role = session or boto3.session.Session()
    secret_id = settings.endpoint_credentials_secret
    if not secret_id:
        return role
    secrets = role.client("secretsmanager", region_name=settings.region)
    try:
        raw = secrets.get_secret_value(SecretId=secret_id).get("SecretString")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise EndpointSecretUnusable(secret_id, _secret_problem(code)) from error
    access_key, secret_key, token = _store_keys(secret_id, raw)
    return boto3.session.Session(
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=token,
        region_name=settings.region,
    )


def _secret_problem(code: str) -> str:
    if code == "ResourceNotFoundException":
        return "no such secret (ResourceNotFoundException)"
    if code in ("AccessDeniedException", "AccessDenied"):
        return f"this function's role may not read it, or not decrypt it ({code})"
    return f"Secrets Manager refused to return it ({code or 'unknown error'})"


def _store_keys(secret_id: str, raw: str | None) -> tuple[str, str, str | None]:
    """The access key pair (and session token) from the secret's JSON, in either spelling."""
    try:
        keys = json.loads(raw) if raw is not None else None
    except ValueError:
        keys = None
    if not isinstance(keys, dict):
        raise EndpointSecretUnusable(
            secret_id,
            'not a JSON object: store {"access_key_id": …, "secret_access_key": …}',
        )
    for names in _KEY_NAMES:
        access_key, secret_key, token = (keys.get(name) for name in names)
        if _text(access_key) and _text(secret_key):
            return access_key, secret_key, token if _text(token) else None
    # Not even the field names it has: a key pair pasted as {"AKIA…": "…"} would leak.
    raise EndpointSecretUnusable(
        secret_id, "its JSON needs non-empty strings access_key_id and secret_access_key"
    )


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def direct_connections(settings: Settings, data_client: Any) -> HttpConnections | None:
    """The connection pool of the direct range transport, or None to read through botocore.

    None when `read_transport` is `sdk`, or when a proxy is configured for the endpoint:
    botocore honours HTTP(S)_PROXY and NO_PROXY, http.client would not.
    """
    if settings.read_transport != "direct":
        return None
    endpoint = urlsplit(data_client.meta.endpoint_url)
    if urllib.request.getproxies().get(endpoint.scheme) and not urllib.request.proxy_bypass(
        endpoint.hostname or ""
    ):
        logger.info("a proxy is set for %s: ranges are read through botocore", endpoint.netloc)
        return None
    context = None
    if endpoint.scheme == "https":
        # The CA bundle botocore verifies with: AWS_CA_BUNDLE, else its default bundle.
        context = ssl.create_default_context(
            cafile=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True)
        )
    return HttpConnections(timeout=settings.read_stall_seconds, ssl_context=context)


def reader_config(settings: Settings) -> ReaderConfig:
    """The ranged reader's part size and window from the settings."""
    return ReaderConfig(
        part_size=settings.read_part_bytes,
        window=settings.read_window,
        stall_timeout=settings.read_stall_seconds,
    )


def build_objects(
    settings: Settings, *, session: Any | None = None, concurrency: int = 1
) -> S3Objects:
    """The S3 adapter: a control client with retries, a data client without."""
    session = session or endpoint_session(settings)
    reader = reader_config(settings)
    # A range whose socket goes quiet is abandoned by the reader after stall_timeout; the
    # socket timeout frees its thread soon after.
    data_client = s3_client(
        settings,
        session=session,
        attempts=1,
        concurrency=concurrency,
        read_timeout=reader.stall_timeout,
    )
    return S3Objects(
        s3_client(settings, session=session, concurrency=concurrency),
        reader=reader,
        data_client=data_client,
        connections=direct_connections(settings, data_client),
    )


def build_service(
    settings: Settings, *, session: Any | None = None, concurrency: int = 1
) -> TorrentService:
    """The TorrentService every entry point uses."""
    return TorrentService(
        settings, build_objects(settings, session=session, concurrency=concurrency)
    )
