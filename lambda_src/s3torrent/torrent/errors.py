"""The engine's errors: input it cannot turn into, or read as, a torrent.

A plain hierarchy with no notion of HTTP or retries: the service decides what an engine error
means for a caller (a 400, an acknowledged message, a skipped object). They are `ValueError`s,
so a pydantic validator may call the engine's own checks and keep their messages.
"""

from __future__ import annotations


class TorrentError(ValueError):
    """Base class of every error the torrent engine raises."""


class BencodeError(TorrentError):
    """Bytes that are not strict bencode (BEP 3), or a value bencode cannot encode."""


class InvalidPieceLength(TorrentError):
    """A piece length that is not a power of two of at least 16 KiB (BEP 52)."""


class InvalidTorrent(TorrentError):
    """Metainfo that does not describe a valid torrent."""


class TorrentTooLarge(InvalidTorrent):
    """Content libtorrent-based clients could not load, whatever the piece length.

    A file of 2**44 - 16 KiB + 1 bytes or more, or a `.torrent` that stays over 10 MB
    (or over libtorrent's 3,000,000 bencode items) even with pieces of 128 MiB. Raised
    before any byte is read; `size` is the offending file size, torrent size or item count.
    """

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size
