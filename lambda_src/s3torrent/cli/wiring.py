"""From the S3 and torrent flags to what `create` and `backfill` drive: Settings, the
TorrentService and the ObjectRef of each key.

Imported by those commands only: it loads pydantic (Settings) and boto3 (the service).
"""

from __future__ import annotations

import argparse
from typing import Any

from s3torrent.cli.command import CliError, CommandContext
from s3torrent.errors import InvalidInput
from s3torrent.model import ObjectRef
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.torrent import validate_piece_length
from s3torrent.wiring import build_service


def settings_from_args(
    args: argparse.Namespace, context: CommandContext, bucket: str, prefix: str = ""
) -> Settings:
    """Settings for one CLI run: the user's bucket is the allowlist."""
    if args.piece_length is not None:
        validate_piece_length(args.piece_length)  # the engine's message, not pydantic's
    region = args.region or context.new_session().region_name or "us-east-1"
    values: dict[str, Any] = {
        "buckets": [{"name": bucket, "prefix": prefix}],
        "torrent_source": args.source,
        "piece_length": args.piece_length,
        "trackers": tuple(args.tracker),
        "private": args.private,
        "comment": args.comment,
        "source_tag": args.source_tag,
        "endpoint_url": args.endpoint_url,
        "region": region,
    }
    if args.meta_version is not None:  # else the settings' own (collections: policy.py)
        values["meta_version"] = args.meta_version
    if args.no_web_seeds:
        values["web_seeds"] = ()
    elif args.web_seed:
        values["web_seeds"] = tuple(args.web_seed)
    try:
        return Settings.from_mapping(values)
    except InvalidInput as error:
        # pydantic says "bucket.0.name: String should match pattern …": say what it was.
        if "buckets" in str(error):
            raise CliError(f"invalid bucket name: {bucket!r}") from error
        raise


def service_for(
    settings: Settings, context: CommandContext, concurrency: int = 1
) -> TorrentService:
    """The same TorrentService as the Lambdas, on the caller's own boto3 session."""
    return build_service(settings, session=context.new_session(), concurrency=concurrency)


def object_ref(args: argparse.Namespace, bucket: str, key: str) -> ObjectRef:
    """s3://bucket/key with the flags that apply to every request about it."""
    return ObjectRef(
        bucket=bucket,
        key=key,
        request_payer=args.request_payer,
        expected_bucket_owner=args.expected_bucket_owner,
    )
