"""The command line: every subcommand's flags, and the s3:// URIs they name.

Standard library only: `--help` and a usage error end here, and need nothing more.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from s3torrent import __version__
from s3torrent.cli.command import EXIT_USAGE, PROG, CliError
from s3torrent.cli.output import one_line


def _positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from error
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from error
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0: {value}")
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
        default=None,
        help="BitTorrent v1 (BEP 3), v2 (BEP 52) or both (default: hybrid for an object,"
        " 1 for a collection: what every client reads, docs/collections.md)",
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


API_HELP = (
    "the deployed stack's API URL (its ApiUrl output, e.g. https://ID.execute-api.REGION"
    ".amazonaws.com/prod; the local stack's http://127.0.0.1:8000); requests are SigV4-signed"
    " with your AWS credentials"
)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other failure of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see --help)\n")


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
        help="make the torrent of one object, or of every object under a prefix",
        description="Make the torrent of s3://BUCKET/KEY; by default written next to it as"
        " KEY.torrent. A URI ending in '/' (s3://BUCKET/PREFIX/) makes a collection: one"
        " multi-file torrent of every object under the prefix, written as PREFIX.torrent.",
    )
    create.add_argument("uri", metavar="s3://BUCKET/KEY|s3://BUCKET/PREFIX/")
    _add_s3_options(create)
    _add_torrent_options(create)
    create.add_argument(
        "--output", "-o", metavar="PATH|-", help="write the torrent here instead of to S3"
    )
    create.add_argument("--force", action="store_true", help="rebuild even if one is fresh")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    stack = create.add_argument_group(
        "deployed stack", "ask the stack's API to make it, instead of hashing here"
    )
    stack.add_argument("--api", metavar="URL", help=API_HELP)
    stack.add_argument(
        "--wait-seconds",
        type=_seconds,
        metavar="SECONDS",
        help="with --api, how long to follow a queued build (default: 3600; 0: do not wait)",
    )

    status = commands.add_parser(
        "status",
        help="ask the deployed stack about an object's torrent and its build",
        description="Status of the torrent of s3://BUCKET/KEY on the stack at --api: fresh,"
        " stale, building (parts done) or failed (why), its info hashes and magnet link.",
    )
    status.add_argument("uri", metavar="s3://BUCKET/KEY")
    status.add_argument("--api", metavar="URL", required=True, help=API_HELP)
    status.add_argument("--region", help="region to sign for (default: from the URL or AWS)")
    status.add_argument("--json", action="store_true", help="print the API's JSON object")

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
