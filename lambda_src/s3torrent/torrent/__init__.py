"""The torrent engine: bencode, piece hashing, metainfo and magnet links, with no AWS in it.

It is fed the bytes of runs of whole pieces ("parts") and gives back a `.torrent`; it knows
nothing of S3 or HTTP (docs/engine.md). Only the standard library: a test fails otherwise.
"""

from s3torrent.torrent.errors import BencodeError, InvalidPieceLength, InvalidTorrent, TorrentError
from s3torrent.torrent.hashing import (
    MetaVersion,
    PartHasher,
    PieceHashBuilder,
    PieceHashes,
    hash_bytes,
    validate_piece_length,
)
from s3torrent.torrent.magnet import magnet_link
from s3torrent.torrent.metainfo import (
    Torrent,
    TorrentOptions,
    build_torrent,
    choose_piece_length,
    torrent_name_for_key,
)
from s3torrent.torrent.reading import read_torrent

__all__ = [
    "BencodeError",
    "InvalidPieceLength",
    "InvalidTorrent",
    "MetaVersion",
    "PartHasher",
    "PieceHashBuilder",
    "PieceHashes",
    "Torrent",
    "TorrentError",
    "TorrentOptions",
    "build_torrent",
    "choose_piece_length",
    "hash_bytes",
    "magnet_link",
    "read_torrent",
    "torrent_name_for_key",
    "validate_piece_length",
]
