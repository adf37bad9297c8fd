"""`make run` / `s3torrent serve`: ready in well under a minute, its printed commands work when
pasted, Ctrl-C stops it cleanly, a busy port is a clear error."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import pytest

from s3torrent_local.demo import DOWNLOAD_DIR, SAMPLE_KEY, sample_bytes
from tests.support.ports import free_port
from tests.support.stack import Stack, client_env, start_serve, wait_for_torrent

pytestmark = pytest.mark.e2e


def pasted_commands(banner: list[str]) -> list[str]:
    """The shell lines the banner tells a user to paste (indented, after "Try it")."""
    start = next(n for n, line in enumerate(banner) if line.startswith("Try it"))
    return [line.strip() for line in banner[start + 1 :] if line.startswith("  ")]


def test_ready_well_under_a_minute(stack: Stack) -> None:
    banner = stack.process.banner()
    printed = float(re.match(r"ready in ([\d.]+) s", banner[0]).group(1))  # type: ignore[union-attr]
    print(f"ready in {stack.ready_seconds:.1f} s (serve says {printed:.1f} s)")
    assert stack.ready_seconds < 60
    assert any(stack.s3_url in line for line in banner)
    assert any(stack.api_url in line for line in banner)


def test_printed_commands_work_when_pasted(stack: Stack, tmp_path: Path) -> None:
    banner = stack.process.banner()
    commands = pasted_commands(banner)
    assert [c.split()[0] for c in commands][:2] == ["export", "head"]
    # A shell with nothing of ours: the banner's own export line must be enough.
    env = {k: v for k, v in client_env().items() if not k.startswith("AWS_ACCESS")}
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    script = "set -euo pipefail\n" + "\n".join(commands) + "\n"
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, f"{script}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"

    # get-object-torrent wrote the stored torrent; aria2c got the sample through its web seed.
    stored = stack.s3().get_object(Bucket="demo", Key=SAMPLE_KEY + ".torrent")["Body"].read()
    assert (tmp_path / f"{SAMPLE_KEY}.torrent").read_bytes() == stored
    assert (tmp_path / DOWNLOAD_DIR / SAMPLE_KEY).read_bytes() == sample_bytes()
    # curl printed the torrent's status, whose magnet link is the one in the banner.
    status = json.loads(done.stdout[done.stdout.index("{") :])
    assert status["key"] == SAMPLE_KEY
    assert any(status["magnet"] in line for line in banner if "magnet" in line)
    # The upload got its torrent too.
    s3 = stack.s3()
    wait_for_torrent(s3, "demo", "hello.bin")


def test_ctrl_c_stops_cleanly_with_ports_from_the_environment() -> None:
    s3_port, api_port = free_port(), free_port()
    process = start_serve(s3_port=s3_port, api_port=api_port)
    process.wait_ready()
    assert any(f"http://127.0.0.1:{s3_port}" in line for line in process.banner())
    code = process.stop()  # SIGINT, as Ctrl-C sends
    assert code == 0, process.output
    assert process.lines[-1] == "stopped"
    for port in (s3_port, api_port):  # both servers are gone
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", port))


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        process = start_serve(s3_port=busy.getsockname()[1])
        code = process.process.wait(30)
    assert code == 1
    assert "cannot listen" in process.output
    assert "S3TORRENT_S3_PORT" in process.output
