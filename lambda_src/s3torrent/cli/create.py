"""`s3torrent create s3://BUCKET/KEY`: make the torrent of one object (or, for
s3://BUCKET/PREFIX/, of a collection: cli/collection.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import IO

from s3torrent.cli.arguments import parse_s3_uri
from s3torrent.cli.collection import create_collection
from s3torrent.cli.command import EXIT_OK, CliError, CommandContext, UsageError
from s3torrent.cli.description import describe_torrent, torrent_rows
from s3torrent.cli.output import ProgressBar, print_rows
from s3torrent.cli.wiring import object_ref, service_for, settings_from_args
from s3torrent.model import Outcome, TorrentResult
from s3torrent.policy import torrent_source_of
from s3torrent.torrent import Torrent, read_torrent

LABEL_CHARS = 30  # of the key's last segment, before the progress bar


def cmd_create(args: argparse.Namespace, context: CommandContext) -> int:
    """Make (or find fresh) the torrent of one object; write it to S3 or to --output."""
    if args.json and args.output == "-":
        raise CliError("--json and --output - both want stdout: pick one")
    if args.wait_seconds is not None:  # `create --api` is cli/remote.py
        raise UsageError("--wait-seconds follows a build on the stack: it needs --api")
    bucket, key = parse_s3_uri(args.uri, key_required=True)
    if key.endswith("/"):  # s3://BUCKET/PREFIX/: a collection (docs/collections.md)
        return create_collection(args, context, bucket, key, _write_output)
    service = service_for(settings_from_args(args, context, bucket), context)
    ref = object_ref(args, bucket, key)
    bar = None
    if not args.json and not args.quiet and context.err.isatty():
        bar = ProgressBar(context.err, key.rsplit("/", 1)[-1][:LABEL_CHARS])
    try:
        result = service.make_torrent(
            ref,
            force=args.force,
            write=args.output is None,
            match_options=True,  # the flags say what the user wants, defaults included
            on_progress=bar.update if bar else None,
        )
    finally:
        if bar:
            bar.close()
    if result.outcome is Outcome.SKIPPED:
        raise CliError(f"no torrent for {ref.uri}: {result.skip_reason}")
    if result.outcome is Outcome.CHANGED:
        raise CliError(f"{ref.uri} changed while it was being read: nothing written (run it again)")
    assert result.torrent_bytes is not None
    torrent = read_torrent(result.torrent_bytes)
    if args.output is not None:
        _write_output(args.output, result.torrent_bytes)
    _report_created(args, result, torrent, context.out)
    return EXIT_OK


def _write_output(path: str, data: bytes) -> None:
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    # Written beside the target then renamed: a reader never sees half a torrent.
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(data)
        partial.replace(target)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {error.strerror or error}") from error


def _report_created(
    args: argparse.Namespace, result: TorrentResult, torrent: Torrent, out: IO[str]
) -> None:
    written_to_s3 = args.output is None
    source = result.source or torrent_source_of(torrent)
    if args.json:
        report = {
            "outcome": str(result.outcome),
            "bucket": result.ref.bucket,
            "key": result.ref.key,
            "torrent_key": result.torrent_key if written_to_s3 else None,
            "output": args.output,
            "kind": "object",
            "files": 1,
            **describe_torrent(torrent),
            "source": source,
            "bytes_read": result.counters.bytes_read,
            "get_requests": result.counters.get_requests,
            "retries": result.counters.retries,
            "seconds": round(result.counters.seconds, 3),
        }
        print(json.dumps(report), file=out)
        return
    if args.output == "-":
        return
    where = f"s3://{result.ref.bucket}/{result.torrent_key}" if written_to_s3 else args.output
    verb = "up to date" if result.outcome is Outcome.FRESH else "wrote"
    print(f"{verb}: {where} ({source})", file=out)
    print_rows(torrent_rows(torrent), out)
