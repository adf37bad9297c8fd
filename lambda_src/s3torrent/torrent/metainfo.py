"""Single-file metainfo (.torrent): what a torrent is, and building one from piece hashes.

BEP 3 (v1), BEP 52 (v2), hybrid (both in one info dict), BEP 12 tracker tiers, BEP 19 web
seeds, BEP 27 private flag. The info dict is byte-identical to libtorrent's for the same
name, content, piece length and flags, so info hashes agree with every mainstream client.
Reading a torrent from bytes is `reading.py`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from s3torrent.torrent.bencode import encode
from s3torrent.torrent.errors import InvalidPieceLength, InvalidTorrent, TorrentTooLarge
from s3torrent.torrent.hashing import (
    MIN_PIECE_LENGTH,
    MetaVersion,
    PieceHashes,
    validate_piece_length,
)
from s3torrent.torrent.limits import (
    MAX_FILE_SIZE,
    MAX_PIECE_LENGTH,
    MAX_TORRENT_SIZE,
)

__all__ = [
    "MAX_AUTO_PIECE_LENGTH",
    "MIN_PIECE_LENGTH",
    "Torrent",
    "TorrentOptions",
    "build_torrent",
    "choose_piece_length",
    "fit_piece_length",
    "torrent_name_for_key",
    "torrent_size",
    "validate_piece_length",
]

MAX_AUTO_PIECE_LENGTH = 16 * 1024 * 1024

# libtorrent's automatic rule (create_torrent.cpp), so `--piece-length auto` gives what
# its users get: the piece length is the smallest 16 KiB * 2**i whose size bound below is
# at least the content's size, capped at 16 MiB. Each bound is (2 * piece / 20) ** 2: the
# list of SHA-1 hashes grows like twice the square root of the size, so a 1 GiB object
# gets 512 KiB pieces (2048 pieces, a 40 KiB `pieces` string), 1 TiB gets 16 MiB pieces.
# The bounds are libtorrent's own rounded values; tests check the rule against libtorrent.
_AUTO_SIZE_BOUNDS = (
    2_684_355,  # -> 16 KiB
    10_737_418,  # -> 32 KiB
    42_949_673,  # -> 64 KiB
    171_798_692,  # -> 128 KiB
    687_194_767,  # -> 256 KiB
    2_748_779_069,  # -> 512 KiB
    10_995_116_278,  # -> 1 MiB
    43_980_465_111,  # -> 2 MiB
    175_921_860_444,  # -> 4 MiB
    703_687_441_777,  # -> 8 MiB, above: 16 MiB
)

SHA1_SIZE = 20
SHA256_SIZE = 32


def choose_piece_length(size: int) -> int:
    """Automatic piece length for `size` bytes: libtorrent's rule (see `_AUTO_SIZE_BOUNDS`)."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise InvalidTorrent(f"cannot choose a piece length for a size of {size!r} bytes")
    steps = sum(1 for bound in _AUTO_SIZE_BOUNDS if bound < size)
    return MIN_PIECE_LENGTH << steps


def string_growth(size: int) -> int:
    """How much longer a bencoded string of `size` bytes is than the empty one (`0:`)."""
    return len(str(size)) + size - 1


def check_file_size(length: int, what: str) -> None:
    """Refuse a file libtorrent's `file_storage` refuses ("File too large")."""
    if length > MAX_FILE_SIZE:
        raise TorrentTooLarge(
            f"{what} of {length} bytes is larger than libtorrent-based clients load"
            f" ({MAX_FILE_SIZE} bytes at most)",
            length,
        )


def explicit_piece_length(piece_length: int) -> int:
    """An asked piece length, refused when it is not one libtorrent accepts."""
    validate_piece_length(piece_length)
    if piece_length > MAX_PIECE_LENGTH:
        raise InvalidPieceLength(
            f"piece length must be at most {MAX_PIECE_LENGTH} bytes (libtorrent): {piece_length}"
        )
    return piece_length


@dataclass(frozen=True)
class TorrentOptions:
    """Everything about a torrent that does not come from the content."""

    meta_version: MetaVersion = MetaVersion.V1
    piece_length: int | None = None
    trackers: tuple[tuple[str, ...], ...] = ()
    web_seeds: tuple[str, ...] = ()
    private: bool = False
    source: str | None = None
    comment: str | None = None
    created_by: str | None = "s3torrent"
    creation_date: int | None = None


@dataclass(frozen=True)
class Torrent:
    """A single-file torrent: its bytes and what they say."""

    data: bytes
    info: bytes
    name: str
    length: int
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
    v2_pieces_root: bytes | None = None
    v2_piece_layer: bytes | None = None

    @property
    def num_pieces(self) -> int:
        """ceil(length / piece_length)."""
        return -(-self.length // self.piece_length)

    def piece_size(self, index: int) -> int:
        """Bytes in piece `index` (only the last one may be short)."""
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range 0..{self.num_pieces - 1}")
        return min(self.piece_length, self.length - index * self.piece_length)

    def v1_piece_hash(self, index: int) -> bytes:
        """The 20-byte SHA-1 of piece `index` (v1 and hybrid torrents)."""
        if self.v1_pieces is None:
            raise InvalidTorrent("a v2-only torrent has no v1 piece hashes")
        self.piece_size(index)
        return self.v1_pieces[index * SHA1_SIZE : (index + 1) * SHA1_SIZE]


def torrent_size(name: str, length: int, piece_length: int, options: TorrentOptions) -> int:
    """Exact size in bytes of the single-file .torrent `build_torrent` writes, before hashing."""
    version = MetaVersion(options.meta_version)
    pieces = -(-length // piece_length)
    placeholder = PieceHashes(
        length=length,
        piece_length=piece_length,
        meta_version=version,
        v1_pieces=b"" if version.has_v1 else None,
        v2_pieces_root=bytes(SHA256_SIZE) if version.has_v2 else None,
        v2_piece_layer=b"" if version.has_v2 else None,
    )
    size = len(build_torrent(name, placeholder, replace(options, piece_length=None)).data)
    if version.has_v1:
        size += string_growth(SHA1_SIZE * pieces)
    if version.has_v2 and length > piece_length:
        size += string_growth(SHA256_SIZE * pieces)
    return size


def fit_piece_length(name: str, length: int, options: TorrentOptions) -> int:
    """The piece length to hash a single file with, refused before any byte is read when the
    torrent would not load in libtorrent-based clients.

    `options.piece_length` when set; otherwise libtorrent's rule (`choose_piece_length`),
    doubled while the .torrent would be over 10 MB, up to 128 MiB (limits.py).
    """
    check_file_size(length, "a file")
    if options.piece_length is not None:
        piece_length = explicit_piece_length(options.piece_length)
    else:
        piece_length = choose_piece_length(length)
    while (size := torrent_size(name, length, piece_length, options)) > MAX_TORRENT_SIZE:
        if options.piece_length is not None or piece_length >= MAX_PIECE_LENGTH:
            raise TorrentTooLarge(
                f"a torrent of {length} bytes in pieces of {piece_length} bytes takes {size}"
                f" bytes, over the {MAX_TORRENT_SIZE} libtorrent-based clients load",
                size,
            )
        piece_length *= 2
    return piece_length


def torrent_name_for_key(key: str) -> str:
    """The torrent's `name` for an object key: its last segment (BEP 19 appends it to seeds)."""
    name = key.rsplit("/", 1)[-1]
    _check_name(name, key)
    return name


def _check_name(name: str, key: str | None = None) -> None:
    where = f" (key {key!r})" if key is not None and key != name else ""
    if not name:
        raise InvalidTorrent(f"torrent name must not be empty{where}")
    if "/" in name or "\x00" in name or name in {".", ".."}:
        raise InvalidTorrent(f"torrent name must be one path segment: {name!r}{where}")


def build_torrent(name: str, hashes: PieceHashes, options: TorrentOptions) -> Torrent:
    """Build a single-file v1, v2 or hybrid torrent from the content's piece hashes."""
    _check_name(name)
    version = MetaVersion(options.meta_version)
    if options.piece_length is not None and options.piece_length != hashes.piece_length:
        raise InvalidTorrent(
            f"piece length {options.piece_length} asked, content hashed with {hashes.piece_length}"
        )
    validate_piece_length(hashes.piece_length)
    if hashes.length <= 0:
        raise InvalidTorrent(f"a torrent needs at least one byte of content: {hashes.length}")
    if version.has_v1 and hashes.v1_pieces is None:
        raise InvalidTorrent(f"meta version {version} needs v1 piece hashes")
    if version.has_v2 and hashes.v2_pieces_root is None:
        raise InvalidTorrent(f"meta version {version} needs v2 piece hashes")
    trackers, web_seeds = checked_urls(options)

    info: dict[str, object] = {"name": name, "piece length": hashes.piece_length}
    if options.private:
        info["private"] = 1  # BEP 27; never `private: 0`, which changes the info hash
    if options.source is not None:
        info["source"] = options.source
    v1_pieces = None
    if version.has_v1:
        v1_pieces = hashes.v1_pieces
        info["length"] = hashes.length
        info["pieces"] = v1_pieces
    top: dict[str, object] = {}
    root = layer = None
    if version.has_v2:
        root = hashes.v2_pieces_root
        info["meta version"] = 2
        info["file tree"] = {name: {"": {"length": hashes.length, "pieces root": root}}}
        # BEP 52: a piece layer only for a file larger than one piece. As libtorrent, the
        # `piece layers` dict itself is always written (empty for a one-piece file).
        layers: dict[bytes, bytes] = {}
        if hashes.length > hashes.piece_length:
            layer = hashes.v2_piece_layer
            if layer is None or root is None:
                raise InvalidTorrent("a v2 file larger than a piece needs its piece layer")
            layers[root] = layer
        top["piece layers"] = layers
    info_bytes = encode(info)
    data = encode_torrent(info_bytes, top, options)
    return Torrent(
        data=data,
        info=info_bytes,
        name=name,
        length=hashes.length,
        piece_length=hashes.piece_length,
        meta_version=version,
        info_hash_v1=hashlib.sha1(info_bytes, usedforsecurity=False).hexdigest()
        if version.has_v1
        else None,
        info_hash_v2=hashlib.sha256(info_bytes).hexdigest() if version.has_v2 else None,
        trackers=trackers,
        web_seeds=web_seeds,
        v1_pieces=v1_pieces,
        private=options.private,
        comment=options.comment,
        created_by=options.created_by,
        creation_date=options.creation_date,
        source=options.source,
        v2_pieces_root=root,
        v2_piece_layer=layer,
    )


def checked_urls(
    options: TorrentOptions,
) -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]:
    """The options' tracker tiers and web seeds, refused when a URL is empty."""
    trackers = tuple(tuple(tier) for tier in options.trackers)
    for tier in trackers:
        if not tier or not all(tier):
            raise InvalidTorrent(f"tracker tiers must hold non-empty URLs: {tier!r}")
    web_seeds = tuple(options.web_seeds)
    if not all(web_seeds):
        raise InvalidTorrent(f"web seeds must be non-empty URLs: {web_seeds!r}")
    return trackers, web_seeds


def encode_torrent(info_bytes: bytes, top: dict[str, object], options: TorrentOptions) -> bytes:
    """The whole .torrent: `info_bytes` spliced in as they are, `top` and the options around."""
    trackers, web_seeds = checked_urls(options)
    top = {**top, "info": _Raw(info_bytes)}
    if trackers:
        top["announce"] = trackers[0][0]
        # As libtorrent: announce-list only when there is more than one URL.
        if sum(len(tier) for tier in trackers) > 1:
            top["announce-list"] = [list(tier) for tier in trackers]
    if web_seeds:
        # As libtorrent: a single web seed is written as a string, several as a list.
        top["url-list"] = web_seeds[0] if len(web_seeds) == 1 else list(web_seeds)
    if options.comment is not None:
        top["comment"] = options.comment
    if options.created_by is not None:
        top["created by"] = options.created_by
    if options.creation_date is not None:
        top["creation date"] = options.creation_date
    return _encode_with_raw(top)


@dataclass(frozen=True)
class _Raw:
    """Bytes already bencoded, spliced in as they are."""

    data: bytes


def _encode_with_raw(top: dict[str, object]) -> bytes:
    # Encode the top-level dict with the info dict spliced in byte for byte, so `info`
    # is exactly the bytes that were hashed.
    out = bytearray(b"d")
    for key in sorted(top, key=lambda k: k.encode("utf-8")):
        out += encode(key)
        value = top[key]
        out += value.data if isinstance(value, _Raw) else encode(value)
    out += b"e"
    return bytes(out)
