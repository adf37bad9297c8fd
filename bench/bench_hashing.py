"""`make bench`: how fast s3torrent hashes an object over HTTP, against the tools people use.

One run prints, side by side, for the same bytes (a generated file under /tmp, never stored
in the repo):
- ours: v1, v2 and hybrid through the production path, `wiring.build_service(settings)` on
  a loopback S3-compatible endpoint (nginx, see nginx_s3.py): `S3Objects.head_object`, then
  `TorrentService.hash_object` (parallel ranged GETs pinned with If-Match, each reading
  thread hashing what it reads: ranged_reader.read_parts), then `build_torrent`;
- ours read only: the same reader with its bytes discarded, the endpoint's and the socket
  copy's share of our time (the read limit, as the hashlib rows are the hashing limit);
- ours v1 and hybrid over HTTPS (nginx with TLS 1.3 and a throwaway certificate), which is
  how S3 is read: our CPU column is what TLS costs the worker;
- mktorrent `-t 2` and libtorrent (the venv wheel) v1 and hybrid, reading the file from
  the page cache;
- the raw hashlib limit: SHA-1 and SHA-256 over the same bytes (mmap'd, already in
  memory) on all cores with threads;
- peak RSS of every run, each measured in its own child process; and peak RSS again for
  a small and a big object (default 100 MiB and 8 GiB) to show it is flat.
Then the ratios to the targets of issue 3 (v1 <= 1.25 x mktorrent -t 2, hybrid <= 0.8 x
libtorrent hybrid, peak RSS < 256 MiB at any size).

The whole run re-executes itself in a private network namespace (`unshare --net`) whose
connections to 127.0.0.1 use cubic (the kernel's default), whatever the host is set to.
Why: nginx is the sender on the same two cores, and a sender's congestion control is the
server's business, not ours (S3's servers choose their own). This machine's image sets BBR,
whose pacing on loopback costs the sender softirq time and leaves the cores idle between
paced bursts: v1 took 1.4-1.7 s over the host's loopback against 0.86-0.91 s in the private
namespace, in the same hour (docs/performance.md). The namespace's default is set where
the kernel lets it; where it refuses (a namespace may only default to an algorithm in the
host's net.ipv4.tcp_allowed_congestion_control), cubic goes on the loopback route instead.
Where neither the namespace nor its congestion control can be had, the bench runs on the
host's network, as `--host-network` asks; the report's `network:` line says which network,
which congestion control and why. An algorithm named with `--congestion-control` that
cannot be had is an error, not a fallback. S3TORRENT_BENCH_NO_PRIVATE_NETWORK=1 runs the
fallback on any machine.

Every row has the CPU seconds per GiB of its own process (ours: our process only) and, for
ours, of nginx during the run; each ratio of times is printed with them. With the sender
on the same cores, a time says how the cores were shared and the CPU the work each did.

Every timed run is a fresh child process; times are the best of --repeat runs (5; median in
brackets). Our times start at HeadObject and end with the torrent built: the boto3 client
is created before the clock starts, as a warm Lambda reuses it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import itertools
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "lambda_src"))

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
BUCKET = "bench"
TARGET_V1 = 1.25  # x mktorrent -t 2
TARGET_HYBRID = 0.8  # x libtorrent hybrid
TARGET_RSS = 256 * MiB
READ_ONLY = "read"  # the reader alone, bytes discarded: not a meta version

_UNITS = {"": 1, "b": 1, "k": KiB, "kib": KiB, "m": MiB, "mib": MiB, "g": GiB, "gib": GiB}


def parse_size(text: str) -> int:
    """'2GiB', '100MiB', '256KiB', '8g', '0' -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 2GiB, 100MiB, 256KiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def compact(size: int) -> str:
    """2147483648 -> '2GiB' (exact multiples only), else the byte count."""
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def human(size: float) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{int(size)} B"


# --- test data ---------------------------------------------------------------------------


def ensure_object(folder: Path, size: int) -> Path:
    """A file of `size` pseudo-random bytes, generated once and reused by later runs.

    64 MiB of os.urandom, each further block rotated by a different offset: every piece
    differs (so no hash is computed twice by accident) and an 8 GiB file writes at disk
    speed instead of waiting on a random generator (randbytes does ~130 MB/s here).
    """
    path = folder / BUCKET / f"obj-{compact(size)}.bin"
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    block = 64 * MiB
    base = os.urandom(block)
    tmp = path.with_suffix(".part")
    print(f"generating {human(size)} of test data in {path} …", file=sys.stderr, flush=True)
    with tmp.open("wb") as out:
        written, index = 0, 0
        while written < size:
            shift = (index * 4099) % block
            chunk = base[shift:] + base[:shift]
            take = min(block, size - written)
            out.write(memoryview(chunk)[:take])
            written += take
            index += 1
    tmp.replace(path)
    return path


def warm_page_cache(path: Path) -> None:
    """Read the file once so every tool starts from the page cache (as the issue specifies)."""
    buffer = memoryview(bytearray(8 * MiB))
    with path.open("rb", buffering=0) as handle:
        while handle.readinto(buffer):
            pass


# --- the network ---------------------------------------------------------------------------

# Set in the environment of the bench re-executed in its own network namespace: the report's
# `network:` line, decided (and tried) by the bench that re-executed it.
PRIVATE_NETWORK_MARK = "S3TORRENT_BENCH_PRIVATE_NETWORK"
# Set (to anything) to run as if no private network namespace could be had: the fallback a
# machine without unshare takes, on demand (tests/integration/test_bench.py runs it).
NO_PRIVATE_NETWORK = "S3TORRENT_BENCH_NO_PRIVATE_NETWORK"
DEFAULT_CONGESTION_CONTROL = "cubic"
SYSCTL = Path("/proc/sys/net/ipv4")  # its TCP files are per network namespace


class NoPrivateNetwork(Exception):
    """Why the bench cannot have a private network namespace with the congestion control asked."""


def loopback_congestion_control() -> str:
    """The TCP congestion control a connection to 127.0.0.1 gets here, read off one.

    Read off a connection, not the sysctl: a route can override the sysctl (see
    set_up_private_network), and what counts is what nginx's accepted sockets send with.
    """
    try:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            with socket.create_connection(listener.getsockname(), timeout=5):
                accepted, _ = listener.accept()
                with accepted:
                    name = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    except OSError:
        return "?"
    return name.rstrip(b"\0").decode()


def private_network_argv() -> list[str]:
    """How to run a command in a new network namespace here; NoPrivateNetwork where we may not.

    root unshares directly; anyone else needs an unprivileged user namespace to own it
    (`--map-root-user`), which some kernels or containers refuse.
    """
    if os.environ.get(NO_PRIVATE_NETWORK):
        raise NoPrivateNetwork(f"{NO_PRIVATE_NETWORK} is set")
    unshare = shutil.which("unshare")
    if unshare is None:
        raise NoPrivateNetwork("no unshare command")
    argv = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--map-root-user", "--net"]
    probe = subprocess.run([*argv, "true"], capture_output=True, text=True, check=False)
    if probe.returncode:
        said = probe.stderr.strip().splitlines()
        reason = said[-1] if said else f"exit status {probe.returncode}"
        raise NoPrivateNetwork(f"{shlex.join(argv)} failed: {reason}")
    return argv


def set_up_private_network(algorithm: str) -> str:
    """In a fresh network namespace: loopback up, `algorithm` for connections to 127.0.0.1.

    Returns how the algorithm was set, for the report; NoPrivateNetwork when it cannot be.
    """
    bring_loopback_up()
    try:
        (SYSCTL / "tcp_congestion_control").write_text(algorithm)
        how = "namespace default"
    except OSError as sysctl_error:
        # The kernel lets a namespace other than the first default only to an algorithm in
        # the host's net.ipv4.tcp_allowed_congestion_control (EPERM otherwise, root or not);
        # an image that chose BBR may allow only "reno bbr". A route's congctl metric has no
        # such rule, and the bench's connections all go to 127.0.0.1.
        try:
            set_loopback_route_congestion_control(algorithm)
        except OSError as route_error:
            available = (SYSCTL / "tcp_available_congestion_control").read_text().strip()
            raise NoPrivateNetwork(
                f"sysctl: {sysctl_error}; loopback route: {route_error};"
                f" this kernel has: {available}"
            ) from route_error
        how = f"set on the route to 127.0.0.1: the namespace default refused it, {sysctl_error}"
    got = loopback_congestion_control()
    if got != algorithm:
        raise NoPrivateNetwork(f"{algorithm} was set ({how}) but a loopback connection got {got}")
    return how


def bring_loopback_up() -> None:
    """`ip link set lo up`, without needing iproute2: SIOCGIFFLAGS/SIOCSIFFLAGS on "lo"."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def set_loopback_route_congestion_control(algorithm: str) -> None:
    """`ip route replace local 127.0.0.1 dev lo table local proto kernel scope host
    src 127.0.0.1 congctl ALGORITHM`, over rtnetlink (no iproute2 needed); OSError if refused.

    The kernel's own /32 route to 127.0.0.1 with one metric more: both ends of a loopback
    connection to 127.0.0.1 then start with that algorithm (connect and accept both look
    at the route's RTAX_CC_ALGO before the namespace default).
    """
    rtm_newroute, nlmsg_error = 24, 2
    nlm_f_request, nlm_f_ack, nlm_f_replace, nlm_f_create = 0x1, 0x4, 0x100, 0x400
    rt_table_local, rtprot_kernel, rt_scope_host, rtn_local = 255, 2, 254, 2
    rta_dst, rta_oif, rta_prefsrc, rta_metrics, rtax_cc_algo = 1, 4, 7, 8, 16

    def attribute(kind: int, payload: bytes) -> bytes:
        length = 4 + len(payload)
        return struct.pack("=HH", length, kind) + payload + bytes(-length % 4)

    address = socket.inet_aton("127.0.0.1")
    message = struct.pack(
        "=BBBBBBBBI",
        socket.AF_INET,
        32,  # destination prefix length
        0,
        0,
        rt_table_local,
        rtprot_kernel,
        rt_scope_host,
        rtn_local,
        0,
    )
    message += attribute(rta_dst, address)
    message += attribute(rta_prefsrc, address)
    message += attribute(rta_oif, struct.pack("=i", socket.if_nametoindex("lo")))
    message += attribute(rta_metrics, attribute(rtax_cc_algo, algorithm.encode() + b"\0"))
    flags = nlm_f_request | nlm_f_ack | nlm_f_replace | nlm_f_create
    header = struct.pack("=IHHII", 16 + len(message), rtm_newroute, flags, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as netlink:
        netlink.bind((0, 0))
        netlink.send(header + message)
        reply = netlink.recv(65536)
    _, kind = struct.unpack_from("=IH", reply)
    if kind != nlmsg_error:
        raise OSError(f"unexpected rtnetlink reply type {kind}")
    error = -struct.unpack_from("=i", reply, 16)[0]  # 0 is the acknowledgement
    if error:
        raise OSError(error, os.strerror(error))


@dataclass(frozen=True)
class Network:
    """Where the bench runs: under `unshare` (a private namespace) or, when None, on the host."""

    unshare: list[str] | None
    line: str  # the report's `network:` line: what was used and why


def choose_network(algorithm: str | None, *, host_network: bool = False) -> Network:
    """The private namespace with `algorithm` (cubic when None) if this machine gives one.

    Else the host's network, with the reason. A namespace whose congestion control cannot
    be set is not used: it would only be the host's algorithm again on another loopback,
    and the host's network is the one a reader can reproduce. An algorithm asked for
    explicitly that cannot be had is an error instead (SystemExit): measuring another one
    would answer a question nobody asked.
    """
    host_algorithm = loopback_congestion_control()
    host = f"host network, TCP {host_algorithm}"
    if host_network:
        return Network(None, f"{host} (--host-network)")
    wanted = algorithm or DEFAULT_CONGESTION_CONTROL
    try:
        argv = private_network_argv()
    except NoPrivateNetwork as why:
        return Network(None, f"{host} (no private network namespace: {why})")
    # Try it in a throwaway namespace first, so that a refusal leaves us on the host.
    probe = subprocess.run(
        [*argv, sys.executable, str(Path(__file__).resolve()), "--network-probe", wanted],
        capture_output=True,
        text=True,
        check=False,
    )
    answer = json.loads(probe.stdout) if probe.stdout.startswith("{") else {}
    if "how" not in answer:
        refused = answer.get("refused") or f"probe failed: {probe.stderr.strip()[-500:]}"
        if algorithm is not None:
            raise SystemExit(f"cannot use TCP congestion control {algorithm!r}: {refused}")
        reason = f"the private namespace's congestion control could not be set to {wanted}"
        return Network(None, f"{host} ({reason}: {refused})")
    return Network(
        argv,
        f"private network namespace, TCP {wanted} ({answer['how']}; the host's: {host_algorithm})",
    )


def network_probe(algorithm: str) -> dict[str, str]:
    """Run inside a new namespace by choose_network: can `algorithm` be had here, and how."""
    try:
        return {"how": set_up_private_network(algorithm)}
    except (NoPrivateNetwork, OSError) as why:
        return {"refused": str(why)}


# --- child processes -----------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    peak_rss: int  # bytes, of that child process alone
    # User + system CPU seconds of that process alone: of the timed part for our and the
    # Python children (they measure themselves), of the whole process for mktorrent (wait4).
    cpu: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    sender_cpu: float | None = None  # nginx's, for our runs (it serves them on our cores)


# nginx ignores signatures: children sign with throwaway keys and never look for real ones.
CHILD_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def run_child(argv: list[str], *, timeout: float = 900) -> Run:
    """Run a Python child that prints one JSON object; its wall time and that object."""
    began = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CHILD_ENV)
    out, err = b"", b""
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.returncode is None:
            process.kill()
    # communicate() reaped it; Popen keeps no rusage, so children report VmHWM themselves
    # and plain tools are run through `measure_tool` below.
    elapsed = time.perf_counter() - began
    if process.returncode:
        raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {err.decode()[-2000:]}")
    return Run(elapsed, 0, extra=json.loads(out) if out.strip().startswith(b"{") else {})


def measure_tool(argv: list[str]) -> Run:
    """Wall time and peak RSS of an external tool, from wait4's rusage for exactly that pid."""
    # stderr to a file, not a pipe: nothing reads a pipe while wait4 blocks.
    with tempfile.TemporaryFile() as errors:
        began = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            errors.seek(0)
            message = errors.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {message}")
    return Run(elapsed, usage.ru_maxrss * KiB, usage.ru_utime + usage.ru_stime)


def python_child(job: dict[str, Any]) -> Run:
    run = run_child([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)])
    extra = run.extra
    return Run(float(extra["seconds"]), int(extra["peak_rss"]), float(extra.get("cpu", 0)), extra)


def cpu_since(before: float) -> float:
    """User + system seconds of this process (all its threads) since `before` (process_time).

    This process only: nginx, the sender of our bytes, is another process, so its share of
    the cores is not counted as our work. process_time, not os.times: os.times counts in
    10 ms clock ticks, too coarse for the test's 3.3 MiB runs.
    """
    return time.process_time() - before


def vm_hwm() -> int:
    """Peak resident set size of this process so far, in bytes (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * KiB
    return 0


def child_ours(job: dict[str, Any]) -> dict[str, Any]:
    """Our production path, timed from HeadObject to the built torrent."""
    from s3torrent.model import ObjectRef, TransferCounters
    from s3torrent.torrent.hashing import MetaVersion
    from s3torrent.torrent.metainfo import TorrentOptions, build_torrent, torrent_name_for_key

    if job.get("ca_bundle"):
        os.environ["AWS_CA_BUNDLE"] = job["ca_bundle"]  # trusts the bench's own certificate
    service = make_service(job["endpoint"], job["part_size"], job["window"], job["transport"])
    objects = service.objects
    if job.get("gc_freeze"):
        # What a Lambda handler can do at the end of its init: park every object created
        # so far (boto3's models: ~hundreds of thousands) where the cyclic GC never walks.
        import gc

        gc.freeze()
    ref = ObjectRef(BUCKET, job["key"])
    if job["meta"] == READ_ONLY:
        return read_only(service, ref, job["piece_length"])
    meta = MetaVersion(job["meta"])
    cpu0 = time.process_time()
    began = time.perf_counter()
    info = objects.head_object(ref)
    counters = TransferCounters()
    hashes = service.hash_object(info, job["piece_length"], meta, counters)
    options = TorrentOptions(
        meta_version=meta,
        piece_length=job["piece_length"],
        created_by=None,
        creation_date=None,
    )
    torrent = build_torrent(torrent_name_for_key(ref.key), hashes, options)
    seconds = time.perf_counter() - began
    return {
        "seconds": seconds,
        "peak_rss": vm_hwm(),
        "bytes": info.size,
        "info_hash_v1": torrent.info_hash_v1,
        "info_hash_v2": torrent.info_hash_v2,
        "v1_pieces": hashes.v1_pieces.hex()
        if job.get("want_pieces") and hashes.v1_pieces
        else None,
        "get_requests": counters.get_requests,
        "retries": counters.retries,
        "bytes_read": counters.bytes_read,
        "cpu": cpu_since(cpu0),
        "transport": type(objects.range_source(info)).__name__,
    }


class _Discard:
    """A part sink that drops the bytes: what reading costs without hashing."""

    def write(self, chunk: memoryview) -> None:
        del chunk


def read_only(service: Any, ref: Any, piece_length: int) -> dict[str, Any]:
    """The reader of `hash_object` with its sinks discarding the bytes (the read limit).

    Same source, connections, parts and chunks as the timed runs; only the hashing is gone,
    so this row is the endpoint and the socket copy alone, on the same cores.
    """
    from s3torrent.model import TransferCounters
    from s3torrent.s3.objects import is_retryable
    from s3torrent.s3.reader import read_parts

    objects = service.objects
    cpu0 = time.process_time()
    began = time.perf_counter()
    info = objects.head_object(ref)
    counters = TransferCounters()
    source = objects.range_source(info)
    read_parts(
        source,
        info.size,
        lambda start, stop: _Discard(),
        objects.reader,
        counters,
        align=piece_length,
        is_retryable=is_retryable,
    )
    return {
        "seconds": time.perf_counter() - began,
        "peak_rss": vm_hwm(),
        "cpu": cpu_since(cpu0),
        "bytes_read": counters.bytes_read,
        "transport": type(source).__name__,
    }


def make_service(
    endpoint: str, part_size: int, window: int, transport: Literal["direct", "sdk"]
) -> Any:
    """The service exactly as production builds it: wiring.build_service(settings)."""
    from s3torrent.settings import Settings
    from s3torrent.wiring import build_service

    settings = Settings(
        endpoint_url=endpoint,
        read_part_bytes=part_size,
        read_window=window,
        read_transport=transport,
    )
    return build_service(settings)


def child_libtorrent(job: dict[str, Any]) -> dict[str, Any]:
    import libtorrent as lt

    path = Path(job["path"])
    cpu0 = time.process_time()
    began = time.perf_counter()
    storage = lt.file_storage()
    lt.add_files(storage, str(path))
    flags = lt.create_torrent.v1_only if job["meta"] == "1" else 0
    creator = lt.create_torrent(storage, job["piece_length"], flags)
    lt.set_piece_hashes(creator, str(path.parent))
    data = lt.bencode(creator.generate())
    seconds = time.perf_counter() - began
    hashes = lt.torrent_info(data).info_hashes()
    return {
        "seconds": seconds,
        "peak_rss": vm_hwm(),
        "cpu": cpu_since(cpu0),
        "info_hash_v1": str(hashes.v1) if hashes.has_v1() else None,
        "info_hash_v2": str(hashes.v2) if hashes.has_v2() else None,
        "version": lt.__version__,
    }


def child_hashlib(job: dict[str, Any]) -> dict[str, Any]:
    """SHA-1 per piece and/or SHA-256 per 16 KiB block over an mmap, one thread per core."""
    import hashlib
    import mmap
    from concurrent.futures import ThreadPoolExecutor

    path = Path(job["path"])
    piece, threads, kind = job["piece_length"], job["threads"], job["kind"]
    with path.open("rb") as handle:
        # MAP_POPULATE maps every page before the clock starts: we time hashing, not faults.
        mapped = mmap.mmap(
            handle.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ
        )
    view = memoryview(mapped)
    size = len(view)
    pieces = -(-size // piece)
    sha1, sha256, block = hashlib.sha1, hashlib.sha256, 16 * KiB

    def work(first: int, last: int) -> None:
        for index in range(first, last):
            data = view[index * piece : (index + 1) * piece]
            if kind in ("sha1", "both"):
                sha1(data).digest()
            if kind in ("sha256", "both"):
                for offset in range(0, len(data), block):
                    sha256(data[offset : offset + block]).digest()
            data.release()

    bounds = [pieces * i // threads for i in range(threads + 1)]
    cpu0 = time.process_time()
    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(work, a, b) for a, b in itertools.pairwise(bounds)]:
            future.result()
    seconds = time.perf_counter() - began
    cpu = cpu_since(cpu0)
    view.release()
    mapped.close()
    return {"seconds": seconds, "peak_rss": vm_hwm(), "cpu": cpu}


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    size: int
    runs: list[Run] = field(default_factory=list)

    @property
    def best(self) -> Run:
        return min(self.runs, key=lambda run: run.seconds)

    @property
    def median(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def peak_rss(self) -> int:
        return max(run.peak_rss for run in self.runs)

    @property
    def cpu_per_gib(self) -> float:
        """The best run's CPU seconds per GiB: the work done, whatever the wall clock says
        while nginx shares the cores (same run as the time, so the two can be compared)."""
        return per_gib(self.best.cpu, self.size)

    @property
    def sender_cpu_per_gib(self) -> float | None:
        """nginx's CPU seconds per GiB during the best run, for our rows; None for the rest."""
        sender = self.best.sender_cpu
        return None if sender is None else per_gib(sender, self.size)


def per_gib(seconds: float, size: int) -> float:
    return seconds * GiB / size


def row_json(row: Row) -> dict[str, Any]:
    """A row of the --json output: times and CPU of its best run, and every run."""
    return {
        "label": row.label,
        "size": row.size,
        "best": row.best.seconds,
        "median": row.median,
        "peak_rss": row.peak_rss,
        "cpu": row.best.cpu,
        "cpu_s_per_gib": row.cpu_per_gib,
        "sender_cpu_s_per_gib": row.sender_cpu_per_gib,
        "runs": [
            {
                "seconds": run.seconds,
                "peak_rss": run.peak_rss,
                "cpu": run.cpu,
                "cpu_s_per_gib": per_gib(run.cpu, row.size),
                "sender_cpu": run.sender_cpu,
            }
            for run in row.runs
        ],
    }


@dataclass
class Job:
    row: Row
    run: Callable[[], Run]


def decode_pieces(torrent_file: Path) -> bytes:
    from s3torrent.torrent.bencode import decode

    top = decode(torrent_file.read_bytes())
    assert isinstance(top, dict)
    info = top[b"info"]
    assert isinstance(info, dict)
    pieces = info[b"pieces"]
    assert isinstance(pieces, bytes)
    return pieces


def meta_label(meta: str) -> str:
    return {"1": "v1", "2": "v2", "hybrid": "hybrid"}[meta]


def wait_for_quiet(limit: float, most: float) -> float:
    """Wait up to `most` seconds for the 1-minute load average to drop under `limit`."""
    deadline = time.monotonic() + most
    load = os.getloadavg()[0]
    while load > limit and time.monotonic() < deadline:
        time.sleep(5)
        load = os.getloadavg()[0]
    return load


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from s3torrent.settings import Settings

    defaults = Settings()
    parser = argparse.ArgumentParser(
        description="Hash one object over HTTP like production does, next to mktorrent,"
        " libtorrent and the raw hashlib limit (see the module docstring)."
    )
    size = parse_size
    parser.add_argument("--size", type=size, default=size("2GiB"), help="main object (2GiB)")
    parser.add_argument("--big", type=size, default=size("8GiB"), help="RSS run; 0 skips (8GiB)")
    parser.add_argument("--small", type=size, default=size("100MiB"), help="RSS run; 0 skips")
    parser.add_argument("--piece-length", type=size, default=size("256KiB"))
    parser.add_argument(
        "--part-size", type=size, default=defaults.read_part_bytes, help="settings default"
    )
    parser.add_argument("--window", type=int, default=defaults.read_window, help="settings default")
    parser.add_argument(
        "--transport",
        default=defaults.read_transport,
        choices=["direct", "sdk"],
        help="how ranges are read (settings default: direct)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds; best and median shown (5)")
    parser.add_argument("--versions", default="1,2,hybrid", help="ours: meta versions to run")
    parser.add_argument("--no-peers", action="store_true", help="only our runs")
    parser.add_argument(
        "--no-read-only", action="store_true", help="skip the read-only row (bytes discarded)"
    )
    parser.add_argument(
        "--no-https", action="store_true", help="skip the rows read over HTTPS (TLS)"
    )
    parser.add_argument(
        "--far-rate",
        type=int,
        default=88_000_000,
        metavar="BYTES_PER_S",
        help="each connection of the far row held to this rate, like S3's ~88 MB/s; 0 skips",
    )
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument(
        "--host-network",
        action="store_true",
        help="serve and read over the host's loopback and its TCP congestion control,"
        " not a private network namespace's (see the module docstring)",
    )
    parser.add_argument(
        "--congestion-control",
        metavar="NAME",
        help="TCP congestion control of the private namespace's loopback; by default cubic"
        " where it can be had, else the host's network (the report says why); one named"
        " here that cannot be had is an error",
    )
    parser.add_argument(
        "--gc-freeze", action="store_true", help="ours: gc.freeze() after building the client"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to this long for the load average to drop under 0.5 per core",
    )
    parser.add_argument("--dir", type=Path, default=Path("/tmp/s3torrent-bench"))
    parser.add_argument("--clean", action="store_true", help="delete the generated files after")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--network-probe", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        children = {"ours": child_ours, "libtorrent": child_libtorrent, "hashlib": child_hashlib}
        print(json.dumps(children[job["kind_of_run"]](job)))
        return 0

    if args.network_probe:
        print(json.dumps(network_probe(args.network_probe)))
        return 0

    algorithm = args.congestion_control or DEFAULT_CONGESTION_CONTROL
    if os.environ.get(PRIVATE_NETWORK_MARK):
        # Re-executed by the bench below, in the namespace its probe just set up the same way.
        try:
            set_up_private_network(algorithm)
        except (NoPrivateNetwork, OSError) as why:
            raise SystemExit(f"the private network namespace changed under us: {why}") from why
        network = os.environ[PRIVATE_NETWORK_MARK]
    else:
        chosen = choose_network(args.congestion_control, host_network=args.host_network)
        network = chosen.line
        if chosen.unshare is not None:
            script = str(Path(__file__).resolve())
            argv_again = sys.argv[1:] if argv is None else argv
            environment = {**os.environ, PRIVATE_NETWORK_MARK: network}
            return subprocess.run(
                [*chosen.unshare, sys.executable, script, *argv_again],
                env=environment,
                check=False,
            ).returncode

    from nginx_s3 import NginxS3, self_signed_certificate

    cores = os.cpu_count() or 1
    began = time.perf_counter()
    main_path = ensure_object(args.dir, args.size)
    others = [(n, ensure_object(args.dir, n)) for n in (args.small, args.big) if n]
    load_before = wait_for_quiet(0.5 * cores, args.wait_quiet)
    warm_page_cache(main_path)

    with contextlib.ExitStack() as servers:
        senders: dict[str, NginxS3] = {}  # url -> its nginx, whose CPU each of our runs reads

        def serve(server: NginxS3) -> str:
            url = servers.enter_context(server)
            senders[url] = server
            return url

        url = serve(NginxS3(args.dir, workers=args.nginx_workers))
        https_url, ca_bundle = None, None
        if not args.no_https:
            # The certificate lives outside the served folder, which nginx serves whole.
            tls = Path(servers.enter_context(tempfile.TemporaryDirectory(prefix="s3t-tls-")))
            cert_and_key = self_signed_certificate(tls)
            ca_bundle = str(cert_and_key[0])
            https_url = serve(NginxS3(args.dir, workers=args.nginx_workers, tls=cert_and_key))
        far_url = None
        if args.far_rate:
            far_url = serve(
                NginxS3(args.dir, workers=args.nginx_workers, rate_per_connection=args.far_rate)
            )

        def ours(
            path: Path, meta: str, want_pieces: bool = False, endpoint: str | None = None
        ) -> Run:
            endpoint = endpoint or url
            job = {
                "kind_of_run": "ours",
                "endpoint": endpoint,
                "ca_bundle": ca_bundle,
                "key": path.name,
                "meta": meta,
                "piece_length": args.piece_length,
                "part_size": args.part_size,
                "window": args.window,
                "transport": args.transport,
                "want_pieces": want_pieces,
                "gc_freeze": args.gc_freeze,
                "folder": str(args.dir),
            }
            # nginx's CPU over the whole child (its start-up included, when nginx is idle):
            # what the sender took from the same cores while we read.
            sender_before = senders[endpoint].cpu_seconds()
            run = python_child(job)
            run.sender_cpu = senders[endpoint].cpu_seconds() - sender_before
            return run

        via = f"({args.transport})"
        jobs: list[Job] = []
        for meta in [v.strip() for v in args.versions.split(",") if v.strip()]:
            row = Row(f"ours-{meta}", f"ours {meta_label(meta)} {via}", args.size)
            jobs.append(Job(row, functools.partial(ours, main_path, meta, meta == "1")))
        if not args.no_read_only:
            row = Row("ours-read", f"ours read only, no hashing {via}", args.size)
            jobs.append(Job(row, lambda: ours(main_path, READ_ONLY)))
        if far_url is not None:
            # S3 as a Lambda sees it: each connection capped, so only more connections help.
            # This row shows the reader opening them (and how far from the ideal it ends).
            label = f"ours v1 ({args.transport}, {args.far_rate / 1e6:.0f} MB/s a connection)"
            row = Row("ours-1-far", label, args.size)
            jobs.append(Job(row, lambda: ours(main_path, "1", endpoint=far_url)))
        if https_url is not None:
            # What S3 serves: TLS. nginx then encrypts in user space (no sendfile) on the
            # same two cores, so the time is pessimistic; our CPU column is the price to us.
            for meta in ("1", "hybrid"):
                label = f"ours {meta_label(meta)} ({args.transport}, https)"
                row = Row(f"ours-{meta}-https", label, args.size)
                jobs.append(Job(row, functools.partial(ours, main_path, meta, endpoint=https_url)))
        torrent_out = args.dir / "mktorrent.torrent"
        if not args.no_peers:
            jobs += peer_jobs(args, main_path, torrent_out, cores)
        # Rounds, not one tool after another: a burst of load elsewhere on the machine then
        # hits every tool alike and the ratios stay meaningful.
        for _ in range(args.repeat):
            for job in jobs:
                job.row.runs.append(job.run())
        rows = {job.row.key: job.row for job in jobs}

        size_rows: list[Row] = []
        for size, path in others:
            warm_page_cache(path)
            row = Row(f"rss-{size}", f"ours hybrid {via}, {human(size)}", size)
            row.runs.append(ours(path, "hybrid"))
            size_rows.append(row)
        warm_page_cache(main_path)

    checks = cross_checks(rows, torrent_out)
    load_after = os.getloadavg()[0]
    report(args, rows, size_rows, checks, cores, (load_before, load_after), network)
    print(
        f"(total {time.perf_counter() - began:.0f} s; test files in {args.dir / BUCKET}"
        + (" removed)" if args.clean else " kept, --clean removes them)")
    )
    if args.json:
        table = {row.key: row_json(row) for row in [*rows.values(), *size_rows]}
        args.json.write_text(json.dumps(table, indent=2))
    if args.clean:
        shutil.rmtree(args.dir / BUCKET, ignore_errors=True)
    return 0


def peer_jobs(args: argparse.Namespace, path: Path, torrent_out: Path, cores: int) -> list[Job]:
    jobs: list[Job] = []
    if shutil.which("mktorrent"):
        log2 = args.piece_length.bit_length() - 1

        def mktorrent() -> Run:
            torrent_out.unlink(missing_ok=True)
            argv = ["mktorrent", "-t", "2", "-l", str(log2), "-d", "-o", str(torrent_out)]
            return measure_tool([*argv, str(path)])

        jobs.append(Job(Row("mktorrent", "mktorrent -t 2 v1 (page cache)", args.size), mktorrent))
    version = lt_version()
    for meta in ("1", "hybrid"):
        job = {
            "kind_of_run": "libtorrent",
            "path": str(path),
            "meta": meta,
            "piece_length": args.piece_length,
        }
        label = f"libtorrent {version} {meta_label(meta)} (page cache)"
        jobs.append(Job(Row(f"lt-{meta}", label, args.size), functools.partial(python_child, job)))
    for kind, label in (
        ("sha1", "SHA-1 per piece"),
        ("sha256", "SHA-256 per 16 KiB block"),
        ("both", "SHA-1 + SHA-256"),
    ):
        job = {
            "kind_of_run": "hashlib",
            "path": str(path),
            "kind": kind,
            "piece_length": args.piece_length,
            "threads": cores,
        }
        row = Row(f"hashlib-{kind}", f"hashlib {label}, {cores} threads", args.size)
        jobs.append(Job(row, functools.partial(python_child, job)))
    return jobs


def lt_version() -> str:
    try:
        import libtorrent as lt
    except ImportError:
        return "?"
    return str(lt.__version__)


def cross_checks(rows: dict[str, Row], torrent_out: Path) -> list[tuple[str, bool]]:
    """Did everyone compute the same thing? (Otherwise the times compare nothing.)"""
    checks: list[tuple[str, bool]] = []
    ours_v1 = rows.get("ours-1")
    if ours_v1 and "mktorrent" in rows and torrent_out.exists():
        same = ours_v1.runs[0].extra.get("v1_pieces") == decode_pieces(torrent_out).hex()
        checks.append(("our v1 piece hashes == mktorrent's", same))
    for meta, over in itertools.product(("1", "hybrid"), ("", "-https", "-far")):
        mine, theirs = rows.get(f"ours-{meta}{over}"), rows.get(f"lt-{meta}")
        if not (mine and theirs):
            continue
        for key in ("info_hash_v1", "info_hash_v2"):
            expected = theirs.runs[0].extra.get(key)
            if expected:
                same = all(run.extra.get(key) == expected for run in mine.runs)
                via = f" ({over[1:]})" if over else ""
                checks.append((f"our {meta_label(meta)}{via} {key} == libtorrent's", same))
    return checks


# What our CPU per GiB is set against in the report's ratio lines: (row, name), the
# hashlib floor being the hashing alone at its cheapest, and our read-only row the reading.
V1_PEERS = [
    ("mktorrent", "mktorrent"),
    ("lt-1", "libtorrent"),
    ("hashlib-sha1", "hashlib SHA-1 floor"),
    ("ours-read", "our read alone"),
]
HYBRID_PEERS = [
    ("lt-hybrid", "libtorrent"),
    ("hashlib-both", "hashlib SHA-1 + SHA-256 floor"),
    ("ours-read", "our read alone"),
]


def cpu_comparison(rows: dict[str, Row], ours: str, peers: list[tuple[str, str]]) -> str:
    """'CPU s/GiB: ours 0.68 (nginx 0.10), mktorrent 0.69, ...' for the rows that ran."""
    mine = rows[ours]
    sender = mine.sender_cpu_per_gib
    parts = [f"ours {mine.cpu_per_gib:.2f}" + ("" if sender is None else f" (nginx {sender:.2f})")]
    parts += [f"{name} {rows[key].cpu_per_gib:.2f}" for key, name in peers if key in rows]
    return "CPU s/GiB: " + ", ".join(parts)


def report(
    args: argparse.Namespace,
    rows: dict[str, Row],
    size_rows: list[Row],
    checks: list[tuple[str, bool]],
    cores: int,
    loads: tuple[float, float],
    network: str,
) -> None:
    transport = next(
        (r.runs[0].extra["transport"] for k, r in rows.items() if k.startswith("ours-")), "?"
    )
    print()
    print(
        f"s3torrent bench: {human(args.size)} object, {human(args.piece_length)} pieces,"
        f" {cores} cores; best of {args.repeat} rounds [median]"
    )
    print(f"network: {network}")
    print(
        f"ours: build_service -> head_object -> hash_object over HTTP from nginx on loopback:"
        f" {transport}, {args.window} connections, {human(args.part_size)} per GET,"
        " each thread hashing what it reads -> build_torrent"
    )
    if args.gc_freeze:
        print("NOT THE PRODUCTION PATH: gc_freeze")
    print(
        "peers read the same file from the page cache, hashlib hashes it mmap'd (in memory);"
        " CPU = user+sys of that process (ours: our process alone, never nginx's);"
        " nginx = the sender's CPU on the same cores during our run"
    )
    print()
    header = (
        f"{'run':<48} {'time s':>6} {'[med]':>6} {'GB/s':>6} {'CPU s':>6}"
        f" {'CPU/GiB':>7} {'nginx/GiB':>9} {'peak RSS':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in [*rows.values(), *size_rows]:
        best = row.best
        median = f"[{row.median:.2f}]" if len(row.runs) > 1 else ""
        rate = row.size / best.seconds / 1e9
        sender = row.sender_cpu_per_gib
        print(
            f"{row.label:<48} {best.seconds:>6.2f} {median:>6} {rate:>6.2f} {best.cpu:>6.2f}"
            f" {row.cpu_per_gib:>7.2f} {'' if sender is None else f'{sender:.2f}':>9}"
            f" {row.peak_rss / MiB:>5.0f} MiB"
        )
    print()
    # Each ratio of times comes with the CPU each side spent per GiB: over loopback nginx
    # takes part of the same two cores, so a time ratio alone mixes our work with its.
    verdicts: list[tuple[str, bool, str]] = []
    if "ours-1" in rows and "mktorrent" in rows:
        ratio = rows["ours-1"].best.seconds / rows["mktorrent"].best.seconds
        verdicts.append(
            (
                f"v1: ours / mktorrent -t 2 = {ratio:.2f}x (target <= {TARGET_V1}x)",
                ratio <= TARGET_V1,
                cpu_comparison(rows, "ours-1", V1_PEERS),
            )
        )
    if "ours-hybrid" in rows and "lt-hybrid" in rows:
        ratio = rows["ours-hybrid"].best.seconds / rows["lt-hybrid"].best.seconds
        verdicts.append(
            (
                f"hybrid: ours / libtorrent hybrid = {ratio:.2f}x (target <= {TARGET_HYBRID}x)",
                ratio <= TARGET_HYBRID,
                cpu_comparison(rows, "ours-hybrid", HYBRID_PEERS),
            )
        )
    ours_rows = [r for k, r in rows.items() if k.startswith("ours-")] + size_rows
    if ours_rows:
        peak = max(r.peak_rss for r in ours_rows)
        sizes = ", ".join(human(n) for n in sorted({r.size for r in ours_rows}))
        verdicts.append(
            (
                f"peak RSS of our runs ({sizes}) = {peak / MiB:.0f} MiB"
                f" (target < {TARGET_RSS // MiB} MiB)",
                peak < TARGET_RSS,
                "",
            )
        )
    far = rows.get("ours-1-far")
    if far is not None:
        # Not a target: how close the ramp to read_window connections gets to the time that
        # many capped connections need at the least.
        ideal = args.size / (args.window * args.far_rate)
        print(
            f"  INFO  far: ours v1 {far.best.seconds:.2f} s; {args.window} connections x"
            f" {args.far_rate / 1e6:.0f} MB/s need {ideal:.2f} s at the least"
            f" ({ideal / far.best.seconds:.0%} of that speed reached)"
        )
        print(f"{'':8}{cpu_comparison(rows, 'ours-1-far', V1_PEERS)}")
    for text, ok, cpu in verdicts:
        print(f"  {'PASS' if ok else 'MISS'}  {text}")
        if cpu:
            print(f"{'':8}{cpu}")
    for text, ok in checks:
        print(f"  {'same' if ok else 'DIFF'}  {text}")
    before, after = loads
    # Only the load before counts: the bench keeps every core busy, so the average after
    # it is mostly its own work and says nothing about other jobs.
    if before > 0.5 * cores:
        print(
            f"  NOTE  machine busy (load average {before:.1f} before the run, on {cores}"
            " cores): times are pessimistic and noisy; rerun when quiet (--wait-quiet 300)"
        )
    print(f"  load average {before:.1f} before, {after:.1f} after (the bench's own load)")


if __name__ == "__main__":
    raise SystemExit(main())
