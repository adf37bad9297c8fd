"""Fan-out: work bigger than one worker invocation, spread over many (docs/fanout.md)."""

from s3torrent.fanout.builds import FanoutBuilds, Finisher
from s3torrent.fanout.records import BuildManifest
from s3torrent.fanout.store import BuildState, FanoutStore

__all__ = ["BuildManifest", "BuildState", "FanoutBuilds", "FanoutStore", "Finisher"]
