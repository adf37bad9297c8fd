"""The buckets of the local stack: created, made publicly readable, and wired to the worker queue.

Only buckets in the settings' allowlist get torrents (as deployed): each gets a bucket policy
that lets anyone GET its objects (web seeds are unsigned GETs; on AWS that takes a public
bucket or a CDN) and an ObjectCreated/ObjectRemoved notification to the worker queue. A
watcher re-wires an allowlisted bucket that is deleted and created again, and says once that a
bucket outside the allowlist gets no torrents. Notifications someone removed from a bucket the
watcher already wired stay removed (that is how a bucket "without events" is made for backfills).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from s3torrent.settings import BucketScope

log = logging.getLogger("s3torrent_local")


def public_read_policy(bucket: str) -> str:
    """A bucket policy letting anonymous clients GET every object (web seeds, `.torrent`s)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "LocalWebSeeds",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }
    )


def notification_configuration(scopes: Sequence[BucketScope], queue_arn: str) -> dict[str, Any]:
    """ObjectCreated/ObjectRemoved to the worker queue, one rule per distinct prefix."""
    prefixes = {scope.prefix for scope in scopes}
    if "" in prefixes:
        prefixes = {""}
    rules: list[dict[str, Any]] = []
    for prefix in sorted(prefixes):
        rule: dict[str, Any] = {
            "Id": f"s3torrent-{prefix or 'all'}"[:255],
            "QueueArn": queue_arn,
            "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
        }
        if prefix:
            rule["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
        rules.append(rule)
    return {"QueueConfigurations": rules}


class BucketWiring:
    """Keeps every allowlisted bucket existing, public-read and sending events to the worker."""

    def __init__(self, s3: Any, scopes: Sequence[BucketScope], queue_arn: str) -> None:
        self._s3 = s3
        self._queue_arn = queue_arn
        self._scopes: dict[str, list[BucketScope]] = {}
        for scope in scopes:
            self._scopes.setdefault(scope.name, []).append(scope)
        self._wired: set[tuple[str, datetime]] = set()
        self._told: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bucket-watcher", daemon=True)

    def create_missing(self) -> None:
        """Create the allowlisted buckets that do not exist yet, then wire them."""
        existing = {bucket["Name"] for bucket in self._s3.list_buckets().get("Buckets", [])}
        for name in self._scopes:
            if name not in existing:
                self._s3.create_bucket(Bucket=name)
        self.sync()

    def sync(self) -> None:
        """Wire each allowlisted bucket not wired since it was (re)created."""
        for bucket in self._s3.list_buckets().get("Buckets", []):
            name, created = bucket["Name"], bucket["CreationDate"]
            if name not in self._scopes:
                if name not in self._told:
                    self._told.add(name)
                    log.info(
                        "bucket   %s is not in the allowlist: no torrents for it "
                        "(restart with --bucket %s)",
                        name,
                        name,
                    )
                continue
            if (name, created) in self._wired:
                continue
            self._s3.put_bucket_policy(Bucket=name, Policy=public_read_policy(name))
            self._s3.put_bucket_notification_configuration(
                Bucket=name,
                NotificationConfiguration=notification_configuration(
                    self._scopes[name], self._queue_arn
                ),
            )
            self._wired.add((name, created))

    def start(self, interval: float = 1.0) -> None:
        self._interval = interval
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sync()
            except Exception:
                if not self._stop.is_set():
                    log.exception("bucket watcher: could not list or wire buckets")
