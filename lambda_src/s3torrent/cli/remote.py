"""`s3torrent create s3://BUCKET/KEY --api URL` and `s3torrent status s3://BUCKET/KEY --api URL`:
the deployed stack makes the torrent, the CLI asks for it and follows it.

An object over the API's inline size is queued (202) for the worker, which splits a big one
into parts hashed by many invocations (docs/fanout.md); `GET /torrents/...` reports the parts
done, so the CLI polls it and shows them until the build is fresh or failed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import IO, Any

from s3torrent.cli.api import ApiClient, ApiError, ApiUnreachable, connect, torrent_path
from s3torrent.cli.arguments import parse_s3_uri
from s3torrent.cli.command import EXIT_FAILED, EXIT_OK, CliError, CommandContext, UsageError
from s3torrent.cli.output import human_bytes, print_rows
from s3torrent.torrent import validate_piece_length

POLL_SECONDS = 2.0
DEFAULT_WAIT_SECONDS = 3600
MAX_TRANSIENT_ERRORS = 5  # failed polls in a row (throttled, a gateway hiccup) before giving up
LABEL_CHARS = 30  # of the key's last segment, before the progress text
DONE = frozenset({"created", "fresh"})

# `create` flags that steer the local engine or its S3 client. POST /torrents takes none of
# them, so each is refused with --api rather than silently dropped.
_LOCAL_ONLY: tuple[tuple[str, object, str, str], ...] = (
    ("output", None, "--output", "the stack stores the torrent next to the object"),
    ("force", False, "--force", "the API answers a fresh torrent as it is"),
    ("endpoint_url", None, "--endpoint-url", "the stack reads the S3 it is deployed with"),
    ("request_payer", False, "--request-payer", "POST /torrents takes no request-payer flag"),
    ("expected_bucket_owner", None, "--expected-bucket-owner", "POST /torrents takes no owner"),
    ("source_tag", None, "--source-tag", "POST /torrents takes no source tag"),
    ("source", "compute", "--source", "the stack's torrent_source setting decides"),
)


def cmd_create_remote(args: argparse.Namespace, context: CommandContext) -> int:
    """Ask the stack at --api for the torrent; wait for a queued one, showing its parts."""
    started = time.monotonic()
    refuse_local_flags(args)
    bucket, key = parse_s3_uri(args.uri, key_required=True)
    client = connect(args.api, args.region, context.new_session())
    request: dict[str, Any] = {"bucket": bucket, "key": key}
    options = torrent_options(args)
    if options:
        request["options"] = options
    answer = client.post("/torrents", request)
    if answer.status != HTTPStatus.ACCEPTED:  # made (201), fresh or custom (200) right away
        info = answer.body
        _report_created(args, str(info.get("status")), info, time.monotonic() - started, context)
        return EXIT_OK
    # Queued for the worker: follow it at the location the API gave.
    path = str(answer.body.get("location") or torrent_path(bucket, key))
    seconds = DEFAULT_WAIT_SECONDS if args.wait_seconds is None else args.wait_seconds
    if seconds == 0:
        _report_queued(args, client, bucket, key, context.out)
        return EXIT_OK
    label = key.rstrip("/").rsplit("/", 1)[-1][:LABEL_CHARS]
    progress = BuildProgress(context.err, label, enabled=not args.quiet)
    progress.show(build_state(None))  # at once: the first poll is seconds away
    # The version the job builds: a failed build of another one is not this job's end.
    version = answer.body.get("source_etag") or answer.body.get("listing_digest")
    try:
        info = wait_for_build(
            client, path, seconds, progress, first_delay=answer.retry_after, version=version
        )
    finally:
        progress.close()
    if info.get("status") == "failed":
        raise CliError(f"the build of s3://{bucket}/{key} failed: {info.get('reason')}")
    # The worker made it on our request: created, whatever the status calls it now.
    _report_created(args, "created", info, time.monotonic() - started, context)
    return EXIT_OK


def cmd_status(args: argparse.Namespace, context: CommandContext) -> int:
    """One GET of the torrent's status: exits 1 when there is none, or its build failed."""
    bucket, key = parse_s3_uri(args.uri, key_required=True)
    client = connect(args.api, args.region, context.new_session())
    # A 404 is an ApiError like any other: the API's message says whether the object or
    # only its torrent is missing (both are NoSuchKey).
    info = client.get(torrent_path(bucket, key)).body
    if args.json:
        print(json.dumps(info), file=context.out)
    else:
        print_rows(status_rows(info), context.out)
    return EXIT_FAILED if info.get("status") == "failed" else EXIT_OK


def refuse_local_flags(args: argparse.Namespace) -> None:
    """UsageError for the first flag set that only the local engine would act on."""
    for name, default, flag, why in _LOCAL_ONLY:
        if getattr(args, name) != default:
            raise UsageError(f"{flag} is not taken with --api: {why}")


def torrent_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `options` of POST /torrents the flags set; those left out keep the stack's settings."""
    options: dict[str, Any] = {}
    if args.meta_version is not None:
        options["meta_version"] = args.meta_version
    if args.piece_length is not None:
        options["piece_length"] = validate_piece_length(args.piece_length)  # before any request
    if args.tracker:
        options["trackers"] = list(args.tracker)
    if args.no_web_seeds:
        options["web_seeds"] = []
    elif args.web_seed:
        options["web_seeds"] = list(args.web_seed)
    if args.private:
        options["private"] = True
    if args.comment is not None:
        options["comment"] = args.comment
    return options


class BuildProgress:
    """`building: 5 of 16 parts` on stderr: redrawn in place on a terminal, else one line per
    change (a log or CI shows each step once, not a line every poll)."""

    def __init__(self, stream: IO[str], label: str, *, enabled: bool = True) -> None:
        self.stream = stream
        self.label = label
        self.enabled = enabled
        self.terminal = stream.isatty()
        self.started = time.monotonic()
        self.last: str | None = None
        self.shown = False

    def show(self, text: str) -> None:
        """Show the build's state now."""
        if not self.enabled:
            return
        if self.terminal:
            minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
            self.stream.write(f"\r{self.label}: {text}  {minutes}:{seconds:02d}\x1b[K")
            self.stream.flush()
            self.shown = True
        elif text != self.last:
            print(f"{self.label}: {text}", file=self.stream, flush=True)
        self.last = text

    def close(self) -> None:
        """Erase the terminal line, so what follows starts on a clean one."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def wait_for_build(
    client: ApiClient,
    path: str,
    seconds: float,
    progress: BuildProgress,
    *,
    first_delay: float | None = None,
    version: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll GET `path` until the torrent is fresh or its build failed; the last answer.

    `version`: the ETag (a collection's listing digest) the queued job builds; a failed build
    of another version (an earlier attempt) is reported as still queued, not as this end.
    """
    deadline = time.monotonic() + seconds
    delay = POLL_SECONDS if first_delay is None else first_delay
    transient = 0
    state = "queued"
    building: dict[str, Any] | None = None  # the last `building` answer
    while True:
        sleep(max(0.0, min(delay, deadline - time.monotonic())))
        delay = POLL_SECONDS
        try:
            info: dict[str, Any] | None = client.get(path).body
        except ApiError as error:
            if error.status == HTTPStatus.NOT_FOUND:
                info = None  # no torrent and no build yet: the job waits for a worker
            elif error.retryable and transient < MAX_TRANSIENT_ERRORS:
                transient += 1
                backoff = POLL_SECONDS * 2**transient
                delay = backoff if error.retry_after is None else error.retry_after
                continue
            else:
                raise
        except ApiUnreachable:
            if transient >= MAX_TRANSIENT_ERRORS:
                raise
            transient += 1
            delay = POLL_SECONDS * 2**transient
            continue
        transient = 0
        if info is not None and info.get("status") == "failed" and version is not None:
            built = info.get("source_etag") or info.get("listing_digest")
            if built != version:
                info = None  # an earlier build's failure: ours has not started yet
        if info is not None and info.get("status") in DONE | {"failed"}:
            return _with_parts_of(info, building)
        if info is not None and info.get("status") == "building":
            building = info
        state = build_state(info)
        progress.show(state)
        if time.monotonic() >= deadline:
            raise CliError(
                f"{path}: still {state} after {seconds:g} s; the stack goes on with it"
                " (`s3torrent status` follows it)"
            )


def _with_parts_of(info: dict[str, Any], building: dict[str, Any] | None) -> dict[str, Any]:
    """The final answer, with the parts of the build we watched make it.

    The worker that assembles a fan-out build writes the torrent, checks it and publishes it
    before it marks the build done; a GET in between answers `fresh` with `parts: 1` (the
    API counts only a `done` build's parts). A fresh torrent of the ETag we watched being
    built in N parts is that build's: all N parts were counted before it was written.
    """
    if (
        building is None
        or info.get("status") not in DONE
        or info.get("source_etag") != building.get("source_etag")
        or (info.get("parts") or 1) >= (building.get("parts") or 1)
    ):
        return info
    return {**info, "parts": building["parts"], "parts_done": building["parts"]}


def build_state(info: dict[str, Any] | None) -> str:
    """What a build under way is doing, in a few words (the progress line)."""
    if info is None:
        return "queued, waiting for the worker"
    if info.get("status") == "building":
        return f"building: {info.get('parts_done') or 0} of {info.get('parts')} parts"
    # stale: the old torrent is still the one stored while a single worker makes the new one
    return f"queued ({info.get('status')} torrent stored), waiting for the worker"


def status_rows(info: dict[str, Any]) -> list[tuple[str, object]]:
    """The TorrentInfo of `GET /torrents/...` as labelled rows (`status`, `create --api`)."""
    bucket = info.get("bucket")
    torrent_key = info.get("torrent_key")
    parts = info.get("parts")
    return [
        ("status", info.get("status")),
        ("object", f"s3://{bucket}/{info.get('key')}"),
        ("torrent", f"s3://{bucket}/{torrent_key}" if torrent_key else None),
        ("reason", info.get("reason")),
        ("parts", f"{info.get('parts_done') or 0} of {parts}" if parts else None),
        *_torrent_rows(info),
    ]


def _torrent_rows(info: dict[str, Any]) -> list[tuple[str, object]]:
    size, piece_length = info.get("size"), info.get("piece_length")
    return [
        ("files", info.get("files") if info.get("kind") == "collection" else None),
        ("size", f"{size} ({human_bytes(size)})" if size is not None else None),
        (
            "piece length",
            f"{piece_length} ({human_bytes(piece_length)})" if piece_length else None,
        ),
        ("pieces", _pieces(info)),
        ("meta version", info.get("meta_version")),
        ("info hash v1", info.get("info_hash_v1")),
        ("info hash v2", info.get("info_hash_v2")),
        ("source", info.get("source")),
        ("magnet", info.get("magnet")),
    ]


def _pieces(info: dict[str, Any]) -> int | None:
    # One file: ceil(size / piece length) in v1, v2 and hybrid alike (BEP 3, BEP 52). A
    # collection pads its files in v2, so its count is not the API's to give here.
    size, piece_length = info.get("size"), info.get("piece_length")
    if info.get("kind", "object") != "object" or not size or not piece_length:
        return None
    return int(-(-size // piece_length))


def _report_created(
    args: argparse.Namespace,
    outcome: str,
    info: dict[str, Any],
    seconds: float,
    context: CommandContext,
) -> None:
    out = context.out
    if info.get("parts_done") is None and outcome in ("created", "custom"):
        # Made within the request, in one pass; POST's answer leaves the count out. (A fresh
        # torrent's parts are those of the build that made it: only GET says, so null.)
        info = {**info, "parts_done": info.get("parts")}
    if args.json:
        # The API's own fields keep their names, which are the local create's where both have
        # one (bucket, key, torrent_key, size, piece_length, info hashes, magnet, source …).
        report = {
            "outcome": outcome,
            **info,
            "files": info.get("files") or 1,
            "pieces": _pieces(info),
            "seconds": round(seconds, 3),
        }
        print(json.dumps(report), file=out)
        return
    bucket, torrent_key = info.get("bucket"), info.get("torrent_key")
    if outcome == "custom":
        # Made with options other than the stack's for this caller alone: the API returned it
        # (base64, `--json`'s `torrent`) and stored nothing.
        print("made, not stored: your options differ from the stack's (--json has it)", file=out)
    else:
        verb = "up to date" if outcome == "fresh" else "wrote"
        print(f"{verb}: s3://{bucket}/{torrent_key} ({info.get('source')})", file=out)
    parts, parts_done = info.get("parts"), info.get("parts_done")
    print_rows([("parts", f"{parts_done} of {parts}" if parts_done is not None else None)], out)
    print_rows(_torrent_rows(info), out)


def _report_queued(
    args: argparse.Namespace, client: ApiClient, bucket: str, key: str, out: IO[str]
) -> None:
    uri = f"s3://{bucket}/{key}"
    if args.json:
        report = {"outcome": "queued", "bucket": bucket, "key": key, "api": client.base_url}
        print(json.dumps(report), file=out)
        return
    print(f"queued: {uri} (s3torrent status {uri} --api {client.base_url} follows it)", file=out)
