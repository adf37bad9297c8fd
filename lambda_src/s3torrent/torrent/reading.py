"""Reading a single-file torrent from bytes, from anywhere: validated, never trusted.

Ours, libtorrent's or a store's (radosgw writes its top-level keys out of order and names the
torrent after the whole key): BEP 3 (v1), BEP 52 (v2, piece layers checked against their
roots) and hybrid. `read_torrent` reads single-file torrents and refuses multi-file ones,
`read_collection_torrent` the reverse.
"""

from __future__ import annotations

import hashlib
from typing import Any

from s3torrent.torrent.bencode import BencodeValue, decode, dict_spans
from s3torrent.torrent.collection import CollectionFile, CollectionTorrent, canonical_order
from s3torrent.torrent.errors import BencodeError, InvalidPieceLength, InvalidTorrent
from s3torrent.torrent.hashing import BLOCK_SIZE, MetaVersion, merkle_root, validate_piece_length
from s3torrent.torrent.metainfo import SHA1_SIZE, SHA256_SIZE, Torrent

_MULTI_FILE = "multi-file torrents are not supported: read them with read_collection_torrent"


def _top_and_info(
    data: bytes,
) -> tuple[dict[bytes, BencodeValue], dict[bytes, BencodeValue], bytes]:
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
    return top, info, data[start:end]


def read_torrent(data: bytes) -> Torrent:
    """Decode and validate a single-file torrent from anywhere (BEP 3, BEP 52)."""
    top, info, info_bytes = _top_and_info(data)
    if b"files" in info:
        raise InvalidTorrent(_MULTI_FILE)

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
    return Torrent(
        data=data,
        info=info_bytes,
        name=name,
        length=length,
        piece_length=piece_length,
        **_described(top, info, info_bytes, has_v1, has_v2),
        v1_pieces=v1_pieces,
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
        raise InvalidTorrent(_MULTI_FILE)
    ((entry_name, node),) = tree.items()
    if not isinstance(node, dict) or set(node) != {b""}:
        raise InvalidTorrent(_MULTI_FILE)
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


def read_collection_torrent(data: bytes) -> CollectionTorrent:
    """Decode and validate a multi-file torrent (BEP 3 `files`, BEP 52 `file tree`, BEP 47
    pad files); a hybrid's two file lists must agree and its pad files be libtorrent's."""
    top, info, info_bytes = _top_and_info(data)
    name = _text(info, b"name", "info.name", required=True)
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

    files: list[CollectionFile] = []
    v1_pieces: bytes | None = None
    if has_v1:
        entries = info.get(b"files")
        if not isinstance(entries, list):
            raise InvalidTorrent("a single-file torrent: read it with read_torrent")
        files, stream = _read_v1_files(entries, piece_length, aligned=has_v2)
        v1_pieces = _bytes(info, b"pieces", "info.pieces")
        expected = -(-stream // piece_length)
        if len(v1_pieces) != expected * SHA1_SIZE:
            raise InvalidTorrent(
                f"info.pieces must be {expected} hashes of 20 bytes for {stream} bytes:"
                f" {len(v1_pieces)} bytes"
            )
    roots: tuple[bytes | None, ...] | None = None
    layers: tuple[bytes | None, ...] | None = None
    if has_v2:
        if info.get(b"meta version") != 2:
            raise InvalidTorrent(f"unsupported info.meta version: {info.get(b'meta version')!r}")
        tree = info.get(b"file tree")
        if not isinstance(tree, dict) or not tree:
            raise InvalidTorrent("info.file tree is missing or empty")
        found: list[tuple[CollectionFile, bytes | None]] = []
        _walk_tree(tree, (), found)
        if len(found) == 1 and not found[0][0].path[:-1] and b"files" not in info:
            raise InvalidTorrent("a single-file torrent: read it with read_torrent")
        order = canonical_order([file for file, _ in found])
        found = [found[index] for index in order]
        tree_files = [file for file, _ in found]
        if has_v1 and tree_files != sorted(files, key=lambda file: file.sort_key):
            raise InvalidTorrent("hybrid torrent: info.files and the file tree differ")
        if has_v1 and files != tree_files:
            # libtorrent compares the two lists file by file: it refuses this torrent too.
            raise InvalidTorrent("hybrid torrent: info.files is not in the file tree's order")
        files = tree_files
        roots = tuple(root for _, root in found)
        layers = tuple(_read_layer(top, file, root, piece_length) for file, root in found)
    if not files or not any(file.length for file in files):
        raise InvalidTorrent("a torrent needs at least one byte of content")
    return CollectionTorrent(
        data=data,
        info=info_bytes,
        name=name,
        files=tuple(files),
        piece_length=piece_length,
        **_described(top, info, info_bytes, has_v1, has_v2),
        v1_pieces=v1_pieces,
        v2_roots=roots,
        v2_piece_layers=layers,
    )


def _read_path(value: BencodeValue | None, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidTorrent(f"{what} must be a non-empty list: {value!r:.80}")
    return tuple(_decode_text(segment, what) for segment in value)


def _read_v1_files(
    entries: list[BencodeValue], piece_length: int, *, aligned: bool
) -> tuple[list[CollectionFile], int]:
    # `aligned` (hybrid): every file starts on a piece boundary, as the v2 tree needs.
    files: list[CollectionFile] = []
    stream = 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidTorrent(f"info.files entries must be dicts: {entry!r:.80}")
        length = _int(entry, b"length", "info.files length")
        if length < 0:
            raise InvalidTorrent(f"info.files length must not be negative: {length}")
        path = _read_path(entry.get(b"path"), "info.files path")
        attr = entry.get(b"attr", b"")
        if not isinstance(attr, bytes):
            raise InvalidTorrent(f"info.files attr must be a string: {attr!r:.80}")
        if b"p" in attr:  # BEP 47: a pad file, zeros no one downloads
            if stream % piece_length + length != piece_length or not files:
                raise InvalidTorrent(f"pad file of {length} bytes does not end a piece")
        else:
            if aligned and stream % piece_length:
                raise InvalidTorrent(f"{'/'.join(path)!r} does not start on a piece boundary")
            files.append(CollectionFile(path, length))
        stream += length
    if aligned and len(files) > 1 and stream % piece_length:
        raise InvalidTorrent("hybrid torrent: the last file is not padded to a piece boundary")
    return files, stream


def _walk_tree(
    node: dict[bytes, BencodeValue],
    path: tuple[str, ...],
    found: list[tuple[CollectionFile, bytes | None]],
) -> None:
    for raw, child in node.items():
        segment = _decode_text(raw, "file tree entry")
        if not segment or not isinstance(child, dict):
            raise InvalidTorrent(f"bad file tree entry {raw!r:.80} under {'/'.join(path)!r}")
        here = (*path, segment)
        if b"" in child:
            leaf = child[b""]
            if len(child) != 1 or not isinstance(leaf, dict):
                raise InvalidTorrent(f"file tree: {'/'.join(here)!r} is a file and a folder")
            length = _int(leaf, b"length", "file tree length")
            if length < 0:
                raise InvalidTorrent(f"file tree length must not be negative: {length}")
            root = None
            if length:
                root = _bytes(leaf, b"pieces root", "file tree pieces root")
                if len(root) != SHA256_SIZE:
                    raise InvalidTorrent(f"pieces root must be 32 bytes: {len(root)}")
            found.append((CollectionFile(here, length), root))
        else:
            _walk_tree(child, here, found)


def _read_layer(
    top: dict[bytes, BencodeValue], file: CollectionFile, root: bytes | None, piece_length: int
) -> bytes | None:
    if file.length <= piece_length:
        return None
    assert root is not None
    layers = top.get(b"piece layers")
    if not isinstance(layers, dict) or root not in layers:
        raise InvalidTorrent(f"piece layer missing for {'/'.join(file.path)!r}")
    layer = layers[root]
    pieces = -(-file.length // piece_length)
    if not isinstance(layer, bytes) or len(layer) != pieces * SHA256_SIZE:
        raise InvalidTorrent(f"piece layer of {'/'.join(file.path)!r} is not {pieces} hashes")
    nodes = [layer[i : i + SHA256_SIZE] for i in range(0, len(layer), SHA256_SIZE)]
    piece_level = (piece_length // BLOCK_SIZE).bit_length() - 1
    if merkle_root(nodes, 1 << (pieces - 1).bit_length(), piece_level) != root:
        raise InvalidTorrent(f"piece layer of {'/'.join(file.path)!r} does not hash to its root")
    return layer


def _described(
    top: dict[bytes, BencodeValue],
    info: dict[bytes, BencodeValue],
    info_bytes: bytes,
    has_v1: bool,
    has_v2: bool,
) -> dict[str, Any]:
    """What a single-file and a multi-file torrent say alike: the meta version, the info
    hashes of the info dict's bytes as written, and the optional fields."""
    private_flag = info.get(b"private", 0)
    if not isinstance(private_flag, int):
        raise InvalidTorrent(f"info.private must be an integer: {private_flag!r}")
    creation_date = top.get(b"creation date")
    return {
        "meta_version": (
            MetaVersion.HYBRID
            if has_v1 and has_v2
            else MetaVersion.V2
            if has_v2
            else MetaVersion.V1
        ),
        "info_hash_v1": (
            hashlib.sha1(info_bytes, usedforsecurity=False).hexdigest() if has_v1 else None
        ),
        "info_hash_v2": hashlib.sha256(info_bytes).hexdigest() if has_v2 else None,
        "trackers": _read_trackers(top),
        "web_seeds": _read_web_seeds(top),
        "private": private_flag == 1,
        "comment": _text(top, b"comment", "comment"),
        "created_by": _text(top, b"created by", "created by"),
        "creation_date": creation_date if isinstance(creation_date, int) else None,
        "source": _text(info, b"source", "info.source"),
    }
