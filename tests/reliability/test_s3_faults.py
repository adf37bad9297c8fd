"""S3 breaks, torrents stay right: faults injected between TorrentService and a real endpoint.

The service (built by `wiring.build_service`, as every entry point builds it) talks to moto's
server through the fault proxy. Transient faults on a share of requests must change nothing
in the result (the same info hashes as a fault-free run and as the engine alone), at the
cost of a bounded number of retries; a fault that never clears must end as a clear
TransientS3Error within bounded time, with no torrent written.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest

from s3torrent.errors import TransientS3Error
from s3torrent.model import ObjectRef, Outcome
from s3torrent.s3.reader import ReaderConfig
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.torrent import read_torrent
from s3torrent.wiring import build_service
from tests.support.faults.helpers import fresh_bucket, reference_hashes, source_writes, torrent_keys
from tests.support.faults.proxy import FaultKind, FaultPolicy, FaultProxy, FaultRule

pytestmark = pytest.mark.integration

PART = 64 * 1024  # the smallest part Settings allows: many ranges per object, many chances to fail
WINDOW = 4
READER_ATTEMPTS = ReaderConfig().max_attempts

_rng = random.Random(20261125)
OBJECTS: dict[str, bytes] = {
    "one-byte": _rng.randbytes(1),
    "a/small.bin": _rng.randbytes(PART + 1),
    "a/b/mid.bin": _rng.randbytes(300_001),
    "big.bin": _rng.randbytes(1_048_579),
    "deep/er/bigger.bin": _rng.randbytes(2_621_435),
}
RANGES = {key: -(-len(data) // PART) for key, data in OBJECTS.items()}

# About 30% of ranged GETs broken, every way S3 breaks (rates apply in turn, per request).
TRANSIENT_RULES = [
    FaultRule(FaultKind.SLOWDOWN, rate=0.10, ranged_only=True),
    FaultRule(FaultKind.INTERNAL, rate=0.07, ranged_only=True),
    FaultRule(FaultKind.THROTTLE, rate=0.05, ranged_only=True),
    FaultRule(FaultKind.RESET, rate=0.06, ranged_only=True),
    FaultRule(FaultKind.SLOW, rate=0.05, ranged_only=True),
    # Control calls (HeadObject, the .torrent GET and PUT) get 503s too: botocore retries those.
    FaultRule(FaultKind.SLOWDOWN, rate=0.10, methods=frozenset({"HEAD", "PUT", "GET"})),
]


# Both ways ranges are read: straight over HTTP on a presigned URL (the default) and through
# botocore (`read_transport: sdk`, used behind an HTTP proxy).
TRANSPORTS = pytest.mark.parametrize("transport", ["direct", "sdk"])


def settings_for(endpoint: str, bucket: str, **extra: Any) -> Settings:
    return Settings.from_mapping(
        {
            "buckets": [{"name": bucket}],
            "endpoint_url": endpoint,
            "read_part_bytes": PART,
            "read_window": WINDOW,
            **extra,
        }
    )


@pytest.fixture
def bucket(s3_client: Any) -> str:
    """A fresh bucket of its own for every test and parameter (tests/conftest.py's fixture
    names buckets after a test's first 55 characters, which parameters can fall beyond)."""
    return fresh_bucket(s3_client, "faults")


@pytest.fixture
def objects(s3_client: Any, bucket: str) -> dict[str, str]:
    """The test objects, uploaded straight to moto; their ETags by key."""
    etags = {}
    for key, data in OBJECTS.items():
        etags[key] = s3_client.put_object(Bucket=bucket, Key=key, Body=data)["ETag"]
    return etags


def baseline(service: TorrentService, bucket: str) -> dict[str, tuple[str | None, str | None]]:
    """Info hashes of a fault-free run (nothing written)."""
    hashes = {}
    for key in OBJECTS:
        result = service.make_torrent(ObjectRef(bucket, key), write=False)
        assert result.outcome is Outcome.CREATED and result.torrent_bytes
        torrent = read_torrent(result.torrent_bytes)
        hashes[key] = (torrent.info_hash_v1, torrent.info_hash_v2)
    return hashes


@pytest.mark.slow
@TRANSPORTS
def test_transient_faults_change_nothing_but_the_retry_count(
    fault_proxy: FaultProxy, s3_client: Any, bucket: str, objects: dict[str, str], transport: str
) -> None:
    service = build_service(settings_for(fault_proxy.url, bucket, read_transport=transport))
    clean = baseline(service, bucket)
    assert clean == {key: reference_hashes(data, key) for key, data in OBJECTS.items()}
    assert fault_proxy.policy.total_injected == 0

    fault_proxy.policy = FaultPolicy(TRANSIENT_RULES, seed=1, max_consecutive=2, slow_delay=0.002)
    results = {key: service.make_torrent(ObjectRef(bucket, key)) for key in OBJECTS}

    policy = fault_proxy.policy
    for key, result in results.items():
        assert result.outcome is Outcome.CREATED, (key, result)
        assert result.record is not None
        assert (result.record.info_hash_v1, result.record.info_hash_v2) == clean[key]
        assert result.record.source_etag == objects[key]
        stored = s3_client.get_object(Bucket=bucket, Key=key + ".torrent")
        torrent = read_torrent(stored["Body"].read())
        assert (torrent.info_hash_v1, torrent.info_hash_v2) == clean[key]
        assert stored["Metadata"]["source-etag"] == objects[key]
    assert sorted(torrent_keys(s3_client, bucket)) == sorted(k + ".torrent" for k in OBJECTS)

    # No source object was touched: every write went to a `.torrent` key.
    assert source_writes(policy.log) == []
    # Every ranged read was pinned to the ETag HeadObject saw.
    ranged = [e.info for e in policy.log if e.info.range]
    assert ranged and all(info.headers.get("if-match") == objects[info.key] for info in ranged)
    # The direct transport signs one URL per object (all its ranges, retries included, use
    # it); the SDK signs each request in its headers.
    assert all(info.is_presigned is (transport == "direct") for info in ranged)
    if transport == "direct":
        urls = {(info.key, info.query) for info in ranged}
        assert len(urls) == len(OBJECTS), urls

    # Bounded retries: some were needed, none wasted. A reader retry follows a failed range
    # attempt, so there are no more of them than faults injected on ranged GETs, and no
    # range is broken more than twice in a row (max_consecutive) by the proxy.
    data_faults = sum(1 for e in policy.log if e.info.range and e.fault not in (None, "slow"))
    retries = {key: r.counters.retries for key, r in results.items()}
    assert sum(retries.values()) > 0
    assert sum(retries.values()) <= data_faults
    for key, count in retries.items():
        assert count <= RANGES[key] * 2, (key, count)
    injected = Counter(e.fault for e in policy.log if e.fault)
    for kind in FaultKind:
        if kind is not FaultKind.STALL:
            assert injected[kind] > 0, f"no {kind} fault was injected: raise its rate"
    print(
        f"\nFAULTS transient ({transport}): {dict(sorted(policy.summary().items()))};"
        f" ranged GETs {len(ranged)} for {sum(RANGES.values())} ranges;"
        f" reader retries {sum(retries.values())} ({retries})"
    )


@pytest.mark.slow
@TRANSPORTS
@pytest.mark.parametrize("kind", [FaultKind.SLOWDOWN, FaultKind.THROTTLE, FaultKind.RESET])
def test_a_fault_that_never_clears_fails_clearly(
    fault_proxy: FaultProxy,
    s3_client: Any,
    bucket: str,
    objects: dict[str, str],
    kind: FaultKind,
    transport: str,
) -> None:
    service = build_service(settings_for(fault_proxy.url, bucket, read_transport=transport))
    fault_proxy.policy.set_rules([FaultRule(kind, key=r"^big\.bin$", ranged_only=True)])
    started = time.monotonic()
    with pytest.raises(TransientS3Error) as info:
        service.make_torrent(ObjectRef(bucket, "big.bin"))
    elapsed = time.monotonic() - started
    assert "big.bin" in str(info.value)
    assert f"failed {READER_ATTEMPTS} times in a row" in str(info.value)
    assert elapsed < 20, f"gave up after {elapsed:.1f}s"
    assert torrent_keys(s3_client, bucket) == []
    gets = sum(1 for e in fault_proxy.policy.log if e.info.range)
    # The reader tries each range READER_ATTEMPTS times, WINDOW ranges at once; nothing
    # under it retries (the SDK data client has botocore's retries off).
    assert gets <= WINDOW * READER_ATTEMPTS, gets
    # The other objects are unaffected by a fault on one key.
    assert service.make_torrent(ObjectRef(bucket, "a/b/mid.bin")).outcome is Outcome.CREATED
    print(
        f"\nFAULTS never-clearing {kind} ({transport}): {fault_proxy.policy.summary()};"
        f" {elapsed:.2f}s"
    )


def stall_service(
    proxy_url: str, bucket: str, stall_timeout: float, transport: str
) -> TorrentService:
    """The service as every entry point builds it, a silent socket failing its attempt after
    `stall_timeout` seconds (`read_stall_seconds`: the direct transport's socket timeout,
    the SDK data client's read timeout)."""
    return build_service(
        settings_for(proxy_url, bucket, read_stall_seconds=stall_timeout, read_transport=transport)
    )


@pytest.mark.slow
@TRANSPORTS
def test_a_stalled_range_is_abandoned_and_retried(
    fault_proxy: FaultProxy, s3_client: Any, bucket: str, objects: dict[str, str], transport: str
) -> None:
    # 2 s, not 0.5 s like its neighbours: this test counts retries exactly, and on two busy
    # cores an answer from the in-process moto server that is merely slow once took over
    # 0.5 s, a third, honest, retry.
    stall_timeout = 2.0
    service = stall_service(fault_proxy.url, bucket, stall_timeout, transport)
    fault_proxy.policy.set_rules(
        [FaultRule(FaultKind.STALL, key=r"^deep/er/bigger\.bin$", ranged_only=True, limit=2)]
    )
    started = time.monotonic()
    result = service.make_torrent(ObjectRef(bucket, "deep/er/bigger.bin"))
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.CREATED
    assert result.record is not None
    key = "deep/er/bigger.bin"
    assert (result.record.info_hash_v1, result.record.info_hash_v2) == reference_hashes(
        OBJECTS[key], key
    )
    assert fault_proxy.policy.injected[FaultKind.STALL] == 2
    assert result.counters.retries == 2
    # Two stalls, at once or one after the other, each abandoned after stall_timeout.
    assert stall_timeout <= elapsed < 2 * stall_timeout + 3, elapsed
    print(f"\nFAULTS stall x2 ({transport}): retries {result.counters.retries}, {elapsed:.2f}s")


@pytest.mark.slow
@TRANSPORTS
def test_a_whole_window_stalling_at_once_recovers_within_the_stall_timeout(
    fault_proxy: FaultProxy, s3_client: Any, bucket: str, objects: dict[str, str], transport: str
) -> None:
    """Every connection of the window silent at once: each socket's own timeout frees its
    thread, so the retries start together after one stall_timeout, not one after another
    (and not after the proxy's 10 s)."""
    stall_timeout = 2.0  # counts retries exactly: see the test above
    service = stall_service(fault_proxy.url, bucket, stall_timeout, transport)
    fault_proxy.policy = FaultPolicy(
        [FaultRule(FaultKind.STALL, key=r"^big\.bin$", ranged_only=True, limit=WINDOW)],
        stall_seconds=10,
    )
    started = time.monotonic()
    result = service.make_torrent(ObjectRef(bucket, "big.bin"))
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.CREATED
    assert result.record is not None
    assert (result.record.info_hash_v1, result.record.info_hash_v2) == reference_hashes(
        OBJECTS["big.bin"], "big.bin"
    )
    stalls = fault_proxy.policy.injected[FaultKind.STALL]
    assert stalls >= 1 and result.counters.retries == stalls
    # WINDOW stalls one after another would take WINDOW x stall_timeout at least.
    assert elapsed < stall_timeout * 2 + 1.0, f"{stalls} stalls took {elapsed:.2f}s"
    print(f"\nFAULTS window stall ({transport}): {stalls} stalls, {elapsed:.2f}s")


@pytest.mark.slow
@TRANSPORTS
def test_a_range_that_always_stalls_fails_in_bounded_time(
    fault_proxy: FaultProxy, s3_client: Any, bucket: str, objects: dict[str, str], transport: str
) -> None:
    service = stall_service(fault_proxy.url, bucket, 0.5, transport)
    # The proxy holds a stalled answer 10 s at most (then resets it), so that a reader that
    # does not give up by itself fails this test in seconds rather than hanging.
    fault_proxy.policy = FaultPolicy(
        [FaultRule(FaultKind.STALL, key=r"^a/b/mid\.bin$", ranged_only=True)], stall_seconds=10
    )
    started = time.monotonic()
    with pytest.raises(
        TransientS3Error, match=rf"failed {READER_ATTEMPTS} times.*(?i:timed? ?out)"
    ):
        service.make_torrent(ObjectRef(bucket, "a/b/mid.bin"))
    elapsed = time.monotonic() - started
    # READER_ATTEMPTS socket timeouts plus the backoffs between them (0.1 + ... + 0.8 s).
    assert elapsed < READER_ATTEMPTS * 0.5 + 1.5 + 1.0, elapsed
    assert torrent_keys(s3_client, bucket) == []
    print(f"\nFAULTS stall forever: {fault_proxy.policy.summary()}; failed after {elapsed:.2f}s")
