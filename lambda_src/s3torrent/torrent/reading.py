"""Reading a single-file torrent from bytes, from anywhere: validated, never trusted.

Ours, libtorrent's or a store's (radosgw writes its top-level keys out of order and names the
torrent after the whole key): BEP 3 (v1), BEP 52 (v2, piece layers checked against their
roots) and hybrid. Multi-file torrents are refused.
"""

from __future__ import annotations

import hashlib

from s3torrent.torrent.bencode import BencodeValue, decode, dict_spans
from s3torrent.torrent.errors import BencodeError, InvalidPieceLength, InvalidTorrent
from s3torrent.torrent.hashing import BLOCK_SIZE, MetaVersion, merkle_root, validate_piece_length
from s3torrent.torrent.metainfo import SHA1_SIZE, SHA256_SIZE, Torrent


def read_torrent(data: bytes) -> Torrent:
    """Decode and validate a single-file torrent from anywhere (BEP 3, BEP 52)."""
    try:
        # Top-level keys in any order: radosgw writes them unsorted. The info hash is
        # taken from the info dict's bytes as they appear, whatever their order.
        top = decode(data, sorted_keys=False)
        if not isinstance(top, dict):
            raise InvalidTorrent("not a torrent: the top level is not a dict")
        spans = dict_spans(data, sorted_keys=False)
    except BencodeError as error:
        raise InvalidTorrent(f"not a torrent: {error}") from error
    info = top.get(b"info")
    if not isinstance(info, dict):
        raise InvalidTorrent("not a torrent: no info dict")
    start, end = spans[b"info"]
    info_bytes = data[start:end]
    if b"files" in info:
        raise InvalidTorrent("multi-file torrents are not supported")

    name = _text(info, b"name", "info.name", required=True)
    assert name is not None
    if not name:
        raise InvalidTorrent("info.name is empty")
    piece_length = _int(info, b"piece length", "info.piece length")
    try:
        validate_piece_length(piece_length)
    except InvalidPieceLength as error:
        raise InvalidTorrent(str(error)) from error

    has_v1 = b"pieces" in info
    has_v2 = b"meta version" in info or b"file tree" in info
    if not has_v1 and not has_v2:
        raise InvalidTorrent("info has neither pieces (v1) nor a file tree (v2)")

    length: int | None = None
    v1_pieces: bytes | None = None
    if has_v1:
        length = _int(info, b"length", "info.length")
        if length <= 0:
            raise InvalidTorrent(f"info.length must be positive: {length}")
        v1_pieces = _bytes(info, b"pieces", "info.pieces")
        if len(v1_pieces) % SHA1_SIZE:
            raise InvalidTorrent(
                f"info.pieces must be a multiple of 20 bytes long: {len(v1_pieces)}"
            )
        expected = -(-length // piece_length)
        if len(v1_pieces) // SHA1_SIZE != expected:
            raise InvalidTorrent(
                f"info.pieces holds {len(v1_pieces) // SHA1_SIZE} hashes, a length of"
                f" {length} in pieces of {piece_length} needs {expected}"
            )

    root: bytes | None = None
    layer: bytes | None = None
    if has_v2:
        v2_length, root, layer = _read_v2(top, info, name, piece_length)
        if length is not None and length != v2_length:
            raise InvalidTorrent(
                f"hybrid torrent: info.length {length} differs from the file tree's {v2_length}"
            )
        length = v2_length
    assert length is not None
    version = (
        MetaVersion.HYBRID if has_v1 and has_v2 else MetaVersion.V2 if has_v2 else MetaVersion.V1
    )
    private_flag = info.get(b"private", 0)
    if not isinstance(private_flag, int):
        raise InvalidTorrent(f"info.private must be an integer: {private_flag!r}")
    creation_date = top.get(b"creation date")
    return Torrent(
        data=data,
        info=info_bytes,
        name=name,
        length=length,
        piece_length=piece_length,
        meta_version=version,
        info_hash_v1=hashlib.sha1(info_bytes, usedforsecurity=False).hexdigest()
        if has_v1
        else None,
        info_hash_v2=hashlib.sha256(info_bytes).hexdigest() if has_v2 else None,
        trackers=_read_trackers(top),
        web_seeds=_read_web_seeds(top),
        v1_pieces=v1_pieces,
        private=private_flag == 1,
        comment=_text(top, b"comment", "comment"),
        created_by=_text(top, b"created by", "created by"),
        creation_date=creation_date if isinstance(creation_date, int) else None,
        source=_text(info, b"source", "info.source"),
        v2_pieces_root=root,
        v2_piece_layer=layer,
    )


def _read_v2(
    top: dict[bytes, BencodeValue], info: dict[bytes, BencodeValue], name: str, piece_length: int
) -> tuple[int, bytes, bytes | None]:
    meta_version = info.get(b"meta version")
    if meta_version != 2:
        raise InvalidTorrent(f"unsupported info.meta version: {meta_version!r}")
    tree = info.get(b"file tree")
    if not isinstance(tree, dict) or not tree:
        raise InvalidTorrent("info.file tree is missing or empty")
    if len(tree) != 1:
        raise InvalidTorrent("multi-file torrents are not supported")
    ((entry_name, node),) = tree.items()
    if not isinstance(node, dict) or set(node) != {b""}:
        raise InvalidTorrent("multi-file torrents are not supported")
    if entry_name != name.encode("utf-8"):
        raise InvalidTorrent(f"file tree entry {entry_name!r} differs from info.name {name!r}")
    leaf = node[b""]
    if not isinstance(leaf, dict):
        raise InvalidTorrent("file tree leaf is not a dict")
    length = _int(leaf, b"length", "file tree length")
    if length <= 0:
        raise InvalidTorrent(f"file tree length must be positive: {length}")
    root = _bytes(leaf, b"pieces root", "file tree pieces root")
    if len(root) != SHA256_SIZE:
        raise InvalidTorrent(f"pieces root must be 32 bytes: {len(root)}")
    if length <= piece_length:
        return length, root, None
    layers = top.get(b"piece layers")
    if not isinstance(layers, dict) or root not in layers:
        raise InvalidTorrent("piece layers are missing for a file larger than a piece")
    layer = layers[root]
    pieces = -(-length // piece_length)
    if not isinstance(layer, bytes) or len(layer) != pieces * SHA256_SIZE:
        size = len(layer) if isinstance(layer, bytes) else type(layer).__name__
        raise InvalidTorrent(
            f"piece layer must be {pieces} hashes of 32 bytes for a length of {length}: {size}"
        )
    nodes = [layer[i : i + SHA256_SIZE] for i in range(0, len(layer), SHA256_SIZE)]
    piece_level = (piece_length // BLOCK_SIZE).bit_length() - 1
    if merkle_root(nodes, 1 << (pieces - 1).bit_length(), piece_level) != root:
        raise InvalidTorrent("piece layer does not hash to the pieces root")
    return length, root, layer


def _read_trackers(top: dict[bytes, BencodeValue]) -> tuple[tuple[str, ...], ...]:
    tiers = top.get(b"announce-list")
    if isinstance(tiers, list) and tiers:
        result = []
        for tier in tiers:
            if not isinstance(tier, list):
                raise InvalidTorrent(f"announce-list tiers must be lists: {tier!r}")
            urls = tuple(_decode_text(url, "announce-list") for url in tier)
            if urls:
                result.append(urls)
        if result:
            return tuple(result)
    announce = _text(top, b"announce", "announce")
    return ((announce,),) if announce else ()


def _read_web_seeds(top: dict[bytes, BencodeValue]) -> tuple[str, ...]:
    seeds = top.get(b"url-list")
    if seeds is None:
        return ()
    if isinstance(seeds, bytes):
        return (_decode_text(seeds, "url-list"),) if seeds else ()
    if isinstance(seeds, list):
        return tuple(_decode_text(seed, "url-list") for seed in seeds if seed != b"")
    raise InvalidTorrent(f"url-list must be a string or a list: {seeds!r}")


def _int(mapping: dict[bytes, BencodeValue], key: bytes, what: str) -> int:
    value = mapping.get(key)
    if not isinstance(value, int):
        raise InvalidTorrent(f"{what} must be an integer: {value!r}")
    return value


def _bytes(mapping: dict[bytes, BencodeValue], key: bytes, what: str) -> bytes:
    value = mapping.get(key)
    if not isinstance(value, bytes):
        raise InvalidTorrent(f"{what} must be a byte string: {type(value).__name__}")
    return value


def _text(
    mapping: dict[bytes, BencodeValue], key: bytes, what: str, *, required: bool = False
) -> str | None:
    value = mapping.get(key)
    if value is None and not required:
        return None
    return _decode_text(value, what)


def _decode_text(value: BencodeValue | None, what: str) -> str:
    if not isinstance(value, bytes):
        raise InvalidTorrent(f"{what} must be a string: {value!r:.80}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidTorrent(f"{what} is not UTF-8: {value!r:.80}") from error
