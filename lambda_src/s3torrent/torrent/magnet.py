"""Magnet links (BEP 9; BEP 52 for `urn:btmh`; BEP 19 `ws` web seeds)."""

from __future__ import annotations

from urllib.parse import quote

from s3torrent.torrent.collection import CollectionTorrent
from s3torrent.torrent.metainfo import Torrent

# Multihash prefix of a SHA-256 digest: function 0x12, length 0x20 (BEP 52).
_SHA256_MULTIHASH = "1220"


def magnet_link(torrent: Torrent | CollectionTorrent) -> str:
    """The torrent's magnet link: xt (v1 and/or v2), dn, xl, then each tr and ws."""
    params: list[tuple[str, str]] = []
    if torrent.info_hash_v1 is not None:
        params.append(("xt", f"urn:btih:{torrent.info_hash_v1}"))
    if torrent.info_hash_v2 is not None:
        params.append(("xt", f"urn:btmh:{_SHA256_MULTIHASH}{torrent.info_hash_v2}"))
    params.append(("dn", torrent.name))
    params.append(("xl", str(torrent.length)))
    params.extend(("tr", url) for tier in torrent.trackers for url in tier)
    params.extend(("ws", url) for url in torrent.web_seeds)
    # The URNs are hex and colons; every other value is percent-encoded whole, as a
    # tracker or seed URL carries its own `&`, `=`, `?`, `#` and `%`.
    return "magnet:?" + "&".join(
        f"{key}={value if key == 'xt' else quote(value, safe='')}" for key, value in params
    )
