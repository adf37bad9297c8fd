"""Independent references the tests compare the engine with: libtorrent's own hashes, and
the sizes around every boundary that matters."""

from __future__ import annotations

import tempfile
from pathlib import Path

import libtorrent as lt

KIB = 1024
MIB = 1024 * KIB


def libtorrent_hashes(
    data: bytes, name: str, piece_length: int, version: str = "hybrid"
) -> tuple[str, str]:
    """Info hashes libtorrent itself computes for `data` (v1, v2 hex; zeros where absent)."""
    flags = {"1": lt.create_torrent.v1_only, "2": lt.create_torrent.v2_only, "hybrid": 0}[version]
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / name).write_bytes(data)
        files = lt.file_storage()
        files.add_file(name, len(data))
        creator = lt.create_torrent(files, piece_length, flags)
        lt.set_piece_hashes(creator, folder)
        hashes = lt.torrent_info(lt.bencode(creator.generate())).info_hashes()
    return str(hashes.v1), str(hashes.v2)


def boundary_sizes(piece_length: int) -> list[int]:
    """Sizes around every boundary that matters: blocks, pieces, a few MiB."""
    return sorted(
        {
            1,
            16 * KIB - 1,
            16 * KIB,
            16 * KIB + 1,
            piece_length - 1,
            piece_length,
            piece_length + 1,
            2 * piece_length + 7,
            3 * MIB + 12_345,
        }
    )
