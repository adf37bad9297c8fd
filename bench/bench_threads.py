"""The engine's hashing from memory, swept over thread counts: how far each format scales.

`make bench` runs it after the S3 bench. No network and no S3: one buffer in memory, split into
as many piece-aligned parts as there are threads, each part fed to the engine
(`PieceHashBuilder.part`) on its own thread, as the worker's ranged reader does. Next to each
engine row, in the same process and on the same buffer, the hashlib floor for that format:
SHA-1 per piece (v1), SHA-256 per 16 KiB block (v2's leaves), or both, on as many threads.

Why: hashlib releases the GIL for buffers over 2 KiB, so v1 (one SHA-1 call per piece) scales
with the cores; v2 makes one SHA-256 call per 16 KiB block, and the GIL taken and dropped
around every call caps it (docs/performance.md). On 2 cores the curve is short; anyone with
more cores sees where it bends (`--threads 1,2,4,8,16`).

Every engine run's hashes are compared with the serial path (`hash_bytes`) before a number is
printed, so a fast wrong answer cannot pass.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambda_src"))

from s3torrent.torrent import MetaVersion, PieceHashBuilder, PieceHashes, hash_bytes  # noqa: E402

BLOCK = 16 * 1024
MIB = 1024 * 1024


def parse_size(text: str) -> int:
    units = {"KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def split(size: int, piece_length: int, parts: int) -> list[tuple[int, int]]:
    """`parts` runs of whole pieces covering [0, size), as even as pieces allow."""
    pieces = -(-size // piece_length)
    bounds = [min(size, round(i * pieces / parts) * piece_length) for i in range(parts + 1)]
    bounds[-1] = size
    return [(a, b) for a, b in itertools.pairwise(bounds) if a < b]


def on_threads(work: Callable[[int, int], None], runs: list[tuple[int, int]]) -> float:
    """Run `work(start, stop)` for each run on its own thread; the wall time it took."""
    threads = [threading.Thread(target=work, args=run) for run in runs]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def engine_run(
    data: memoryview, piece_length: int, version: MetaVersion, threads: int
) -> tuple[float, PieceHashes]:
    builder = PieceHashBuilder(len(data), piece_length, version)

    def work(start: int, stop: int) -> None:
        part = builder.part(start, stop)
        for offset in range(start, stop, 16 * MIB):  # the reader's GET size
            part.write(data[offset : min(stop, offset + 16 * MIB)])

    seconds = on_threads(work, split(len(data), piece_length, threads))
    return seconds, builder.finish()


def hashlib_run(data: memoryview, piece_length: int, version: MetaVersion, threads: int) -> float:
    v1, v2 = version.has_v1, version.has_v2

    def work(start: int, stop: int) -> None:
        for piece in range(start, stop, piece_length):
            end = min(stop, piece + piece_length)
            if v1:
                hashlib.sha1(data[piece:end], usedforsecurity=False).digest()
            if v2:
                for block in range(piece, end, BLOCK):
                    hashlib.sha256(data[block : min(end, block + BLOCK)]).digest()

    return on_threads(work, split(len(data), piece_length, threads))


def sweep(
    size: int, piece_length: int, versions: list[MetaVersion], counts: list[int], rounds: int
) -> list[dict[str, Any]]:
    data = memoryview(os.urandom(size))
    rows: list[dict[str, Any]] = []
    for version in versions:
        expected = hash_bytes(data, piece_length, version)
        for threads in counts:
            engine_best = floor_best = float("inf")
            for _ in range(rounds):
                seconds, hashes = engine_run(data, piece_length, version, threads)
                if hashes != expected:
                    raise SystemExit(f"{version} on {threads} threads: hashes differ from serial")
                engine_best = min(engine_best, seconds)
                floor_best = min(floor_best, hashlib_run(data, piece_length, version, threads))
            rows.append(
                {
                    "meta_version": str(version),
                    "threads": threads,
                    "engine_gb_s": size / engine_best / 1e9,
                    "hashlib_gb_s": size / floor_best / 1e9,
                }
            )
    return rows


def report(rows: list[dict[str, Any]], size: int, piece_length: int, rounds: int) -> str:
    cores = os.cpu_count() or 1
    lines = [
        f"engine thread sweep: {size // MIB} MiB from memory, {piece_length // 1024} KiB pieces,"
        f" {cores} cores; best of {rounds}; every run's hashes == the serial path's",
        "",
        f"{'format':8} {'threads':>7} {'engine GB/s':>12} {'hashlib GB/s':>13} {'engine/floor':>13}"
        f" {'scaling':>8}",
    ]
    first: dict[str, float] = {}
    for row in rows:
        version = row["meta_version"]
        first.setdefault(version, row["engine_gb_s"])
        lines.append(
            f"{version:8} {row['threads']:>7} {row['engine_gb_s']:>12.2f}"
            f" {row['hashlib_gb_s']:>13.2f} {row['engine_gb_s'] / row['hashlib_gb_s']:>12.0%}"
            f" {row['engine_gb_s'] / first[version]:>7.2f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cores = os.cpu_count() or 1
    default_counts = sorted({1, 2, cores, 2 * cores})
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("512MiB"))
    parser.add_argument("--piece-length", type=parse_size, default=parse_size("256KiB"))
    parser.add_argument("--versions", default="1,2,hybrid")
    parser.add_argument(
        "--threads",
        default=",".join(str(count) for count in default_counts),
        help="thread counts to sweep (default: 1, 2, the cores and twice the cores)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best is shown (3)")
    parser.add_argument("--json", type=Path, help="also write the rows here as JSON")
    args = parser.parse_args(argv)
    versions = [MetaVersion(name) for name in args.versions.split(",")]
    counts = [int(count) for count in args.threads.split(",")]
    rows = sweep(args.size, args.piece_length, versions, counts, args.repeat)
    print(report(rows, args.size, args.piece_length, args.repeat))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
