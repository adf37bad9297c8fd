"""`s3torrent serve` (and `make run`): the whole service on this machine, in the foreground."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

from s3torrent.errors import InvalidInput
from s3torrent.settings import BucketScope, KeptCollection
from s3torrent_local.demo import StartupError, banner, seed_sample
from s3torrent_local.stack import LocalStack, StackConfig, parse_collection, parse_scope

log = logging.getLogger("s3torrent_local")

DEMO_BUCKET = "demo"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return port


def _scope(text: str) -> BucketScope:
    try:
        return parse_scope(text)
    except InvalidInput as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _collection(text: str) -> KeptCollection:
    try:
        return parse_collection(text)
    except InvalidInput as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="s3torrent serve",
        description=(
            "Run s3torrent on this machine: an embedded S3-compatible endpoint (moto), the S3 "
            "-> queue -> worker path, backfills, and the HTTP API, all on loopback. Settings "
            "come from S3TORRENT_* variables, as on Lambda."
        ),
    )
    parser.add_argument(
        "--s3-port",
        type=_port,
        default=_port(env.get("S3TORRENT_S3_PORT", "5000")),
        help="port of the S3/SQS/DynamoDB endpoint (env S3TORRENT_S3_PORT, default 5000; 0: any)",
    )
    parser.add_argument(
        "--api-port",
        type=_port,
        default=_port(env.get("S3TORRENT_API_PORT", "8000")),
        help="port of the HTTP API (env S3TORRENT_API_PORT, default 8000; 0: any)",
    )
    parser.add_argument(
        "--bucket",
        dest="buckets",
        action="append",
        type=_scope,
        default=[],
        metavar="NAME[/PREFIX]",
        help="another bucket (or prefix) to keep torrents for; created if missing; repeatable "
        f"(bucket {DEMO_BUCKET!r} is always there)",
    )
    parser.add_argument(
        "--collection",
        dest="collections",
        action="append",
        type=_collection,
        default=[],
        metavar="BUCKET/PREFIX/",
        help="a collection to keep current: its PREFIX.torrent is rebuilt "
        "S3TORRENT_COLLECTION_DELAY_SECONDS (default 30) after a change under it; repeatable",
    )
    parser.add_argument(
        "--workers", type=int, default=4, help="concurrent worker invocations (default 4)"
    )
    parser.add_argument(
        "--stage", help="the API stage name, also accepted as a path prefix (default prod)"
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", action="store_true", help="also the handlers' logs and metrics"
    )
    verbosity.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings after the ready banner"
    )
    return parser


def _configure_console(verbose: bool, quiet: bool) -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    return handler


def main(argv: list[str] | None = None) -> int:
    """Run the local stack until SIGINT/SIGTERM; 0 after a clean stop, 1 if it cannot start."""
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # "ready" must reach a pipe at once
    console = _configure_console(args.verbose, args.quiet)
    started = time.monotonic()
    stop = _stop_on_signals()
    config = StackConfig(
        s3_port=args.s3_port,
        api_port=args.api_port,
        buckets=tuple(dict.fromkeys([BucketScope(name=DEMO_BUCKET), *args.buckets])),
        collections=tuple(dict.fromkeys(args.collections)),
        workers=max(1, args.workers),
        handler_log_level="INFO" if args.verbose else "WARNING",
        metrics=args.verbose,
    )
    if args.stage:
        config = dataclasses.replace(config, stage=args.stage)
    try:
        stack = LocalStack(config)
    except OSError as error:
        print(
            f"s3torrent serve: cannot listen on 127.0.0.1 ({error.strerror}); pick other ports "
            "with --s3-port/--api-port or S3TORRENT_S3_PORT/S3TORRENT_API_PORT",
            file=sys.stderr,
        )
        return 1
    try:
        settings = stack.start()
        sample = seed_sample(stack.client("s3"), stack.api_url, DEMO_BUCKET)
        buckets = [f"{scope.name}/{scope.prefix}".rstrip("/") for scope in settings.buckets]
        text = banner(stack.s3_url, stack.api_url, buckets, sample, time.monotonic() - started)
        console.acquire()  # no log line from a worker thread lands inside the banner
        try:
            print(text)
        finally:
            console.release()
        while not stop.wait(0.5):
            pass
    except (StartupError, ImportError) as error:
        print(f"s3torrent serve: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()  # from here on, a (second) Ctrl-C exits at once
        print("stopping ...")
        stack.stop()
        print("stopped")
        # Exit would otherwise spend seconds collecting moto's and botocore's objects.
        gc.freeze()
    return 0


def _stop_on_signals() -> threading.Event:
    """SIGINT/SIGTERM set the returned event (and interrupt a start-up); a second one exits."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return stop  # embedded in a test or a thread: the caller stops it

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


if __name__ == "__main__":
    sys.exit(main())
