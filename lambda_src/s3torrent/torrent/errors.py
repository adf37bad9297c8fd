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
    """Metainfo that does not describe a valid single-file torrent."""
