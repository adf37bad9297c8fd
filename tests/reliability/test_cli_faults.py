"""The same faults through the CLI a user runs: `s3torrent create|backfill --endpoint-url PROXY`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from s3torrent import cli
from tests.support.faults.helpers import reference_hashes, torrent_keys
from tests.support.faults.proxy import FaultKind, FaultPolicy, FaultProxy, FaultRule

pytestmark = pytest.mark.integration

_rng = random.Random(7)
OBJECTS = {
    "x/a.bin": _rng.randbytes(123_457),
    "x/b.bin": _rng.randbytes(1_000_003),
    "x/y/c.bin": _rng.randbytes(17),
    "d.bin": _rng.randbytes(9 * 1024 * 1024 + 5),  # two 8 MiB parts (the default part size)
}
RULES = [
    FaultRule(FaultKind.SLOWDOWN, rate=0.12),
    FaultRule(FaultKind.INTERNAL, rate=0.08),
    FaultRule(FaultKind.RESET, rate=0.08),
    FaultRule(FaultKind.SLOW, rate=0.05),
    FaultRule(FaultKind.SLOWDOWN, rate=0.10, methods=frozenset({"HEAD", "PUT"})),
]


@pytest.fixture
def uploaded(s3_client: Any, bucket: str) -> str:
    for key, data in OBJECTS.items():
        s3_client.put_object(Bucket=bucket, Key=key, Body=data)
    return bucket


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_create_under_faults_gives_the_right_torrent(
    fault_proxy: FaultProxy, uploaded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fault_proxy.policy = FaultPolicy(RULES, seed=3, max_consecutive=2, slow_delay=0.001)
    for key, data in OBJECTS.items():
        code, out, err = run_cli(
            ["create", f"s3://{uploaded}/{key}", "--endpoint-url", fault_proxy.url, "--json"],
            capsys,
        )
        assert code == 0, err
        report = json.loads(out)
        assert (report["info_hash_v1"], report["info_hash_v2"]) == reference_hashes(data, key)
        assert report["torrent_key"] == key + ".torrent"
    assert fault_proxy.policy.total_injected > 0
    print(f"\nFAULTS cli create: {fault_proxy.policy.summary()}")


def test_backfill_under_faults_makes_every_torrent(
    fault_proxy: FaultProxy, s3_client: Any, uploaded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fault_proxy.policy = FaultPolicy(
        [
            *RULES,
            FaultRule(
                FaultKind.SLOWDOWN, rate=0.2, methods=frozenset({"GET"}), object_gets_only=False
            ),
        ],
        seed=4,
        max_consecutive=2,
        slow_delay=0.001,
    )
    code, out, err = run_cli(
        ["backfill", f"s3://{uploaded}", "--endpoint-url", fault_proxy.url, "--json", "-q"],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["listed"] == len(OBJECTS)
    assert summary["created"] == len(OBJECTS)
    assert summary["failed"] == 0
    assert sorted(torrent_keys(s3_client, uploaded)) == sorted(k + ".torrent" for k in OBJECTS)
    for key, data in OBJECTS.items():
        from s3torrent.torrent import read_torrent

        body = s3_client.get_object(Bucket=uploaded, Key=key + ".torrent")["Body"].read()
        torrent = read_torrent(body)
        assert (torrent.info_hash_v1, torrent.info_hash_v2) == reference_hashes(data, key)
    print(f"\nFAULTS cli backfill: {fault_proxy.policy.summary()}")


@pytest.mark.slow
def test_create_against_a_store_that_never_recovers_exits_with_one_line(
    fault_proxy: FaultProxy, s3_client: Any, uploaded: str
) -> None:
    """A real `s3torrent` process: non-zero exit, one line on stderr, bounded time, no torrent."""
    fault_proxy.policy.set_rules([FaultRule(FaultKind.SLOWDOWN, key=r"^x/b\.bin$")])
    exe = Path(sys.executable).with_name("s3torrent")
    started = time.monotonic()
    done = subprocess.run(
        [str(exe), "create", f"s3://{uploaded}/x/b.bin", "--endpoint-url", fault_proxy.url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("s3torrent: error:") and "x/b.bin" in lines[0], lines[0]
    assert "SlowDown" in lines[0] or "503" in lines[0], lines[0]
    assert done.stdout == ""
    assert elapsed < 60, elapsed
    assert torrent_keys(s3_client, uploaded) == []
    print(f"\nFAULTS cli never-clearing: {fault_proxy.policy.summary()}; exit after {elapsed:.1f}s")
