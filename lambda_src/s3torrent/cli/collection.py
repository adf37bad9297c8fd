"""`s3torrent create s3://BUCKET/PREFIX/`: the multi-file torrent of every object under it."""

from __future__ import annotations

import argparse
import json
from typing import IO, Any

from s3torrent.cli.command import EXIT_OK, CliError, CommandContext
from s3torrent.cli.output import ProgressBar, human_bytes, print_rows
from s3torrent.cli.wiring import service_for, settings_from_args
from s3torrent.collections import CollectionRef, CollectionResult
from s3torrent.model import Outcome
from s3torrent.torrent import CollectionTorrent, magnet_link, read_collection_torrent

LABEL_CHARS = 30


def create_collection(
    args: argparse.Namespace,
    context: CommandContext,
    bucket: str,
    prefix: str,
    write_output: Any,
) -> int:
    """Make (or find fresh) the collection torrent; write it to S3 or to --output."""
    ref = CollectionRef(
        bucket,
        prefix,
        request_payer=args.request_payer,
        expected_bucket_owner=args.expected_bucket_owner,
    )
    service = service_for(settings_from_args(args, context, bucket), context)
    bar = None
    if not args.json and not args.quiet and context.err.isatty():
        bar = ProgressBar(context.err, ref.name[:LABEL_CHARS] + "/")
    overrides = {"meta_version": args.meta_version} if args.meta_version else None
    try:
        result = service.make_collection(
            ref,
            overrides=overrides,
            force=args.force,
            write=args.output is None,
            match_options=True,
            on_progress=bar.update if bar else None,
        )
    finally:
        if bar:
            bar.close()
    if result.outcome is Outcome.SKIPPED:
        raise CliError(f"no torrent for {ref.uri}: {result.skip_reason}")
    if result.outcome is Outcome.CHANGED:
        raise CliError(
            f"an object under {ref.uri} changed while it was being read: nothing written"
            " (run it again)"
        )
    assert result.torrent_bytes is not None
    torrent = read_collection_torrent(result.torrent_bytes)
    if args.output is not None:
        write_output(args.output, result.torrent_bytes)
    _report(args, result, torrent, context.out, context.err)
    return EXIT_OK


def describe_collection(torrent: CollectionTorrent) -> dict[str, Any]:
    """The JSON description of a collection torrent (part of `create --json`)."""
    return {
        "kind": "collection",
        "name": torrent.name,
        "size": torrent.length,
        "files": len(torrent.files),
        "piece_length": torrent.piece_length,
        "pieces": torrent.num_pieces,
        "meta_version": str(torrent.meta_version),
        "info_hash_v1": torrent.info_hash_v1,
        "info_hash_v2": torrent.info_hash_v2,
        "trackers": [list(tier) for tier in torrent.trackers],
        "web_seeds": list(torrent.web_seeds),
        "magnet": magnet_link(torrent),
    }


def _report(
    args: argparse.Namespace,
    result: CollectionResult,
    torrent: CollectionTorrent,
    out: IO[str],
    err: IO[str],
) -> None:
    written_to_s3 = args.output is None
    skipped = [{"key": skip.key, "reason": skip.reason} for skip in result.skipped]
    if args.json:
        report = {
            "outcome": str(result.outcome),
            "bucket": result.ref.bucket,
            "key": result.ref.prefix,
            "torrent_key": result.torrent_key if written_to_s3 else None,
            "output": args.output,
            **describe_collection(torrent),
            "source": "computed",
            "skipped": skipped,
            "bytes_read": result.counters.bytes_read,
            "get_requests": result.counters.get_requests,
            "retries": result.counters.retries,
            "seconds": round(result.counters.seconds, 3),
        }
        print(json.dumps(report), file=out)
        return
    for skip in result.skipped:
        print(f"left out: s3://{result.ref.bucket}/{skip.key}: {skip.reason}", file=err)
    if args.output == "-":
        return
    where = f"s3://{result.ref.bucket}/{result.torrent_key}" if written_to_s3 else args.output
    verb = "up to date" if result.outcome is Outcome.FRESH else "wrote"
    print(f"{verb}: {where} (collection of {len(torrent.files)} files)", file=out)
    print_rows(
        [
            ("name", torrent.name),
            ("files", len(torrent.files)),
            ("size", f"{torrent.length} ({human_bytes(torrent.length)})"),
            ("piece length", torrent.piece_length),
            ("meta version", str(torrent.meta_version)),
            ("info hash v1", torrent.info_hash_v1),
            ("info hash v2", torrent.info_hash_v2),
            *(("web seed", url) for url in torrent.web_seeds),
            ("magnet", magnet_link(torrent)),
        ],
        out,
    )
