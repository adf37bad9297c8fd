"""`make bench`'s thread sweep runs and checks itself: every engine run equals the serial path.

No time is asserted (a timed test on a shared machine proves nothing); what is, is that every
format and thread count produced a row, that the engine's hashes were compared with the serial
path's (the script exits non-zero otherwise), and that the numbers are there to read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_threads.py"


def test_the_sweep_covers_every_format_and_thread_count(tmp_path: Path) -> None:
    results = tmp_path / "rows.json"
    # 3.3 MiB in 256 KiB pieces: a short last piece, and parts of unequal sizes.
    argv = [sys.executable, str(SCRIPT), "--size", "3.3MiB", "--threads", "1,2,3"]
    argv += ["--repeat", "1", "--json", str(results)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "every run's hashes == the serial path's" in done.stdout
    rows = json.loads(results.read_text())
    assert {(row["meta_version"], row["threads"]) for row in rows} == {
        (version, threads) for version in ("1", "2", "hybrid") for threads in (1, 2, 3)
    }
    assert all(row["engine_gb_s"] > 0 and row["hashlib_gb_s"] > 0 for row in rows)
