"""A torrent described for people (`show`, `create`) and for scripts (`--json`)."""

from __future__ import annotations

from typing import Any

from s3torrent.cli.output import human_bytes
from s3torrent.torrent import Torrent, magnet_link


def describe_torrent(torrent: Torrent) -> dict[str, Any]:
    """The JSON description of a torrent (`show --json`, and part of `create --json`)."""
    return {
        "name": torrent.name,
        "size": torrent.length,
        "piece_length": torrent.piece_length,
        "pieces": torrent.num_pieces,
        "meta_version": str(torrent.meta_version),
        "info_hash_v1": torrent.info_hash_v1,
        "info_hash_v2": torrent.info_hash_v2,
        "private": torrent.private,
        "trackers": [list(tier) for tier in torrent.trackers],
        "web_seeds": list(torrent.web_seeds),
        "comment": torrent.comment,
        "created_by": torrent.created_by,
        "creation_date": torrent.creation_date,
        "source_tag": torrent.source,
        "magnet": magnet_link(torrent),
    }


def torrent_rows(torrent: Torrent) -> list[tuple[str, object]]:
    """The same description as labelled rows, for `print_rows`."""
    rows: list[tuple[str, object]] = [
        ("name", torrent.name),
        ("size", f"{torrent.length} ({human_bytes(torrent.length)})"),
        ("piece length", f"{torrent.piece_length} ({human_bytes(torrent.piece_length)})"),
        ("pieces", torrent.num_pieces),
        ("meta version", str(torrent.meta_version)),
        ("info hash v1", torrent.info_hash_v1),
        ("info hash v2", torrent.info_hash_v2),
        ("private", "yes" if torrent.private else None),
        ("source tag", torrent.source),
        ("comment", torrent.comment),
        ("created by", torrent.created_by),
        ("creation date", torrent.creation_date),
    ]
    for number, tier in enumerate(torrent.trackers, 1):
        rows.append(("tracker", f"tier {number}: {' '.join(tier)}"))
    rows.extend(("web seed", url) for url in torrent.web_seeds)
    rows.append(("magnet", magnet_link(torrent)))
    return rows
