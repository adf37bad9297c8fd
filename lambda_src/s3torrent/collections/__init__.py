"""Collections: one multi-file torrent of every object under s3://BUCKET/PREFIX/.

`CollectionService` makes, reuses and describes `<PREFIX>.torrent` (service.py); what the
prefix holds comes from its listing (listing.py); the members are read as one stream of
ranged GETs pinned to their ETags (reading.py), except what the last build's hash record
still holds (records.py, kept in the deployment's table by record_store.py); the torrent
engine is reached through engine.py alone (docs/collections.md).
"""

from s3torrent.collections.listing import CollectionRef, Listing, Member, Skipped
from s3torrent.collections.service import CollectionResult, CollectionService

__all__ = [
    "CollectionRef",
    "CollectionResult",
    "CollectionService",
    "Listing",
    "Member",
    "Skipped",
]
