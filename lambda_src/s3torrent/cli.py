"""`s3torrent`: make, inspect and backfill torrents of S3 objects from a shell.

The same TorrentService as the Lambdas, driven by flags instead of the environment. The
CLI uses the caller's own credentials, so any bucket they can read is allowed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

import boto3

from s3torrent import __version__
from s3torrent.backfill.planner import BackfillPlanner, PlannedObject
from s3torrent.errors import InvalidInput, S3TorrentError
from s3torrent.model import ObjectRef, Outcome, TorrentResult
from s3torrent.service import TorrentService, torrent_source_of
from s3torrent.settings import Settings
from s3torrent.torrent.hashing import validate_piece_length
from s3torrent.torrent.magnet import magnet_link
from s3torrent.torrent.metainfo import Torrent, read_torrent
from s3torrent.wiring import build_service

PROG = "s3torrent"
EXIT_OK = 0
EXIT_FAILED = 1  # no torrent was made, or a backfill had failures
EXIT_USAGE = 2  # argparse's own code for bad flags


class CliError(Exception):
    """A one-line reason to stop, printed on stderr."""


def new_session() -> Any:
    """The boto3 session every command uses (tests replace it to count requests)."""
    return boto3.session.Session()


# --- arguments ---------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from error
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _byte_count(text: str) -> int:
    """An integer number of bytes, with an optional K/M/G (binary) suffix: 262144, 256K, 4M."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    raw = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = units.get(raw[-1:], 1)
    number = raw[:-1] if scale > 1 else raw
    try:
        return int(number) * scale
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r}") from error


def _add_s3_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("S3")
    group.add_argument("--endpoint-url", help="an S3-compatible endpoint (default: AWS S3)")
    group.add_argument("--region", help="AWS region (default: from the AWS configuration)")
    group.add_argument("--request-payer", action="store_true", help="accept requester-pays charges")
    group.add_argument(
        "--expected-bucket-owner", metavar="ACCOUNT", help="fail unless this account owns it"
    )


def _add_torrent_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("torrent")
    group.add_argument(
        "--piece-length",
        type=_byte_count,
        metavar="BYTES",
        help="a power of two of at least 16 KiB (default: automatic, as libtorrent)",
    )
    group.add_argument(
        "--meta-version",
        choices=("1", "2", "hybrid"),
        default="hybrid",
        help="BitTorrent v1 (BEP 3), v2 (BEP 52) or both (default: hybrid)",
    )
    group.add_argument(
        "--web-seed",
        action="append",
        default=None,
        metavar="URL",
        help="BEP 19 web seed URL or template, repeatable (default: the object's folder URL)",
    )
    group.add_argument("--no-web-seeds", action="store_true", help="no web seed at all")
    group.add_argument(
        "--tracker",
        action="append",
        default=[],
        metavar="URL",
        help="tracker announce URL, repeatable, each its own tier (BEP 12)",
    )
    group.add_argument("--private", action="store_true", help="set the private flag (BEP 27)")
    group.add_argument("--comment", help="the torrent's comment")
    group.add_argument("--source-tag", help="the info dict's `source` (private trackers)")
    group.add_argument(
        "--source",
        choices=("auto", "native", "compute"),
        default="compute",
        help="compute the torrent, take the store's GetObjectTorrent (verified), or try"
        " native then compute (default: compute)",
    )


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other failure of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog=PROG, description="BitTorrent .torrent files for S3 objects (v1, v2, hybrid)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    create = commands.add_parser(
        "create",
        help="make the torrent of one object",
        description="Make the torrent of s3://BUCKET/KEY; by default written next to it as"
        " KEY.torrent.",
    )
    create.add_argument("uri", metavar="s3://BUCKET/KEY")
    _add_s3_options(create)
    _add_torrent_options(create)
    create.add_argument(
        "--output", "-o", metavar="PATH|-", help="write the torrent here instead of to S3"
    )
    create.add_argument("--force", action="store_true", help="rebuild even if one is fresh")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    show = commands.add_parser("show", help="decode and describe a .torrent file")
    show.add_argument("file", metavar="FILE", help="a .torrent file, or - for stdin")
    show.add_argument("--json", action="store_true", help="print one JSON object")

    backfill = commands.add_parser(
        "backfill",
        help="make every missing or stale torrent under a prefix",
        description="Walk s3://BUCKET[/PREFIX] and make every missing or stale torrent,"
        " several at once. Fresh torrents cost no request beyond the listing.",
    )
    backfill.add_argument("uri", metavar="s3://BUCKET[/PREFIX]")
    _add_s3_options(backfill)
    _add_torrent_options(backfill)
    backfill.add_argument(
        "--jobs", "-j", type=_positive_int, default=4, help="objects at once (default: 4)"
    )
    backfill.add_argument("--json", action="store_true", help="print a JSON summary")
    backfill.add_argument("--quiet", "-q", action="store_true", help="no running counts")

    commands.add_parser(
        "serve", help="run the local stack (embedded S3, API, worker)", add_help=False
    )
    return parser


def parse_s3_uri(uri: str, *, key_required: bool) -> tuple[str, str]:
    """('bucket', 'key') from s3://bucket/key; the key is taken literally (no decoding)."""
    if not uri.startswith("s3://"):
        raise CliError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise CliError(f"no bucket in {uri!r}")
    if key_required and not key:
        raise CliError(f"no key in {uri!r}: expected s3://BUCKET/KEY")
    return bucket, key


def settings_from_args(args: argparse.Namespace, bucket: str, prefix: str = "") -> Settings:
    """Settings for one CLI run: the user's bucket is the allowlist."""
    if args.piece_length is not None:
        validate_piece_length(args.piece_length)  # its own message, before pydantic's
    region = args.region or new_session().region_name or "us-east-1"
    values: dict[str, Any] = {
        "buckets": [{"name": bucket, "prefix": prefix}],
        "torrent_source": args.source,
        "meta_version": args.meta_version,
        "piece_length": args.piece_length,
        "trackers": tuple(args.tracker),
        "private": args.private,
        "comment": args.comment,
        "source_tag": args.source_tag,
        "endpoint_url": args.endpoint_url,
        "region": region,
    }
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


def _ref(args: argparse.Namespace, bucket: str, key: str) -> ObjectRef:
    return ObjectRef(
        bucket=bucket,
        key=key,
        request_payer=args.request_payer,
        expected_bucket_owner=args.expected_bucket_owner,
    )


# --- output helpers ----------------------------------------------------------------------


def human_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} PiB"  # pragma: no cover


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def describe_torrent(torrent: Torrent) -> dict[str, Any]:
    """The JSON description of a torrent (`show --json`, and part of `create --json`)."""
    return {
        "name": torrent.name,
        "size": torrent.length,
        "piece_length": torrent.piece_length,
        "pieces": torrent.num_pieces,
        "meta_version": str(torrent.meta_version),
        "info_hash_v1": torrent.info_hash_v1,
        "info_hash_v2": torrent.info_hash_v2,
        "private": torrent.private,
        "trackers": [list(tier) for tier in torrent.trackers],
        "web_seeds": list(torrent.web_seeds),
        "comment": torrent.comment,
        "created_by": torrent.created_by,
        "creation_date": torrent.creation_date,
        "source_tag": torrent.source,
        "magnet": magnet_link(torrent),
    }


def _print_rows(rows: Iterable[tuple[str, object]], out: IO[str]) -> None:
    for label, value in rows:
        if value is None or value == "" or value == []:
            continue
        print(f"{label:<14}{value}", file=out)


def _torrent_rows(torrent: Torrent) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [
        ("name", torrent.name),
        ("size", f"{torrent.length} ({human_bytes(torrent.length)})"),
        ("piece length", f"{torrent.piece_length} ({human_bytes(torrent.piece_length)})"),
        ("pieces", torrent.num_pieces),
        ("meta version", str(torrent.meta_version)),
        ("info hash v1", torrent.info_hash_v1),
        ("info hash v2", torrent.info_hash_v2),
        ("private", "yes" if torrent.private else None),
        ("source tag", torrent.source),
        ("comment", torrent.comment),
        ("created by", torrent.created_by),
        ("creation date", torrent.creation_date),
    ]
    for number, tier in enumerate(torrent.trackers, 1):
        rows.append(("tracker", f"tier {number}: {' '.join(tier)}"))
    rows.extend(("web seed", url) for url in torrent.web_seeds)
    rows.append(("magnet", magnet_link(torrent)))
    return rows


class ProgressBar:
    """`[#####.....]  45%  1.2 GiB / 2.7 GiB  310 MiB/s  ETA 0:05` on a terminal's stderr."""

    WIDTH = 24
    INTERVAL = 0.1

    def __init__(self, stream: IO[str], label: str) -> None:
        self.stream = stream
        self.label = label
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = False

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < self.INTERVAL and done < total:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        fraction = done / total if total else 1.0
        filled = int(self.WIDTH * fraction)
        eta = (total - done) / rate if rate > 0 else 0.0
        minutes, seconds = divmod(int(eta), 60)
        line = (
            f"\r{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%}"
            f"  {human_bytes(done)} / {human_bytes(total)}  {human_bytes(rate)}/s"
            f"  ETA {minutes}:{seconds:02d} "
        )
        self.stream.write(line)
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


# --- commands ----------------------------------------------------------------------------


def _service(settings: Settings, concurrency: int = 1) -> TorrentService:
    return build_service(settings, session=new_session(), concurrency=concurrency)


def cmd_create(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if args.json and args.output == "-":
        raise CliError("--json and --output - both want stdout: pick one")
    bucket, key = parse_s3_uri(args.uri, key_required=True)
    settings = settings_from_args(args, bucket)
    service = _service(settings)
    ref = _ref(args, bucket, key)
    bar = None
    if not args.json and not args.quiet and err.isatty():
        bar = ProgressBar(err, key.rsplit("/", 1)[-1][:30])
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
    _report_created(args, result, torrent, out)
    return EXIT_OK


def _write_output(path: str, data: bytes) -> None:
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
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
    _print_rows(_torrent_rows(torrent), out)


def cmd_show(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as error:
        raise CliError(f"cannot read {args.file}: {error.strerror or error}") from error
    torrent = read_torrent(data)
    if args.json:
        print(json.dumps(describe_torrent(torrent)), file=out)
    else:
        _print_rows(_torrent_rows(torrent), out)
    return EXIT_OK


@dataclass
class BackfillSummary:
    """What a CLI backfill did; `listed` counts source keys (`.torrent` keys apart)."""

    bucket: str
    prefix: str
    listed: int = 0
    torrents_listed: int = 0
    created: int = 0
    fresh: int = 0
    skipped: int = 0
    changed: int = 0
    failed: int = 0
    bytes_read: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "listed": self.listed,
            "torrents_listed": self.torrents_listed,
            "created": self.created,
            "fresh": self.fresh,
            "skipped": self.skipped,
            "changed": self.changed,
            "failed": self.failed,
            "bytes_read": self.bytes_read,
            "requests": dict(sorted(self.requests.items())),
            "request_count": sum(self.requests.values()),
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        return (
            f"listed {self.listed}  created {self.created}  fresh {self.fresh}"
            f"  skipped {self.skipped}  changed {self.changed}  failed {self.failed}"
        )


class RequestCounter:
    """Counts HTTP requests per S3 operation (retries included) through botocore events."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send.s3", self._count)

    def _count(self, event_name: str = "", **_: Any) -> None:
        with self._lock:
            self.counts[event_name.rsplit(".", 1)[-1]] += 1


def run_backfill(
    service: TorrentService,
    bucket: str,
    prefix: str,
    *,
    jobs: int,
    ref_for: Callable[[str], ObjectRef],
    on_update: Callable[[BackfillSummary], None] | None = None,
    on_failure: Callable[[str, BaseException], None] | None = None,
) -> BackfillSummary:
    """List the prefix, let the planner decide, and make missing/stale torrents `jobs` at once."""
    summary = BackfillSummary(bucket=bucket, prefix=prefix)
    planner = BackfillPlanner(service.settings, bucket)
    started = time.monotonic()
    in_flight: dict[Future[TorrentResult], str] = {}

    def settle(done: Iterable[Future[TorrentResult]]) -> None:
        for future in done:
            key = in_flight.pop(future)
            try:
                result = future.result()
            except Exception as error:  # every failure is counted, reported, and survived
                summary.failed += 1
                if on_failure is not None:
                    on_failure(key, error)
                continue
            summary.bytes_read += result.counters.bytes_read
            if result.outcome is Outcome.CREATED:
                summary.created += 1
            elif result.outcome is Outcome.FRESH:
                summary.fresh += 1
            elif result.outcome is Outcome.CHANGED:
                summary.changed += 1
            else:
                summary.skipped += 1
        if on_update is not None:
            on_update(summary)

    def take(decided: Sequence[PlannedObject], executor: ThreadPoolExecutor) -> None:
        for planned in decided:
            if planned.action == "fresh":
                summary.fresh += 1
            elif planned.action == "skip":
                summary.skipped += 1
            else:
                while len(in_flight) >= 2 * jobs:
                    done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                    settle(done)
                # A missing torrent needs no freshness check; a stale one may turn out
                # fresh after all (same ETag), which one GET of it settles.
                future = executor.submit(
                    service.make_torrent, ref_for(planned.key), force=planned.action == "missing"
                )
                in_flight[future] = planned.key
        summary.listed = planner.listed
        summary.torrents_listed = planner.torrents_listed
        if on_update is not None:
            on_update(summary)

    scope = ref_for("")  # requester-pays and owner apply to the listing too
    with ThreadPoolExecutor(jobs, thread_name_prefix="s3torrent-backfill") as executor:
        try:
            token: str | None = None
            while True:
                page = service.objects.list_page(
                    bucket,
                    prefix,
                    token,
                    request_payer=scope.request_payer,
                    expected_bucket_owner=scope.expected_bucket_owner,
                )
                take(planner.feed(page.objects), executor)
                token = page.next_token
                if not token:
                    break
            take(planner.finish(), executor)
            while in_flight:
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                settle(done)
        finally:
            for future in in_flight:
                future.cancel()
    summary.seconds = time.monotonic() - started
    return summary


def cmd_backfill(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    bucket, prefix = parse_s3_uri(args.uri, key_required=False)
    settings = settings_from_args(args, bucket, prefix)
    service = _service(settings, concurrency=args.jobs)
    counter = RequestCounter()
    counter.attach(service.objects.client)
    if service.objects.data_client is not service.objects.client:
        counter.attach(service.objects.data_client)
    live = not args.json and not args.quiet and err.isatty()
    last = [0.0]

    def on_update(summary: BackfillSummary) -> None:
        now = time.monotonic()
        if live and now - last[0] >= 0.2:
            last[0] = now
            err.write(f"\r{summary.line()} ")
            err.flush()

    def on_failure(key: str, error: BaseException) -> None:
        if live:
            err.write("\r\x1b[K")
        print(f"{PROG}: failed s3://{bucket}/{key}: {_one_line(error)}", file=err)

    summary = run_backfill(
        service,
        bucket,
        prefix,
        jobs=args.jobs,
        ref_for=lambda key: _ref(args, bucket, key),
        on_update=on_update,
        on_failure=on_failure,
    )
    summary.requests = counter.counts
    if service.objects.connections is not None and service.objects.connections.requests_sent:
        # Ranged GETs sent straight over HTTP (s3_direct.py) never reach botocore's events.
        summary.requests["GetObject"] += service.objects.connections.requests_sent
    if live:
        err.write("\r\x1b[K")
    if args.json:
        print(json.dumps(summary.as_json()), file=out)
    else:
        print(f"s3://{bucket}/{prefix}: {summary.line()}", file=out)
        print(
            f"{sum(summary.requests.values())} S3 requests,"
            f" {human_bytes(summary.bytes_read)} read in {summary.seconds:.1f} s",
            file=out,
        )
    return EXIT_FAILED if summary.failed else EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, IO[str], IO[str]], int]] = {
    "create": cmd_create,
    "show": cmd_show,
    "backfill": cmd_backfill,
}


def _serve(argv: Sequence[str]) -> int:
    # Imported here: the local stack is not part of what ships to Lambda.
    from s3torrent_local.serve import main as serve_main

    code = serve_main(list(argv))
    return int(code or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `s3torrent` command."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "serve":
        return _serve(args_list[1:])
    args = build_parser().parse_args(args_list)
    out, err = sys.stdout, sys.stderr
    try:
        return COMMANDS[args.command](args, out, err)
    except (CliError, S3TorrentError) as error:
        print(f"{PROG}: error: {_one_line(error)}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
