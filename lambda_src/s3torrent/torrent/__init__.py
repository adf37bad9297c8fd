"""The torrent engine: bencode, piece hashing, metainfo and magnet links, with no AWS in it.

It is fed the bytes of runs of whole pieces ("parts") and gives back a `.torrent`, of one
file or of many (a collection); it knows nothing of S3 or HTTP (docs/engine.md). Only the
standard library: a test fails otherwise.
"""

from s3torrent.torrent.collection import (
    CollectionFile,
    CollectionSize,
    CollectionTorrent,
    StreamSlice,
    V1Resume,
    build_collection_torrent,
    canonical_order,
    choose_collection_piece_length,
    collection_file_builder,
    collection_torrent_size,
    hash_collection_file,
    hash_collection_stream,
    plan_v1_resume,
    stream_slices,
)
from s3torrent.torrent.errors import (
    BencodeError,
    InvalidPieceLength,
    InvalidTorrent,
    TorrentError,
    TorrentTooLarge,
)
from s3torrent.torrent.hashing import (
    MetaVersion,
    PartHasher,
    PartHashes,
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
    fit_piece_length,
    torrent_name_for_key,
    torrent_size,
)
from s3torrent.torrent.paths import invalid_collection_keys, path_problem
from s3torrent.torrent.reading import read_collection_torrent, read_torrent

__all__ = [
    "BencodeError",
    "CollectionFile",
    "CollectionSize",
    "CollectionTorrent",
    "InvalidPieceLength",
    "InvalidTorrent",
    "MetaVersion",
    "PartHasher",
    "PartHashes",
    "PieceHashBuilder",
    "PieceHashes",
    "StreamSlice",
    "Torrent",
    "TorrentError",
    "TorrentOptions",
    "TorrentTooLarge",
    "V1Resume",
    "build_collection_torrent",
    "build_torrent",
    "canonical_order",
    "choose_collection_piece_length",
    "choose_piece_length",
    "collection_file_builder",
    "collection_torrent_size",
    "fit_piece_length",
    "hash_bytes",
    "hash_collection_file",
    "hash_collection_stream",
    "invalid_collection_keys",
    "magnet_link",
    "path_problem",
    "plan_v1_resume",
    "read_collection_torrent",
    "read_torrent",
    "stream_slices",
    "torrent_name_for_key",
    "torrent_size",
    "validate_piece_length",
]
