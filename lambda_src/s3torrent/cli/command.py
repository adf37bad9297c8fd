"""What every command shares: how it is called, how it stops, and the codes it exits with."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import IO, Any, NamedTuple

PROG = "s3torrent"
EXIT_OK = 0
EXIT_FAILED = 1  # no torrent was made, or a backfill had failures
EXIT_USAGE = 2  # argparse's own code for bad flags
EXIT_INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


class CliError(Exception):
    """A one-line reason to stop, printed on stderr."""


class UsageError(CliError):
    """Flags that do not go together: exits EXIT_USAGE, as argparse's own usage errors do."""


class CommandContext(NamedTuple):
    """Where a command writes, and where it gets its boto3 session.

    The session factory is handed in rather than imported so that `main` can pass the one
    tests replace (`cli.new_session`, to count requests) without a command importing its
    own package. A NamedTuple, not a dataclass: `dataclasses` imports `inspect`, a third of
    what `--help` would otherwise import.
    """

    out: IO[str]
    err: IO[str]
    new_session: Callable[[], Any]  # a boto3 Session; boto3 ships no type hints


Command = Callable[[argparse.Namespace, CommandContext], int]
