"""Real clients downloading through web seeds alone: aria2c, and libtorrent in a child process.

libtorrent runs in a process of its own, killed at its timeout: a session stuck inside the
C++ library holds the GIL-free thread pytest-timeout's signal cannot interrupt, so an
in-process download that deadlocks would hang the whole suite instead of failing one test.
Run as a module (`python -m tests.support.downloads TORRENT INTO SECONDS`) it is that child.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

GRACE_SECONDS = 15  # start-up and shut-down of the child, on top of the download's own time


def aria2c(torrent: Path, into: Path) -> None:
    """aria2c with every peer source off: only the torrent's url-list can deliver."""
    command = [
        "aria2c", "--seed-time=0", "--enable-dht=false", "--enable-dht6=false",
        "--bt-enable-lpd=false", "--enable-peer-exchange=false", "--bt-stop-timeout=30",
        "--check-integrity=true", "--allow-overwrite=true", "--summary-interval=0",
        "--console-log-level=warn", f"--dir={into}", str(torrent),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"aria2c exited {done.returncode}:\n{done.stdout}\n{done.stderr}"


def libtorrent_download(torrent: bytes, into: Path, timeout: float = 60) -> None:
    """libtorrent downloads `torrent` into `into` until it seeds (pytest.fail otherwise)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "download.torrent"
        path.write_bytes(torrent)
        command = [sys.executable, "-m", "tests.support.downloads", str(path), str(into)]
        try:
            done = subprocess.run(
                [*command, str(timeout)],
                capture_output=True,
                text=True,
                timeout=timeout + GRACE_SECONDS,
            )
        except subprocess.TimeoutExpired as expired:  # killed: stuck inside libtorrent
            pytest.fail(f"libtorrent hung past {timeout} s and was killed: {expired.stderr!r}")
    if done.returncode != 0:
        pytest.fail(f"libtorrent did not finish: {done.stdout}{done.stderr}")


def _download(torrent: Path, into: Path, timeout: float) -> int:
    """The child: a session on loopback with DHT, LSD, UPnP and NAT-PMP off, until it seeds.

    A web seed request that fails is retried after `urlseed_wait_retry` (30 s by default): a
    busy moto answering one range late would stall the download past any sane timeout.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import libtorrent as lt

    session = lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "urlseed_wait_retry": 1,
            "alert_mask": lt.alert_category.error | lt.alert_category.peer,
        }
    )
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(lt.bdecode(torrent.read_bytes()))
    params.save_path = str(into)
    handle = session.add_torrent(params)
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while not handle.status().is_seeding:
        messages += [alert.message() for alert in session.pop_alerts()]
        if time.monotonic() > deadline:
            print(f"not finished in {timeout} s: {messages[-8:]}")
            return 1
        time.sleep(0.05)
    session.remove_torrent(handle)
    return 0


if __name__ == "__main__":
    sys.exit(_download(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])))
