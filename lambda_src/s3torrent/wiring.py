"""Builds the boto3 clients and the TorrentService from one Settings (Lambda, CLI, local stack)."""

from __future__ import annotations

import json
import logging
import os
import ssl
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.httpsession import get_cert_path

from s3torrent.errors import InvalidInput
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


def endpoint_session(settings: Settings) -> Any:
    """The boto3 session S3 calls use: the store's own keys when a secret names them."""
    if not settings.endpoint_credentials_secret:
        return boto3.session.Session()
    secrets = boto3.session.Session().client("secretsmanager", region_name=settings.region)
    raw = secrets.get_secret_value(SecretId=settings.endpoint_credentials_secret)["SecretString"]
    try:
        keys = json.loads(raw)
        access_key, secret_key = keys["access_key_id"], keys["secret_access_key"]
    except (ValueError, KeyError, TypeError) as error:
        # Never echo the secret's content: name the secret and what is missing only.
        raise InvalidInput(
            f"secret {settings.endpoint_credentials_secret} must be JSON with access_key_id"
            " and secret_access_key"
        ) from error
    return boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=settings.region
    )


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
