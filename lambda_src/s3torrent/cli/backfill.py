"""`s3torrent backfill s3://BUCKET[/PREFIX]`: make every missing or stale torrent, `--jobs` at
once, and count what it cost.

The listing and the decisions are the Lambda backfill's own (BackfillPlanner); only the
driving differs: a thread pool here, SQS messages there.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from s3torrent.backfill import BackfillPlanner, PlannedObject
from s3torrent.cli.arguments import parse_s3_uri
from s3torrent.cli.command import EXIT_FAILED, EXIT_OK, PROG, CommandContext
from s3torrent.cli.output import human_bytes, one_line
from s3torrent.cli.wiring import object_ref, service_for, settings_from_args
from s3torrent.model import ObjectRef, Outcome, TorrentResult
from s3torrent.service import TorrentService

LIVE_INTERVAL = 0.2  # seconds between redraws of the running counts


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
        """The `--json` report."""
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
        """The counts on one line (running on a terminal, and at the end)."""
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
        """Count every request this boto3 client sends from now on."""
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
                # At most two objects queued per worker: a long listing must not become
                # a long queue of futures held in memory.
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


def cmd_backfill(args: argparse.Namespace, context: CommandContext) -> int:
    """Backfill a prefix and report counts; exit 1 when any object failed."""
    out, err = context.out, context.err
    bucket, prefix = parse_s3_uri(args.uri, key_required=False)
    settings = settings_from_args(args, context, bucket, prefix)
    service = service_for(settings, context, concurrency=args.jobs)
    counter = RequestCounter()
    counter.attach(service.objects.client)
    if service.objects.data_client is not service.objects.client:
        counter.attach(service.objects.data_client)
    live = not args.json and not args.quiet and err.isatty()
    last_drawn = 0.0

    def on_update(summary: BackfillSummary) -> None:
        nonlocal last_drawn
        now = time.monotonic()
        if live and now - last_drawn >= LIVE_INTERVAL:
            last_drawn = now
            err.write(f"\r{summary.line()} ")
            err.flush()

    def on_failure(key: str, error: BaseException) -> None:
        if live:
            err.write("\r\x1b[K")
        print(f"{PROG}: failed s3://{bucket}/{key}: {one_line(error)}", file=err)

    summary = run_backfill(
        service,
        bucket,
        prefix,
        jobs=args.jobs,
        ref_for=lambda key: object_ref(args, bucket, key),
        on_update=on_update,
        on_failure=on_failure,
    )
    summary.requests = counter.counts
    if service.objects.connections is not None and service.objects.connections.requests_sent:
        # Ranged GETs sent straight over HTTP (s3/direct.py) never reach botocore's events.
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
