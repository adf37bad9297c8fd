"""A throw-away Ceph radosgw (../shared/rgw/start-rgw.sh) for tests that need a real
S3-compatible store other than moto: started as root, its keys from the script's header.

The script's monitor listens on fixed ports (3300, 6789), so one radosgw runs on a machine at a
time. Test files run in parallel processes (pytest-xdist), so `running_rgw` takes a file lock
for as long as its radosgw runs: a second file waits its turn instead of finding the ports
taken. Fixtures holding one are module-scoped, so a turn lasts one file.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.ports import free_port

RGW = Path(__file__).resolve().parents[3] / "shared" / "rgw"
ACCESS_KEY = "RGWTESTACCESSKEY0001"  # from start-rgw.sh's header
SECRET_KEY = "rgwtestsecret000000000000000000000000001"
MON_PORTS = (3300, 6789)  # start-rgw.sh's `mon host`
START_SECONDS = 180
LOCK = Path("/tmp/s3torrent-rgw.lock")
LOCK_WAIT_SECONDS = 600  # another file's radosgw tests take well under a minute


def unavailable() -> str | None:
    """Why no radosgw can be started here, or None."""
    if not (RGW / "start-rgw.sh").exists():
        return f"no {RGW}/start-rgw.sh (../shared beside the clone)"
    if shutil.which("radosgw") is None or shutil.which("ceph-mon") is None:
        return "radosgw / ceph-mon are not installed (apt-get install radosgw ceph-mon ceph-osd)"
    if os.geteuid() != 0:
        return "start-rgw.sh runs as root"
    return None


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def running_rgw(home: Path) -> Iterator[str]:
    """Start radosgw with its state in `home`, yield its endpoint URL, stop it afterwards.
    Skips where it cannot run; fails with the logs' tails when it does not come up."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with LOCK.open("w") as lock:
        _wait_for(lock)
        with _started(home) as endpoint:
            yield endpoint


def _wait_for(lock: object) -> None:
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # type: ignore[arg-type]
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                pytest.fail(f"waited {LOCK_WAIT_SECONDS} s for another test's radosgw to stop")
            time.sleep(0.5)


@contextmanager
def _started(home: Path) -> Iterator[str]:
    busy = [port for port in MON_PORTS if _listening(port)]
    if busy:
        pytest.fail(f"ports {busy} are taken: another Ceph monitor (radosgw test?) is running")
    env = {**os.environ, "RGW_HOME": str(home), "RGW_PORT": str(free_port())}
    try:
        started = subprocess.run(
            ["bash", str(RGW / "start-rgw.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
        )
        if started.returncode != 0:
            tail = ""
            for log in sorted((home / "log").glob("*.log")):
                tail += f"\n--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:])
            pytest.fail(
                f"start-rgw.sh failed ({started.returncode}):\n"
                f"{started.stdout}{started.stderr}{tail}"
            )
        yield f"http://127.0.0.1:{env['RGW_PORT']}"
    finally:
        subprocess.run(
            ["bash", str(RGW / "stop-rgw.sh")], env=env, capture_output=True, timeout=120
        )
