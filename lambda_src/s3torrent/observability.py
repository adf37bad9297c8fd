"""The Powertools logger, tracer and metrics every handler shares, and the metric names.

One instance of each per process (Powertools keeps metric state per namespace anyway), so a
handler module, the worker and the backfill walk all log and count into the same invocation.
"""

from __future__ import annotations

import enum

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from s3torrent.model import TorrentResult

SERVICE = "s3torrent"
NAMESPACE = "s3torrent"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


class Metric(enum.StrEnum):
    """Every metric s3torrent publishes (EMF, namespace `s3torrent`)."""

    TORRENTS_CREATED = "TorrentsCreated"
    TORRENTS_FRESH = "TorrentsFresh"
    TORRENTS_SKIPPED = "TorrentsSkipped"
    TORRENTS_FAILED = "TorrentsFailed"
    TORRENTS_DELETED = "TorrentsDeleted"
    BYTES_HASHED = "BytesHashed"
    HASH_SECONDS = "HashSeconds"
    GET_REQUESTS = "GetRequests"
    RANGE_RETRIES = "RangeRetries"


def count(metric: Metric, value: float = 1) -> None:
    """Add `value` to a count metric of this invocation."""
    metrics.add_metric(name=metric.value, unit=MetricUnit.Count, value=value)


def record_result(result: TorrentResult) -> None:
    """Publish the metrics of one service call (what was done, and what it cost when it hashed)."""
    outcome_metric = {
        "created": Metric.TORRENTS_CREATED,
        "fresh": Metric.TORRENTS_FRESH,
        "skipped": Metric.TORRENTS_SKIPPED,
        "deleted": Metric.TORRENTS_DELETED,
    }.get(result.outcome.value)
    if outcome_metric is not None:
        count(outcome_metric)
    counters = result.counters
    if counters.bytes_read:
        metrics.add_metric(
            name=Metric.BYTES_HASHED.value, unit=MetricUnit.Bytes, value=counters.bytes_read
        )
        metrics.add_metric(
            name=Metric.HASH_SECONDS.value, unit=MetricUnit.Seconds, value=counters.seconds
        )
    if counters.get_requests:
        count(Metric.GET_REQUESTS, counters.get_requests)
    if counters.retries:
        count(Metric.RANGE_RETRIES, counters.retries)
