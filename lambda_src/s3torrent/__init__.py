"""s3torrent: BitTorrent metainfo for S3 objects."""

__version__ = "0.1.0"
