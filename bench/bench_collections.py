"""`make bench` (collections): one torrent of a tree of many small files and a few big ones.

The tree (default 2,000 files of 256 KiB and 3 of 256 MiB, random bytes, generated under /tmp
once and reused) is served by nginx as a loopback S3-compatible endpoint (nginx_s3.py), and
hashed by:
- ours, v1 and hybrid: the production collection path, `collections.hashing.hash_collection`
  (ranged GETs pinned with If-Match, v1 as one stream of the files end to end, hybrid one file
  after another) on `wiring.build_service(settings)`'s objects, then the torrent built; the
  listing is not timed (nginx cannot list: the members come from the tree, with nginx's ETags);
- libtorrent `create_torrent` (the venv wheel) v1 and hybrid, and `mktorrent -t 2` (v1),
  reading the same files from the page cache.
Every run is a fresh child process, best of --repeat (median in brackets). The hybrid info
hashes of ours and libtorrent's are compared (both in libtorrent's canonical order), as are
the v1 info hashes of ours and mktorrent's (both in byte order).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambda_src"))

BUCKET = "bench"
NAME = "set1"
KiB, MiB = 1024, 1024 * 1024


def parse_size(text: str) -> int:
    units = {"K": KiB, "M": MiB, "G": 1024 * MiB}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def ensure_tree(root: Path, files: int, size: int, large: int, large_size: int) -> Path:
    """root/bench/set1/{small/NNNNN.bin, large/N.bin}, made once per shape."""
    tree = root / BUCKET / NAME
    wanted = {f"small/{i:05}.bin": size for i in range(files)}
    wanted.update({f"large/{i}.bin": large_size for i in range(large)})
    existing = {
        str(path.relative_to(tree)): path.stat().st_size
        for path in tree.rglob("*")
        if path.is_file()
    }
    if existing != wanted:
        shutil.rmtree(tree, ignore_errors=True)
        for relative, length in wanted.items():
            path = tree / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as out:
                for start in range(0, length, 16 * MiB):
                    out.write(os.urandom(min(16 * MiB, length - start)))
    for path in tree.rglob("*"):  # into the page cache
        if path.is_file():
            with path.open("rb") as data:
                while data.read(16 * MiB):
                    pass
    return tree


def child_ours(job: dict[str, Any]) -> dict[str, Any]:
    from s3torrent.collections.hashing import hash_collection
    from s3torrent.collections.listing import CollectionRef, Member
    from s3torrent.model import TransferCounters
    from s3torrent.settings import Settings
    from s3torrent.torrent import MetaVersion, TorrentOptions
    from s3torrent.wiring import build_service

    tree = Path(job["tree"])
    ref = CollectionRef(BUCKET, NAME + "/")
    members = []
    for path in sorted(tree.rglob("*"), key=lambda p: str(p.relative_to(tree)).encode()):
        if path.is_file():
            stat = path.stat()
            relative = str(path.relative_to(tree))
            etag = f'"{int(stat.st_mtime):x}-{stat.st_size:x}"'  # nginx's ETag
            members.append(
                Member(ref.prefix + relative, tuple(relative.split("/")), stat.st_size, etag)
            )
    service = build_service(Settings(endpoint_url=job["endpoint"]))
    options = TorrentOptions(
        meta_version=MetaVersion(job["meta"]),
        piece_length=job["piece_length"],
        created_by=None,
        creation_date=None,
    )
    counters = TransferCounters()
    cpu = time.process_time()
    began = time.perf_counter()
    torrent, _record = hash_collection(
        service.objects, ref, members, options, job["piece_length"], counters
    )
    return {
        "seconds": time.perf_counter() - began,
        "cpu": time.process_time() - cpu,
        "bytes_read": counters.bytes_read,
        "get_requests": counters.get_requests,
        "info_hash_v1": torrent.info_hash_v1,
        "info_hash_v2": torrent.info_hash_v2,
    }


def child_libtorrent(job: dict[str, Any]) -> dict[str, Any]:
    import libtorrent as lt

    tree = Path(job["tree"])
    cpu = time.process_time()
    began = time.perf_counter()
    storage = lt.file_storage()
    lt.add_files(storage, str(tree))
    flags = lt.create_torrent.v1_only if job["meta"] == "1" else 0
    creator = lt.create_torrent(storage, job["piece_length"], flags)
    lt.set_piece_hashes(creator, str(tree.parent))
    data = lt.bencode(creator.generate())
    seconds = time.perf_counter() - began
    hashes = lt.torrent_info(data).info_hashes()
    return {
        "seconds": seconds,
        "cpu": time.process_time() - cpu,
        "info_hash_v1": str(hashes.v1) if hashes.has_v1() else None,
        "info_hash_v2": str(hashes.v2) if hashes.has_v2() else None,
    }


def run_mktorrent(tree: Path, piece_length: int) -> dict[str, Any]:
    from s3torrent.torrent import read_collection_torrent

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "m.torrent"
        argv = ["mktorrent", "-t", "2", "-l", str(piece_length.bit_length() - 1)]
        began = time.perf_counter()
        subprocess.run([*argv, "-o", str(out), str(tree)], check=True, capture_output=True)
        seconds = time.perf_counter() - began
        torrent = read_collection_torrent(out.read_bytes())
    return {"seconds": seconds, "cpu": None, "info_hash_v1": torrent.info_hash_v1}


CHILD_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    "AWS_ACCESS_KEY_ID": "bench",  # nginx ignores signatures; boto3 wants something to sign
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def in_child(kind: str, job: dict[str, Any]) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", kind, json.dumps(job)]
    done = subprocess.run(argv, capture_output=True, text=True, env=CHILD_ENV)
    if done.returncode:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--file-size", type=parse_size, default=256 * KiB)
    parser.add_argument("--large", type=int, default=3)
    parser.add_argument("--large-size", type=parse_size, default=256 * MiB)
    parser.add_argument("--piece-length", type=parse_size, default=1 * MiB)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--root", type=Path, default=Path("/tmp/s3torrent-bench-collections"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, job = args.child
        runner = child_ours if kind == "ours" else child_libtorrent
        print(json.dumps(runner(json.loads(job))))
        return 0
    from nginx_s3 import NginxS3

    tree = ensure_tree(args.root, args.files, args.file_size, args.large, args.large_size)
    total = args.files * args.file_size + args.large * args.large_size
    print(
        f"collection: {args.files} x {args.file_size // KiB} KiB + {args.large} x"
        f" {args.large_size // MiB} MiB = {total / 1024**3:.2f} GiB, pieces of"
        f" {args.piece_length // KiB} KiB, {os.cpu_count()} cores, best of {args.repeat}"
    )
    rows: dict[str, list[dict[str, Any]]] = {}
    with NginxS3(args.root, workers=2) as endpoint:
        for _ in range(args.repeat):
            for meta in ("1", "hybrid"):
                job = {
                    "tree": str(tree),
                    "endpoint": endpoint,
                    "meta": meta,
                    "piece_length": args.piece_length,
                }
                rows.setdefault(f"ours {meta}", []).append(in_child("ours", job))
                rows.setdefault(f"libtorrent {meta}", []).append(in_child("libtorrent", job))
            rows.setdefault("mktorrent -t 2 (v1)", []).append(
                run_mktorrent(tree, args.piece_length)
            )
    for name, runs in rows.items():
        best = min(run["seconds"] for run in runs)
        median = statistics.median(run["seconds"] for run in runs)
        extra = ""
        if "get_requests" in runs[0]:
            extra = f"  {runs[0]['get_requests']} GETs, {runs[0]['bytes_read']:,} bytes read"
        rate = total / best / MiB
        print(f"  {name:22} {best:7.2f} s [{median:.2f}]  {rate:7.0f} MiB/s{extra}")
    same_hybrid = (
        rows["ours hybrid"][0]["info_hash_v2"] == rows["libtorrent hybrid"][0]["info_hash_v2"]
    )
    same_v1 = rows["ours 1"][0]["info_hash_v1"] == rows["mktorrent -t 2 (v1)"][0]["info_hash_v1"]
    print(
        f"  same info hash: hybrid ours = libtorrent {same_hybrid}; v1 ours = mktorrent {same_v1}"
    )
    ratio_v1 = min(r["seconds"] for r in rows["ours 1"]) / min(
        r["seconds"] for r in rows["mktorrent -t 2 (v1)"]
    )
    ratio_hybrid = min(r["seconds"] for r in rows["ours hybrid"]) / min(
        r["seconds"] for r in rows["libtorrent hybrid"]
    )
    print(f"  ours v1 / mktorrent: {ratio_v1:.2f}x;", end=" ")
    print(f"ours hybrid / libtorrent hybrid: {ratio_hybrid:.2f}x")
    return 0 if same_hybrid and same_v1 else 1


if __name__ == "__main__":
    sys.exit(main())
