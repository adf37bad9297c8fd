"""`make bench` end to end on a small object: it runs, and everyone computed the same torrent.

The numbers are not asserted (a timed test on a shared machine proves nothing); what is, is
what makes them worth reading: our v1 pieces equal mktorrent's, our info hashes equal
libtorrent's, every row ran (HTTPS and far rows included, which must give the same torrent)
with its CPU seconds per GiB, and the report's `network:` line names the network this
machine gives: the private namespace with cubic where it can be had, else the host's with
the reason. The fallback is run too, on any machine, by asking the bench to do without the
namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench import bench_hashing  # the bench's own network detection, not a copy of it

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_hashing.py"


SIZE = int(3.3 * 1024 * 1024)
OUR_ROWS = {"ours-1", "ours-2", "ours-hybrid", "ours-read", "ours-1-https", "ours-hybrid-https"}
OUR_ROWS |= {"ours-1-far"}
PEER_ROWS = {"mktorrent", "lt-1", "lt-hybrid", "hashlib-sha1", "hashlib-sha256", "hashlib-both"}


def run_bench(tmp_path: Path, env: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """The bench on 3.3 MiB, one round: its report and its --json rows (it must succeed)."""
    results = tmp_path / "results.json"
    # 3.3 MiB: not a whole number of 256 KiB pieces, so the short last piece is compared too.
    argv = [sys.executable, str(BENCH), "--size", "3.3MiB", "--big", "0", "--small", "0"]
    argv += ["--repeat", "1", "--dir", str(tmp_path / "data"), "--json", str(results)]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=240, check=False, env=env or None
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(results.read_text())


def assert_every_row_ran_and_agrees(report: str, rows: dict[str, Any]) -> None:
    assert "DIFF" not in report, report
    for check in (
        "same  our v1 piece hashes == mktorrent's",
        "same  our v1 info_hash_v1 == libtorrent's",
        "same  our hybrid info_hash_v1 == libtorrent's",
        "same  our hybrid info_hash_v2 == libtorrent's",
        "same  our v1 (https) info_hash_v1 == libtorrent's",
        "same  our hybrid (https) info_hash_v2 == libtorrent's",
        "same  our v1 (far) info_hash_v1 == libtorrent's",
    ):
        assert check in report, report
    # Each ratio line is followed by the CPU per GiB of ours and of the others.
    for ratio in ("v1: ours / mktorrent -t 2 = ", "hybrid: ours / libtorrent hybrid = "):
        after = report.split(ratio, 1)[1].splitlines()[1]
        assert after.strip().startswith("CPU s/GiB: ours "), report
        assert "floor" in after and "libtorrent" in after, after

    assert set(rows) >= OUR_ROWS | PEER_ROWS, sorted(rows)
    for key in OUR_ROWS | PEER_ROWS:
        row = rows[key]
        assert row["size"] == SIZE
        assert row["best"] > 0, (key, row)
        assert row["cpu_s_per_gib"] > 0, (key, row)
        assert all(run["cpu_s_per_gib"] > 0 for run in row["runs"]), (key, row)
        # nginx's share: measured for our rows (in 10 ms ticks, so 0 is possible here).
        sender = row["sender_cpu_s_per_gib"]
        assert (sender is not None and sender >= 0) if key in OUR_ROWS else sender is None


def test_bench_runs_every_row_on_the_network_this_machine_gives(tmp_path: Path) -> None:
    report, rows = run_bench(tmp_path)

    assert_every_row_ran_and_agrees(report, rows)
    expected = bench_hashing.choose_network(None).line
    assert f"\nnetwork: {expected}\n" in report, report
    if expected.startswith("private network namespace, TCP cubic"):
        return
    # No namespace with cubic here: the bench ran on the host's network and said why.
    assert expected.startswith("host network, TCP "), expected
    assert "(no private network namespace: " in expected or (
        "(the private namespace's congestion control could not be set to cubic: " in expected
    ), expected


def test_bench_falls_back_to_the_host_network_without_a_private_namespace(
    tmp_path: Path,
) -> None:
    env = {**os.environ, bench_hashing.NO_PRIVATE_NETWORK: "1"}
    report, rows = run_bench(tmp_path, env)

    assert_every_row_ran_and_agrees(report, rows)
    host = bench_hashing.loopback_congestion_control()
    reason = f"no private network namespace: {bench_hashing.NO_PRIVATE_NETWORK} is set"
    assert f"\nnetwork: host network, TCP {host} ({reason})\n" in report, report


def test_a_congestion_control_the_namespace_refuses_falls_back_unless_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other way to the host's network: a namespace whose congestion control cannot be
    set. Every kernel refuses an algorithm it does not have, so the bench's default is made
    one such here; an algorithm asked for by name is an error instead."""
    try:
        bench_hashing.private_network_argv()
    except bench_hashing.NoPrivateNetwork as why:
        pytest.skip(f"no private network namespace here: {why}")
    monkeypatch.setattr(bench_hashing, "DEFAULT_CONGESTION_CONTROL", "nosuchcc")

    line = bench_hashing.choose_network(None).line

    host = bench_hashing.loopback_congestion_control()
    assert line.startswith(
        f"host network, TCP {host} (the private namespace's congestion control could not be"
        " set to nosuchcc: sysctl: [Errno 2] "
    ), line
    with pytest.raises(SystemExit, match="cannot use TCP congestion control 'nosuchcc'"):
        bench_hashing.choose_network("nosuchcc")
