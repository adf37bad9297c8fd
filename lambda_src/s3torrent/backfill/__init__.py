"""Backfills: walk a bucket/prefix and queue a job for each object whose torrent is missing
or stale.

`steps` walks one invocation at a time, `planner` decides each listed object from the
listing alone, `progress` keeps each backfill's record and leases in DynamoDB.
"""

from s3torrent.backfill.planner import BackfillPlanner, PlannedObject
from s3torrent.backfill.progress import BackfillProgress, ProgressStore, StepClaim
from s3torrent.backfill.steps import Backfills, StepReport, scoped_prefix

__all__ = [
    "BackfillPlanner",
    "BackfillProgress",
    "Backfills",
    "PlannedObject",
    "ProgressStore",
    "StepClaim",
    "StepReport",
    "scoped_prefix",
]
