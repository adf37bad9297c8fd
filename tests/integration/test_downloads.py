"""The download helpers the end-to-end tests use fail in bounded time when nothing delivers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from s3torrent.torrent import MetaVersion, TorrentOptions, build_torrent, hash_bytes
from tests.support.downloads import libtorrent_download
from tests.support.ports import free_port


def test_a_libtorrent_download_nothing_serves_fails_within_its_timeout(tmp_path: Path) -> None:
    data = b"nobody serves these bytes" * 1000
    options = TorrentOptions(web_seeds=(f"http://127.0.0.1:{free_port()}/",))
    torrent = build_torrent("x.bin", hash_bytes(data, 16384, MetaVersion.V1), options)
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="did not finish"):
        libtorrent_download(torrent.data, tmp_path, timeout=3)
    assert time.monotonic() - started < 3 + 15
