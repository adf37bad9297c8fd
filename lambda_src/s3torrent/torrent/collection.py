"""Multi-file torrents ("collections"): BEP 3 `files`, BEP 52 `file tree`, BEP 47 pad files.

The info dict is byte-identical to libtorrent 2.1.1's `create_torrent` for the same files,
order, piece length and flags:

- v1 (`v1_only`): the files in the order given (for a collection, S3 listing order), no pad
  files; pieces run across file boundaries, so they are the pieces of the files' bytes
  concatenated (the *stream*).
- v2 and hybrid: the order of the v2 file tree, which is the order libtorrent lists the files
  in when it loads a torrent: paths compared segment by segment, each as UTF-8 bytes. Every
  file of a torrent of two files or more starts on a piece boundary, so each file's hashes
  depend on its bytes alone. libtorrent's `create_torrent` sorts a hybrid's `files` by whole
  path instead (segments joined with `/`), which differs when a segment is a prefix of its
  neighbour's and the next byte sorts before `/` (`0/a` vs `0.x/b`): libtorrent then refuses
  its own torrent ("the v1 and v2 file metadata does not match"). We write the order it
  loads, so our info dict is libtorrent's wherever libtorrent's is loadable. Hybrid lists a pad file
  (`attr` `p`, path `.pad/<length>`) after every file whose length is not a multiple of the
  piece length, the last file included; a torrent of one file gets no pad.
- 0-byte files are listed (`length` 0, no `pieces root`, no pad, no piece layer); a torrent
  of only 0-byte files is refused, as libtorrent refuses it ("invalid length of torrent").

Hashing is `PieceHashBuilder`'s: per file for v2 and hybrid (`collection_file_builder`,
`hash_collection_file`; the results are plain `PieceHashes` a caller may store and give back),
over the stream for v1 (`stream_slices` says which file bytes make a stream range,
`plan_v1_resume` which stored pieces stay valid after the listing changed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from s3torrent.torrent.bencode import encode
from s3torrent.torrent.errors import InvalidTorrent, TorrentTooLarge
from s3torrent.torrent.hashing import (
    MetaVersion,
    PieceHashBuilder,
    PieceHashes,
    hash_bytes,
    validate_piece_length,
)
from s3torrent.torrent.limits import (
    MAX_BENCODE_DEPTH,
    MAX_BENCODE_ITEMS,
    MAX_PIECE_LENGTH,
    MAX_TORRENT_SIZE,
    count_items,
)
from s3torrent.torrent.metainfo import (
    SHA1_SIZE,
    SHA256_SIZE,
    TorrentOptions,
    check_file_size,
    checked_urls,
    choose_piece_length,
    encode_torrent,
    explicit_piece_length,
    string_growth,
)

__all__ = [
    "CollectionFile",
    "CollectionSize",
    "CollectionTorrent",
    "StreamSlice",
    "V1Resume",
    "build_collection_torrent",
    "canonical_order",
    "choose_collection_piece_length",
    "collection_file_builder",
    "collection_torrent_size",
    "hash_collection_file",
    "hash_collection_stream",
    "plan_v1_resume",
    "stream_slices",
]


@dataclass(frozen=True)
class CollectionFile:
    """One file of a collection: its path under the torrent's folder, its length, and an
    opaque `tag` (an ETag) that only says whether its content changed: never in the torrent."""

    path: tuple[str, ...]
    length: int
    tag: str = ""

    @property
    def sort_key(self) -> tuple[bytes, ...]:
        """The path as a v2 file tree orders it: segment by segment, UTF-8 bytes."""
        return tuple(segment.encode("utf-8") for segment in self.path)


@dataclass(frozen=True)
class CollectionTorrent:
    """A multi-file torrent: its bytes and what they say."""

    data: bytes
    info: bytes
    name: str
    files: tuple[CollectionFile, ...]
    """In the torrent's order, pad files left out."""
    piece_length: int
    meta_version: MetaVersion
    info_hash_v1: str | None
    info_hash_v2: str | None
    trackers: tuple[tuple[str, ...], ...]
    web_seeds: tuple[str, ...]
    v1_pieces: bytes | None
    private: bool
    comment: str | None
    created_by: str | None
    creation_date: int | None
    source: str | None
    v2_roots: tuple[bytes | None, ...] | None = None
    """Per file (None for a 0-byte file), v2 and hybrid."""
    v2_piece_layers: tuple[bytes | None, ...] | None = None
    """Per file (None for a file of one piece or less), v2 and hybrid."""

    @property
    def length(self) -> int:
        """Bytes of content, pad files not counted."""
        return sum(file.length for file in self.files)

    @property
    def num_pieces(self) -> int:
        """Pieces of the torrent (for v2 and hybrid, each file's pieces, padded)."""
        return _num_pieces(self.files, self.piece_length, self.meta_version)


@dataclass(frozen=True)
class StreamSlice:
    """Bytes [offset, offset + size) of file `index`: part of a range of the v1 stream."""

    index: int
    offset: int
    size: int


@dataclass(frozen=True)
class V1Resume:
    """What a v1 collection's stored pieces are still worth after its listing changed."""

    valid_pieces: int
    """Stored pieces [0, valid_pieces) hold for the new listing."""
    read_from: int
    """First byte of the new stream to read (valid_pieces * piece_length, or its length)."""
    length: int
    """Bytes in the new stream."""

    def combine(self, stored_pieces: bytes, rest: bytes) -> bytes:
        """The new stream's v1 pieces: the valid stored ones, then `rest`, the pieces of the
        new stream's bytes [read_from, length) hashed as one file of their own (the range
        starts on a piece boundary, so its pieces are the stream's)."""
        keep = self.valid_pieces * SHA1_SIZE
        if len(stored_pieces) < keep:
            raise ValueError(f"{len(stored_pieces)} bytes of stored pieces, {keep} needed")
        return stored_pieces[:keep] + rest


def canonical_order(files: Sequence[CollectionFile]) -> list[int]:
    """Indices of `files` in the order of a v2 file tree (the order libtorrent loads)."""
    return sorted(range(len(files)), key=lambda index: files[index].sort_key)


def check_files(files: Sequence[CollectionFile]) -> None:
    """Refuse a list of files no torrent can describe (InvalidTorrent)."""
    if not files:
        raise InvalidTorrent("a collection needs at least one file")
    seen: set[tuple[str, ...]] = set()
    folders: set[tuple[str, ...]] = set()
    for file in files:
        path = file.path
        if not path or any(
            not segment or segment in {".", ".."} or "/" in segment or "\x00" in segment
            for segment in path
        ):
            raise InvalidTorrent(f"not a file path: {path!r}")
        if isinstance(file.length, bool) or not isinstance(file.length, int) or file.length < 0:
            raise InvalidTorrent(f"file length must be a non-negative integer: {file.length!r}")
        check_file_size(file.length, "/".join(path))
        if path in seen:
            raise InvalidTorrent(f"the same path twice: {'/'.join(path)!r}")
        seen.add(path)
        folders.update(path[:end] for end in range(1, len(path)))
    clashes = seen & folders
    if clashes:
        raise InvalidTorrent(f"a path is both a file and a folder: {'/'.join(min(clashes))!r}")
    if not any(file.length for file in files):
        raise InvalidTorrent("a torrent needs at least one byte of content: every file is empty")


def _pads_files(meta_version: MetaVersion, count: int) -> bool:
    # libtorrent canonicalizes (pads every file) only with v2 and more than one file.
    return meta_version.has_v2 and count > 1


def _num_pieces(
    files: Sequence[CollectionFile], piece_length: int, meta_version: MetaVersion
) -> int:
    if meta_version is MetaVersion.V1 or len(files) == 1:
        return -(-sum(file.length for file in files) // piece_length)
    return sum(-(-file.length // piece_length) for file in files)


def collection_file_builder(
    length: int, piece_length: int, meta_version: MetaVersion
) -> PieceHashBuilder:
    """A `PieceHashBuilder` for one file of a v2 or hybrid collection (length >= 1; a 0-byte
    file's hashes are `hash_collection_file(b"", ...)`): fed by parts like a single object."""
    return PieceHashBuilder(length, piece_length, meta_version, pad_last_piece=True)


def hash_collection_file(
    data: bytes | bytearray | memoryview, piece_length: int, meta_version: MetaVersion
) -> PieceHashes:
    """One file's hashes for a v2 or hybrid collection, from its bytes in memory (serially).

    The result is plain values (ints and bytes): store it, give it back for an unchanged
    file. v1 pieces are kept both as for a single file and with the last piece zero-padded
    (`v1_padded_last_piece`), so the same record serves torrents with and without pad files.
    """
    version = MetaVersion(meta_version)
    validate_piece_length(piece_length)
    if not len(data):
        return PieceHashes(0, piece_length, version, None, None, None)
    builder = collection_file_builder(len(data), piece_length, version)
    builder.part(0, len(data)).write(data)
    return builder.finish()


def stream_slices(files: Sequence[CollectionFile], start: int, stop: int) -> list[StreamSlice]:
    """The file bytes that make bytes [start, stop) of the v1 stream (`files` in order)."""
    total = sum(file.length for file in files)
    if not 0 <= start <= stop <= total:
        raise ValueError(f"[{start}, {stop}) is not a range of a stream of {total} bytes")
    slices: list[StreamSlice] = []
    offset = 0
    for index, file in enumerate(files):
        end = offset + file.length
        if end > start and offset < stop and file.length:
            first = max(start, offset)
            slices.append(StreamSlice(index, first - offset, min(stop, end) - first))
        offset = end
        if offset >= stop:
            break
    return slices


def plan_v1_resume(
    old: Sequence[CollectionFile], new: Sequence[CollectionFile], piece_length: int
) -> V1Resume:
    """Which of a v1 collection's stored pieces hold for a new listing, and where to read.

    Every piece that lies wholly before the first file that differs (path, length or tag) is
    reused; the rest of the stream is read from that piece's start. Appending a last file reads
    the boundary piece and the new bytes; an unchanged listing reads nothing.
    """
    validate_piece_length(piece_length)
    length = sum(file.length for file in new)
    same = 0
    for before, after in zip(old, new, strict=False):
        if before != after:
            break
        same += 1
    if same == len(old) == len(new):
        return V1Resume(-(-length // piece_length), length, length)
    unchanged = sum(file.length for file in new[:same])
    valid = unchanged // piece_length
    return V1Resume(valid, valid * piece_length, length)


def _check_hashes(
    files: Sequence[CollectionFile],
    piece_length: int,
    version: MetaVersion,
    v1_pieces: bytes | None,
    file_hashes: Sequence[PieceHashes] | None,
) -> None:
    if version is MetaVersion.V1:
        if v1_pieces is None or file_hashes is not None:
            raise InvalidTorrent("a v1 collection is built from the stream's v1_pieces only")
        expected = _num_pieces(files, piece_length, version) * SHA1_SIZE
        if len(v1_pieces) != expected:
            raise InvalidTorrent(f"v1 pieces must be {expected} bytes: {len(v1_pieces)}")
        return
    if file_hashes is None or v1_pieces is not None:
        raise InvalidTorrent(f"a {version} collection is built from file_hashes only")
    if len(file_hashes) != len(files):
        raise InvalidTorrent(f"{len(file_hashes)} file hashes for {len(files)} files")
    padded = _pads_files(version, len(files))
    for file, hashes in zip(files, file_hashes, strict=True):
        where = "/".join(file.path)
        if hashes.length != file.length or hashes.piece_length != piece_length:
            raise InvalidTorrent(
                f"{where}: hashes of {hashes.length} bytes in pieces of {hashes.piece_length},"
                f" the file has {file.length} bytes in pieces of {piece_length}"
            )
        if not file.length:
            continue
        if hashes.v2_pieces_root is None or (
            file.length > piece_length and hashes.v2_piece_layer is None
        ):
            raise InvalidTorrent(f"{where}: v2 hashes missing")
        needs_padded = padded and file.length % piece_length
        if version.has_v1 and (
            hashes.v1_pieces is None or (needs_padded and hashes.v1_padded_last_piece is None)
        ):
            raise InvalidTorrent(f"{where}: v1 hashes missing (hash with pad_last_piece)")


def _file_v1_pieces(hashes: PieceHashes, padded: bool) -> bytes:
    assert hashes.v1_pieces is not None
    if padded and hashes.v1_padded_last_piece is not None:
        return hashes.v1_pieces[:-SHA1_SIZE] + hashes.v1_padded_last_piece
    return hashes.v1_pieces


@dataclass(frozen=True)
class _Encoded:
    data: bytes
    info: bytes
    order: list[int]
    v1_pieces: bytes | None
    structure_items: int
    structure_depth: int


def _encode(
    name: str,
    files: Sequence[CollectionFile],
    piece_length: int,
    version: MetaVersion,
    options: TorrentOptions,
    v1_pieces: bytes | None,
    file_hashes: Sequence[PieceHashes | None],
    *,
    pads: bool = True,
) -> _Encoded:
    order = list(range(len(files))) if version is MetaVersion.V1 else canonical_order(files)
    padded = pads and _pads_files(version, len(files))
    info: dict[str, object] = {"name": name, "piece length": piece_length}
    if options.private:
        info["private"] = 1  # BEP 27; never `private: 0`, which changes the info hash
    if options.source is not None:
        info["source"] = options.source
    top: dict[str, object] = {}
    if version.has_v1:
        entries: list[dict[str, object]] = []
        pieces: list[bytes] = []
        for index in order:
            file = files[index]
            entries.append({"length": file.length, "path": list(file.path)})
            hashes = file_hashes[index] if version.has_v2 else None
            if hashes is not None and hashes.v1_pieces is not None and file.length:
                pieces.append(_file_v1_pieces(hashes, padded))
            pad = -file.length % piece_length if padded else 0
            if pad:  # BEP 47, as libtorrent names them
                entries.append({"attr": "p", "length": pad, "path": [".pad", str(pad)]})
        info["files"] = entries
        v1_pieces = v1_pieces if version is MetaVersion.V1 else b"".join(pieces)
        info["pieces"] = v1_pieces
    if version.has_v2:
        info["meta version"] = 2
        tree: dict[str, object] = {}
        layers: dict[bytes, bytes] = {}
        for index in order:
            file = files[index]
            hashes = file_hashes[index]
            node = tree
            for segment in file.path[:-1]:
                child = node.setdefault(segment, {})
                assert isinstance(child, dict)
                node = child
            leaf: dict[str, object] = {"length": file.length}
            if file.length:
                root = hashes.v2_pieces_root if hashes is not None else None
                leaf["pieces root"] = root if root is not None else bytes(SHA256_SIZE)
                layer = hashes.v2_piece_layer if hashes is not None else None
                if file.length > piece_length and hashes is not None and layer is not None:
                    assert hashes.v2_pieces_root is not None
                    layers[hashes.v2_pieces_root] = layer
            node[file.path[-1]] = {"": leaf}
        info["file tree"] = tree
        # As libtorrent: a v2 torrent always carries `piece layers`, even empty.
        top["piece layers"] = layers
    info_bytes = encode(info)
    return _Encoded(
        data=encode_torrent(info_bytes, top, options),
        info=info_bytes,
        order=order,
        v1_pieces=v1_pieces if version.has_v1 else None,
        structure_items=count_items({**top, "info": info}),
        structure_depth=_depth(info) + 1,
    )


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    return 0


def _check_name(name: str) -> None:
    if not name or "/" in name or "\x00" in name or name in {".", ".."}:
        raise InvalidTorrent(f"torrent name must be one path segment: {name!r}")


def build_collection_torrent(
    name: str,
    files: Sequence[CollectionFile],
    options: TorrentOptions,
    *,
    piece_length: int,
    v1_pieces: bytes | None = None,
    file_hashes: Sequence[PieceHashes] | None = None,
) -> CollectionTorrent:
    """Build a multi-file v1, v2 or hybrid torrent named `name` (the collection's folder).

    `files` in listing order. v1: `v1_pieces` are the pieces of the files' bytes in that
    order (one `PieceHashBuilder` over the stream, or `V1Resume.combine`). v2 and hybrid:
    `file_hashes[i]` are `files[i]`'s (`hash_collection_file`, `collection_file_builder`);
    the torrent lists the files in libtorrent's canonical order.
    """
    _check_name(name)
    version = MetaVersion(options.meta_version)
    validate_piece_length(piece_length)
    if options.piece_length is not None and options.piece_length != piece_length:
        raise InvalidTorrent(
            f"piece length {options.piece_length} asked, content hashed with {piece_length}"
        )
    check_files(files)
    checked_urls(options)
    _check_hashes(files, piece_length, version, v1_pieces, file_hashes)
    hashes: Sequence[PieceHashes | None] = file_hashes or [None] * len(files)
    encoded = _encode(name, files, piece_length, version, options, v1_pieces, hashes)
    trackers, web_seeds = checked_urls(options)
    ordered = [files[index] for index in encoded.order]
    v2_roots = v2_layers = None
    if version.has_v2:
        in_order = [hashes[index] for index in encoded.order]
        v2_roots = tuple(h.v2_pieces_root if h is not None and h.length else None for h in in_order)
        v2_layers = tuple(
            h.v2_piece_layer if h is not None and h.length > piece_length else None
            for h in in_order
        )
    info = encoded.info
    return CollectionTorrent(
        data=encoded.data,
        info=info,
        name=name,
        files=tuple(CollectionFile(file.path, file.length) for file in ordered),
        piece_length=piece_length,
        meta_version=version,
        info_hash_v1=hashlib.sha1(info, usedforsecurity=False).hexdigest()
        if version.has_v1
        else None,
        info_hash_v2=hashlib.sha256(info).hexdigest() if version.has_v2 else None,
        trackers=trackers,
        web_seeds=web_seeds,
        v1_pieces=encoded.v1_pieces,
        private=options.private,
        comment=options.comment,
        created_by=options.created_by,
        creation_date=options.creation_date,
        source=options.source,
        v2_roots=v2_roots,
        v2_piece_layers=v2_layers,
    )


@dataclass(frozen=True)
class CollectionSize:
    """What a collection's .torrent would weigh in a client, before any byte is hashed."""

    bytes: int
    items: int
    depth: int

    @property
    def loads(self) -> bool:
        """True when libtorrent loads it with its default limits."""
        return (
            self.bytes <= MAX_TORRENT_SIZE
            and self.items <= MAX_BENCODE_ITEMS
            and self.depth <= MAX_BENCODE_DEPTH
        )


def collection_torrent_size(
    name: str, files: Sequence[CollectionFile], piece_length: int, options: TorrentOptions
) -> CollectionSize:
    """Exact size (bytes, bencode items, nesting) of the .torrent `build_collection_torrent`
    writes for these files, from their lengths alone."""
    validate_piece_length(piece_length)
    return _SizeModel(name, files, options).at(piece_length)


class _SizeModel:
    """A collection's .torrent size at any piece length: everything that does not depend on
    the piece length is encoded once (with empty pieces, no pads, no piece layers, zero
    roots), the rest is counted per piece length. Hashes are fixed-size, so this is exact."""

    _BASE = 16 * 1024

    def __init__(self, name: str, files: Sequence[CollectionFile], options: TorrentOptions):
        _check_name(name)
        check_files(files)
        checked_urls(options)
        self.files = files
        self.version = MetaVersion(options.meta_version)
        placeholders: list[PieceHashes | None] = [None] * len(files)
        encoded = _encode(
            name,
            files,
            self._BASE,
            self.version,
            replace(options, piece_length=None),
            b"" if self.version is MetaVersion.V1 else None,
            placeholders,
            pads=False,
        )
        self.bytes = len(encoded.data)
        self.items = encoded.structure_items
        self.depth = encoded.structure_depth

    def at(self, piece_length: int) -> CollectionSize:
        files, version = self.files, self.version
        size = self.bytes + len(str(piece_length)) - len(str(self._BASE))
        items = self.items
        if version.has_v1:
            size += string_growth(_num_pieces(files, piece_length, version) * SHA1_SIZE)
        if version.has_v1 and _pads_files(version, len(files)):  # pad entries: hybrid
            for file in files:
                pad = -file.length % piece_length
                if pad:
                    size += _pad_entry_size(pad)
                    items += _PAD_ENTRY_ITEMS
        if version.has_v2:
            for file in files:
                if file.length > piece_length:
                    layer = -(-file.length // piece_length) * SHA256_SIZE
                    # The root as a key (`32:` and 32 bytes), then the layer.
                    size += len(str(SHA256_SIZE)) + 1 + SHA256_SIZE
                    size += len(str(layer)) + 1 + layer
                    items += 2
        return CollectionSize(size, items, self.depth)


_PAD_ENTRY_ITEMS = count_items({"attr": "p", "length": 1, "path": [".pad", "1"]})


def _pad_entry_size(pad: int) -> int:
    return _PAD_ENTRY_SIZES[len(str(pad))]


# A pad entry's size depends only on how many digits its length has.
_PAD_ENTRY_SIZES = {
    digits: len(encode({"attr": "p", "length": 10 ** (digits - 1), "path": [".pad", "0" * digits]}))
    for digits in range(1, 12)
}


def choose_collection_piece_length(
    name: str, files: Sequence[CollectionFile], options: TorrentOptions
) -> int:
    """The piece length to hash a collection with, refused (TorrentTooLarge) before any byte
    is read when its torrent would not load in libtorrent-based clients.

    `options.piece_length` when set; otherwise libtorrent's rule on the total size
    (`choose_piece_length`), doubled while the .torrent would be over 10 MB, up to 128 MiB.
    The paths count too: a torrent of too many files fits at no piece length.
    """
    model = _SizeModel(name, files, options)
    if options.piece_length is not None:
        piece_length = explicit_piece_length(options.piece_length)
    else:
        piece_length = choose_piece_length(sum(file.length for file in files))
    while not (size := model.at(piece_length)).loads:
        if (
            options.piece_length is not None
            or piece_length >= MAX_PIECE_LENGTH
            or size.depth > MAX_BENCODE_DEPTH
        ):
            what = (
                f"{size.depth} levels of nesting (at most {MAX_BENCODE_DEPTH})"
                if size.depth > MAX_BENCODE_DEPTH
                else f"{size.bytes} bytes (at most {MAX_TORRENT_SIZE})"
                if size.bytes > MAX_TORRENT_SIZE
                else f"{size.items} bencode items (at most {MAX_BENCODE_ITEMS})"
            )
            raise TorrentTooLarge(
                f"a torrent of {len(files)} files in pieces of {piece_length} bytes takes"
                f" {what}: more than libtorrent-based clients load",
                size.bytes,
            )
        piece_length *= 2
    return piece_length


def hash_collection_stream(
    files: Sequence[CollectionFile], data: Sequence[bytes], piece_length: int
) -> bytes:
    """v1 pieces of the files' bytes in order (serially, in memory): the reference path."""
    if len(data) != len(files):
        raise ValueError(f"{len(data)} contents for {len(files)} files")
    return hash_bytes(b"".join(data), piece_length, MetaVersion.V1).v1_pieces or b""
