"""Magnet links: parsed back with urllib, each parameter checked."""

from __future__ import annotations

import warnings
from urllib.parse import parse_qs, urlsplit

import pytest

from s3torrent.torrent.hashing import MetaVersion, hash_bytes
from s3torrent.torrent.magnet import magnet_link
from s3torrent.torrent.metainfo import Torrent, TorrentOptions, build_torrent

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import libtorrent as lt

DATA = bytes(range(256)) * 300


def make(version: MetaVersion, name: str = "object.bin", **options: object) -> Torrent:
    hashes = hash_bytes(DATA, 16 * 1024, version)
    return build_torrent(name, hashes, TorrentOptions(meta_version=version, **options))  # type: ignore[arg-type]


def params(link: str) -> dict[str, list[str]]:
    parts = urlsplit(link)
    assert parts.scheme == "magnet"
    assert parts.path == ""
    return parse_qs(parts.query, strict_parsing=True)


def test_v1_magnet() -> None:
    torrent = make(MetaVersion.V1)
    got = params(magnet_link(torrent))
    assert got == {
        "xt": [f"urn:btih:{torrent.info_hash_v1}"],
        "dn": ["object.bin"],
        "xl": [str(len(DATA))],
    }


def test_v2_magnet_uses_a_sha256_multihash() -> None:
    torrent = make(MetaVersion.V2)
    assert params(magnet_link(torrent))["xt"] == [f"urn:btmh:1220{torrent.info_hash_v2}"]


def test_hybrid_magnet_has_both_hashes_v1_first() -> None:
    torrent = make(MetaVersion.HYBRID)
    assert params(magnet_link(torrent))["xt"] == [
        f"urn:btih:{torrent.info_hash_v1}",
        f"urn:btmh:1220{torrent.info_hash_v2}",
    ]


def test_trackers_seeds_and_names_are_percent_encoded() -> None:
    trackers = (
        ("http://t.example/announce?passkey=a&b=c", "udp://u.example:80"),
        ("http://t2.example/ann#frag",),
    )
    seeds = ("https://bucket.s3.amazonaws.com/dir%20x/", "http://s.example/a+b/")
    name = "my file & more=100%+é.bin"
    link = magnet_link(make(MetaVersion.V1, name=name, trackers=trackers, web_seeds=seeds))
    query = urlsplit(link).query
    for raw in ("&b=c", "#", " ", "+b", "é"):
        assert raw not in query
    got = params(link)
    assert got["dn"] == [name]
    assert got["tr"] == [url for tier in trackers for url in tier]
    assert got["ws"] == list(seeds)


@pytest.mark.parametrize("version", list(MetaVersion))
def test_libtorrent_parses_our_magnet(version: MetaVersion) -> None:
    torrent = make(version, trackers=(("http://t.example/a?x=1&y=2",),))
    parsed = lt.parse_magnet_uri(magnet_link(torrent))
    assert parsed.name == "object.bin"
    if torrent.info_hash_v1:
        assert str(parsed.info_hashes.v1) == torrent.info_hash_v1
    if torrent.info_hash_v2:
        assert str(parsed.info_hashes.v2) == torrent.info_hash_v2
    assert list(parsed.trackers) == ["http://t.example/a?x=1&y=2"]
