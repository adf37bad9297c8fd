"""`make bench` end to end on a small object: it runs, and everyone computed the same torrent.

The numbers are not asserted (a timed test on a shared machine proves nothing); what is, is
what makes them worth reading: our v1 pieces equal mktorrent's, our info hashes equal
libtorrent's, every row ran (HTTPS and far rows included, which must give the same torrent),
and, where this machine lets it, the run happened in the private network namespace the
README's numbers come from.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_hashing.py"
sys.path.insert(0, str(BENCH.parent))

from bench_hashing import private_network_argv  # noqa: E402  (the bench's own check)


def test_bench_runs_every_row_and_agrees_with_mktorrent_and_libtorrent(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    # 3.3 MiB: not a whole number of 256 KiB pieces, so the short last piece is compared too.
    argv = [sys.executable, str(BENCH), "--size", "3.3MiB", "--big", "0", "--small", "0"]
    argv += ["--repeat", "1", "--dir", str(tmp_path / "data"), "--json", str(results)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stdout

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
    if private_network_argv() is not None:
        assert "network: private network namespace, TCP cubic" in report, report
    else:
        assert "could not unshare a network namespace" in report, report

    rows = json.loads(results.read_text())
    expected = {"ours-1", "ours-2", "ours-hybrid", "ours-read", "ours-1-https", "ours-hybrid-https"}
    expected |= {"ours-1-far", "mktorrent", "lt-1", "lt-hybrid"}
    expected |= {"hashlib-sha1", "hashlib-sha256", "hashlib-both"}
    assert expected <= set(rows), sorted(rows)
    for key in expected:
        assert rows[key]["size"] == int(3.3 * 1024 * 1024)
        assert rows[key]["best"] > 0, (key, rows[key])
