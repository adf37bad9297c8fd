"""Which keys cannot be files of a collection: paths libtorrent would rewrite or refuse.

libtorrent 2.1.1 sanitizes every path segment of a torrent it loads (measured in
tests/unit/torrent/test_paths.py): it removes NUL, `\\` and invisible formatting characters
(U+061C, U+200B-U+200F, U+202A-U+202E, U+2060-U+2064, U+2066-U+2069, U+FEFF), replaces control
characters (U+0001-U+001F, U+007F-U+009F) with `_`, renames empty, `.` and `..` segments to
`_`, truncates segments longer than 240 bytes, renames a file that is also a folder (`a` next to
`a/b` becomes `a.1`) and the second of two paths equal but for ASCII case (`a.B` after `a.b`
becomes `a.1.B`; `é` and `É` are left alone). A client would then save the file under another
name than the key, and a web seed request would miss it: such keys are left out, with the
reason.
Characters Windows refuses (`:`, `*`, `?`, ...) are kept as they are by libtorrent: so are they.
"""

from __future__ import annotations

from collections.abc import Iterable

from s3torrent.torrent.hashing import MetaVersion
from s3torrent.torrent.limits import MAX_V2_PATH_SEGMENTS

__all__ = ["MAX_SEGMENT_BYTES", "invalid_collection_keys", "path_problem"]

MAX_SEGMENT_BYTES = 240
"""libtorrent truncates a path segment longer than this (UTF-8 bytes)."""

_REMOVED = frozenset(
    [
        0x00,
        0x5C,
        0x061C,
        0xFEFF,
        *range(0x200B, 0x2010),
        *range(0x202A, 0x202F),
        *range(0x2060, 0x2065),
        *range(0x2066, 0x206A),
    ]
)
_ASCII_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}
_REPLACED = frozenset([*range(0x01, 0x20), *range(0x7F, 0xA0)])


def path_problem(path: tuple[str, ...], meta_version: MetaVersion) -> str | None:
    """Why libtorrent would not keep `path` (segments under the collection) as it is, or None."""
    if not path:
        return "an empty path"
    if MetaVersion(meta_version).has_v2 and len(path) > MAX_V2_PATH_SEGMENTS:
        return (
            f"{len(path)} path segments: deeper than libtorrent reads in a v2 file tree"
            f" ({MAX_V2_PATH_SEGMENTS})"
        )
    for segment in path:
        if not segment:
            return "an empty path segment (libtorrent renames it '_')"
        if segment in {".", ".."}:
            return f"a {segment!r} path segment (libtorrent renames it '_')"
        try:
            size = len(segment.encode("utf-8"))
        except UnicodeEncodeError:
            return f"segment {segment!r} is not valid Unicode"
        for char in segment:
            code = ord(char)
            if code in _REMOVED:
                return f"character U+{code:04X} in {segment!r} (libtorrent removes it)"
            if code in _REPLACED:
                return f"control character U+{code:04X} in {segment!r} (libtorrent writes '_')"
        if size > MAX_SEGMENT_BYTES:
            return (
                f"a path segment of {size} bytes (libtorrent truncates beyond {MAX_SEGMENT_BYTES})"
            )
    return None


def invalid_collection_keys(
    keys: Iterable[str], meta_version: MetaVersion = MetaVersion.HYBRID
) -> dict[str, str]:
    """The keys (relative to the collection's prefix) that cannot be its files, each with
    the reason; every other key is a file whose path is the key split on `/`."""
    problems: dict[str, str] = {}
    files: dict[tuple[str, ...], str] = {}
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            problems[key] = "listed twice"
            continue
        seen.add(key)
        if not key or key.endswith("/"):
            problems[key] = "a folder marker, not a file"
            continue
        path = tuple(key.split("/"))
        problem = path_problem(path, meta_version)
        if problem is not None:
            problems[key] = problem
            continue
        files[path] = key
    folders = {path[:end] for path in files for end in range(1, len(path))}
    for path in sorted(folders & files.keys()):
        problems[files.pop(path)] = "also a folder of other keys (libtorrent renames the file)"
    # The first in UTF-8 order (S3's listing order, and the file tree's) keeps its name.
    kept: dict[str, str] = {}
    for key in sorted(files.values(), key=lambda key: key.encode("utf-8")):
        first = kept.setdefault(key.translate(_ASCII_LOWER), key)
        if first != key:
            problems[key] = f"equal to {first!r} but for case (libtorrent renames it)"
    return problems
