"""What libtorrent-based clients load by default (libtorrent 2.1.1), so we never write more.

Measured with the wheel (tests/unit/torrent/test_limits.py checks each against it):

- `torrent_info(path)` refuses a `.torrent` file over 10,000,000 bytes ("metadata too
  large"; exactly 10,000,000 loads). qBittorrent and friends load files.
- bdecode refuses more than 3,000,000 items (every int, string, list and dict is one, and
  every list and dict end one more) and nesting 100 containers deep, which caps a v2 file
  tree at 95 path segments.
- Pieces above 128 MiB are an "invalid piece size"; `file_storage.add_file` refuses a file
  of 2**44 - 16 KiB + 1 bytes or more ("File too large").
"""

from __future__ import annotations

from collections.abc import Mapping

MAX_TORRENT_SIZE = 10_000_000
"""Bytes of the largest `.torrent` file libtorrent loads by default."""

MAX_BENCODE_ITEMS = 3_000_000
"""libtorrent's default `max_decode_tokens`."""

MAX_BENCODE_DEPTH = 99
"""Deepest nesting of lists and dicts libtorrent decodes (its limit is 100, exclusive)."""

MAX_PIECE_LENGTH = 128 * 1024 * 1024
"""Largest piece length libtorrent accepts."""

MAX_FILE_SIZE = 2**44 - 16 * 1024
"""Largest file libtorrent's `file_storage` accepts."""

MAX_V2_PATH_SEGMENTS = 95
"""Deepest path a v2 file tree can hold within `MAX_BENCODE_DEPTH`."""


def count_items(value: object) -> int:
    """bdecode items in `value` once bencoded, counted as libtorrent counts its tokens."""
    if isinstance(value, Mapping):
        return 2 + sum(1 + count_items(item) for item in value.values())
    if isinstance(value, list | tuple):
        return 2 + sum(count_items(item) for item in value)
    return 1
