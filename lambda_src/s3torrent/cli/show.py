"""`s3torrent show FILE`: decode and describe a .torrent file, with no AWS involved."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from s3torrent.cli.command import EXIT_OK, CliError, CommandContext
from s3torrent.cli.description import describe_torrent, torrent_rows
from s3torrent.cli.output import print_rows
from s3torrent.torrent import read_torrent


def cmd_show(args: argparse.Namespace, context: CommandContext) -> int:
    """Print what a .torrent file (or stdin, `-`) says; a file that is not one is an error."""
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as error:
        raise CliError(f"cannot read {args.file}: {error.strerror or error}") from error
    torrent = read_torrent(data)
    if args.json:
        print(json.dumps(describe_torrent(torrent)), file=context.out)
    else:
        print_rows(torrent_rows(torrent), context.out)
    return EXIT_OK
