"""Small helpers the reliability tests share: plain clients and reference torrents."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
from botocore.config import Config


def plain_client(endpoint: str, *, attempts: int = 1, read_timeout: float = 10.0) -> Any:
    """A boto3 S3 client with botocore's own retries off (so a fault is seen as it is)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(
            retries={"total_max_attempts": attempts, "mode": "standard"},
            read_timeout=read_timeout,
            connect_timeout=5,
        ),
    )


def reference_hashes(
    data: bytes, key: str, *, meta_version: str = "hybrid", piece_length: int | None = None
) -> tuple[str | None, str | None]:
    """The (v1, v2) info hashes a correct torrent of `data` under `key` has, from the engine
    alone (in memory, no S3, no service): what every faulty run must still agree with."""
    from s3torrent.torrent.hashing import MetaVersion, hash_bytes
    from s3torrent.torrent.metainfo import (
        TorrentOptions,
        build_torrent,
        choose_piece_length,
        torrent_name_for_key,
    )

    version = MetaVersion(meta_version)
    length = piece_length or choose_piece_length(len(data))
    torrent = build_torrent(
        torrent_name_for_key(key),
        hash_bytes(data, length, version),
        TorrentOptions(meta_version=version, piece_length=length),
    )
    return torrent.info_hash_v1, torrent.info_hash_v2


def torrent_keys(client: Any, bucket: str) -> list[str]:
    """Every `.torrent` key in the bucket (straight from the store, not through a proxy)."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", ()) if o["Key"].endswith(".torrent")]
    return keys


def source_writes(log: Any) -> list[str]:
    """Requests through the proxy that would change anything but a `.torrent` key (any
    PUT, POST or DELETE on another key): the service must never make one."""
    return [
        f"{entry.info.method} {entry.info.path}"
        for entry in log
        if entry.info.method in ("PUT", "POST", "DELETE", "PATCH")
        and not entry.info.key.endswith(".torrent")
    ]


def fresh_bucket(client: Any, prefix: str) -> str:
    """Create a bucket no other test (or parameter of the same test) uses; its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return name
