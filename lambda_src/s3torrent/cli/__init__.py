"""`s3torrent`: make, inspect and backfill torrents of S3 objects from a shell.

The same TorrentService as the Lambdas, driven by flags instead of the environment. The
CLI uses the caller's own credentials, so any bucket they can read is allowed.

Importing this package costs argparse and little else: each command's module, and with it
boto3, botocore and pydantic, is imported once that command is chosen, so `--help`, `show`
and a usage error answer without them (a test keeps it so).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from s3torrent.cli.arguments import _byte_count, build_parser, parse_s3_uri
from s3torrent.cli.command import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PROG,
    CliError,
    CommandContext,
    UsageError,
)
from s3torrent.cli.output import ProgressBar, human_bytes, one_line

if TYPE_CHECKING:
    from s3torrent.cli.command import Command

__all__ = [
    "CliError",
    "ProgressBar",
    "_byte_count",
    "build_parser",
    "human_bytes",
    "load_command",
    "main",
    "new_session",
    "parse_s3_uri",
]


def new_session() -> Any:
    """The boto3 session every command uses (tests replace it to count requests)."""
    import boto3  # here, not at the top: most of the CLI's start-up time is boto3's import

    return boto3.session.Session()


def load_command(name: str, *, remote: bool = False) -> Command:
    """The function that runs subcommand `name`, its module imported only now; `remote` for
    `create --api` (the deployed stack makes it: no engine, no pydantic loaded here)."""
    match name:
        case "create" if remote:
            from s3torrent.cli.remote import cmd_create_remote

            return cmd_create_remote
        case "create":
            from s3torrent.cli.create import cmd_create

            return cmd_create
        case "show":
            from s3torrent.cli.show import cmd_show

            return cmd_show
        case "backfill":
            from s3torrent.cli.backfill import cmd_backfill

            return cmd_backfill
        case "status":
            from s3torrent.cli.remote import cmd_status

            return cmd_status
    raise ValueError(f"no such command: {name!r}")  # argparse lets only the above through


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
    # Imported only now: the engine's errors load the engine, which `--help` and a usage
    # error, both ended by argparse above, do not need.
    from s3torrent.errors import S3TorrentError
    from s3torrent.torrent import TorrentError

    # `new_session` is read from this module at each call, so a test's replacement holds.
    context = CommandContext(out=sys.stdout, err=sys.stderr, new_session=new_session)
    try:
        command = load_command(args.command, remote=getattr(args, "api", None) is not None)
        return command(args, context)
    except UsageError as error:  # flags that do not go together: argparse's code and form
        print(f"{PROG} {args.command}: error: {one_line(error)} (see --help)", file=context.err)
        return EXIT_USAGE
    except (CliError, S3TorrentError, TorrentError) as error:
        print(f"{PROG}: error: {one_line(error)}", file=context.err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=context.err)
        return EXIT_INTERRUPTED
