"""Fan-out builds over real HTTP: what S3 sees, a part whose worker dies, an overwrite mid-build.

S3 goes through the counting fault proxy to moto's server; DynamoDB (the progress table) and
SQS (the worker queue) go straight to the same server. The service is built as the deployed
worker builds it (`wiring.build_objects`, both range transports) with a fan-out store and
queue, and every part message is handled by `Worker.handle_body`, as the worker Lambda does.

- Request count: a part costs exactly its ranged GETs (ceil(part / GET size), from the plan)
  and nothing else on S3; the whole build adds one HEAD + PUT + HEAD at the assembly,
  whatever the number of parts (16 and 5 here).
- A part whose worker dies mid-read (killed outright, or giving up on a GET that keeps
  resetting) leaves its SQS message undeleted: it comes back after the visibility timeout
  (ApproximateReceiveCount 2), is handled, and the build ends with the single-pass torrent,
  byte for byte.
- An object overwritten between two parts: the next part's If-Match GET answers 412 over
  HTTP, the build fails with the reason, no torrent is written, the part records and the
  manifest are gone, and the parts still queued make no S3 request at all.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from s3torrent.errors import TransientS3Error
from s3torrent.fanout.plan import plan_parts
from s3torrent.model import ObjectRef, Outcome
from s3torrent.s3.reader import RangeBody, RangeSource
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.wiring import build_objects
from s3torrent.worker import Delivery, Worker
from s3torrent_local.stack import create_progress_table
from tests.support.fanout import fanout_service
from tests.support.faults.helpers import fresh_bucket, source_writes, torrent_keys
from tests.support.faults.proxy import (
    FaultKind,
    FaultProxy,
    FaultRule,
    RequestInfo,
    RequestLog,
)

pytestmark = pytest.mark.integration

KiB = 1024
PIECE = 16 * KiB  # the smallest piece length: many pieces per part, cheap to hash
GET_BYTES = 64 * KiB  # the smallest read_part_bytes Settings allows
PART_BYTES = 4 * GET_BYTES  # each part takes several GETs
KEY = "big/fanned out.bin"  # a space: every path is percent-encoded on the wire

# Both ways ranges are read: straight over HTTP on a presigned URL, and through botocore.
TRANSPORTS = pytest.mark.parametrize("transport", ["direct", "sdk"])

# Two object sizes with different part counts: the last part short, and (second) shorter
# than one GET, so both of `_hash_part`'s paths (one GET, several GETs) are counted.
SIZES = (15 * PART_BYTES + 100 * KiB + 5, 4 * PART_BYTES + 40 * KiB + 7)


# -- the rig: S3 through the proxy, DynamoDB and SQS straight to moto ----------------------


@dataclass
class Rig:
    """One test's bucket, progress table and worker queue, and how to build its services."""

    proxy: FaultProxy
    s3: Any  # straight to moto: the test's own puts and reads are not counted
    dynamodb: Any
    sqs: Any
    bucket: str
    table: str
    queue_url: str

    def settings(self, transport: str, **values: Any) -> Settings:
        return Settings.from_mapping(
            {
                "buckets": [{"name": self.bucket}],
                "endpoint_url": self.proxy.url,
                "piece_length": PIECE,
                "fanout_part_bytes": PART_BYTES,
                "read_part_bytes": GET_BYTES,
                "read_window": 4,
                "read_transport": transport,
                "queue_url": self.queue_url,
                "backfill_table": self.table,
                **values,
            }
        )

    def service(self, transport: str, *, fanout: bool = True) -> TorrentService:
        """A service as a worker process builds it: a fresh one stands for a fresh process."""
        settings = self.settings(transport)
        objects = build_objects(settings)
        if not fanout:
            return TorrentService(settings, objects)
        return fanout_service(
            settings, objects, self.dynamodb, self.table, self.sqs, self.queue_url
        )

    def receive(self, most: int = 10, wait: int = 0) -> list[dict[str, Any]]:
        """Messages from the worker queue (not deleted), with their receive counts."""
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=most,
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return list(response.get("Messages", []))

    def take_all(self) -> list[str]:
        """Every queued body, each deleted once received (the order SQS gave them)."""
        bodies: list[str] = []
        while messages := self.receive():
            for message in messages:
                bodies.append(message["Body"])
                self.delete(message)
        return bodies

    def delete(self, message: dict[str, Any]) -> None:
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def items(self) -> list[str]:
        """Every item id in the progress table (the table is this test's alone)."""
        return [i["backfill_id"]["S"] for i in self.dynamodb.scan(TableName=self.table)["Items"]]


@pytest.fixture
def rig(
    fault_proxy: FaultProxy, moto_endpoint: str, s3_client: Any, sqs_client: Any
) -> Iterator[Rig]:
    name = f"fanout-{uuid.uuid4().hex[:12]}"
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    create_progress_table(dynamodb, name)
    # A short visibility timeout: a delivery that dies unheard comes back in 2 s, not 90 min.
    url = sqs_client.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
    try:
        yield Rig(
            fault_proxy,
            s3_client,
            dynamodb,
            sqs_client,
            fresh_bucket(s3_client, "fanout"),
            name,
            url,
        )
    finally:
        sqs_client.delete_queue(QueueUrl=url)
        dynamodb.delete_table(TableName=name)


# -- what the proxy saw --------------------------------------------------------------------


def kind_of(entry: RequestLog) -> str:
    """A request by what it costs: a ranged GET of the source, a HEAD, a PUT, or other."""
    info = entry.info
    if info.method == "GET" and info.is_object_get and info.range and info.key == KEY:
        return "ranged GET"
    if info.method in ("HEAD", "PUT"):
        return info.method
    return "other"


def kinds(log: list[RequestLog]) -> Counter[str]:
    return Counter(kind_of(entry) for entry in log)


_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def span(info: RequestInfo) -> tuple[int, int]:
    """[start, stop) of a ranged GET."""
    found = _RANGE.fullmatch(info.range or "")
    assert found, info.range
    return int(found[1]), int(found[2]) + 1


def part_spans(size: int) -> list[tuple[int, int]]:
    """[start, stop) of every part of an object of `size` bytes, as `plan.py` cuts it."""
    spans = []
    for slices in plan_parts([size], PIECE, PART_BYTES):
        assert len(slices) == 1  # an object is one unit: one slice per part
        spans.append((slices[0].start, slices[0].stop))
    return spans


def gets_of(part_size: int) -> int:
    """Ranged GETs one part needs: `read_part_bytes` each, rounded down to whole pieces
    (s3/reader.py `ReaderConfig.parts`), or one piece when pieces are bigger."""
    step = max(PIECE, GET_BYTES // PIECE * PIECE)
    return -(-part_size // step)


def part_of(body: str) -> int:
    return int(json.loads(body)["part"])


def single_pass(rig: Rig, transport: str) -> bytes:
    """The torrent one process hashing the whole object makes (nothing written)."""
    result = rig.service(transport, fanout=False).make_torrent(
        ObjectRef(rig.bucket, KEY), force=True, write=False
    )
    assert result.outcome is Outcome.CREATED and result.torrent_bytes is not None
    return result.torrent_bytes


def stored_torrent(rig: Rig) -> bytes:
    body: bytes = rig.s3.get_object(Bucket=rig.bucket, Key=KEY + ".torrent")["Body"].read()
    return body


def leftovers(rig: Rig) -> list[str]:
    """Part records and manifest chunks still in the table (a finished build has none)."""
    return [i for i in rig.items() if i.startswith(("fanout-part:", "fanout-manifest:"))]


# -- 1. what a fan-out build costs in S3 requests -----------------------------------------


@TRANSPORTS
def test_a_fanout_build_costs_its_ranged_gets_and_a_constant(rig: Rig, transport: str) -> None:
    policy = rig.proxy.policy
    constants: dict[int, Counter[str]] = {}
    for seed, size in enumerate(SIZES):
        data = random.Random(size).randbytes(size)
        etag = rig.s3.put_object(Bucket=rig.bucket, Key=KEY, Body=data)["ETag"]
        rig.s3.delete_object(Bucket=rig.bucket, Key=KEY + ".torrent")  # the last build's
        spans = part_spans(size)
        expected = [gets_of(stop - start) for start, stop in spans]
        service = rig.service(transport)

        policy.reset_counts()
        assert service.make_torrent(ObjectRef(rig.bucket, KEY)).outcome is Outcome.STARTED
        started = kinds(policy.log)  # HEAD of the object, GET of a torrent that is not there
        bodies = rig.take_all()
        assert sorted(part_of(body) for body in bodies) == list(range(len(spans)))

        # From here on only the parts run. Handled one at a time, in an order not the
        # plan's, so every request is pinned on the part that made it.
        random.Random(seed).shuffle(bodies)
        policy.reset_counts()
        worker = Worker(service, None)
        per_part: dict[int, list[RequestLog]] = {}
        for body in bodies:
            mark = len(policy.log)
            worker.handle_body(body, Delivery())
            per_part[part_of(body)] = policy.log[mark:]
        assembler = part_of(bodies[-1])  # the last one counted completes the build

        total = kinds(policy.log)
        others = total - Counter({"ranged GET": total["ranged GET"]})
        print(
            f"\nFANOUT {transport}, {size} B in {len(spans)} parts of {PART_BYTES} B,"
            f" GETs of {GET_BYTES} B: start {dict(started)};"
            f" parts {dict(total)} (ranged GETs expected {sum(expected)})"
        )
        for index, (start, stop) in enumerate(spans):
            seen = per_part[index]
            gets = [e for e in seen if kind_of(e) == "ranged GET"]
            # Exactly the part's bytes, each once: no overlap, no gap, nothing outside it.
            ranges = sorted(span(e.info) for e in gets)
            assert ranges[0][0] == start and ranges[-1][1] == stop, (index, ranges)
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
            assert len(gets) == expected[index], (index, ranges)
            assert all(e.status == 206 and e.info.headers.get("if-match") == etag for e in gets)
            rest = kinds(seen) - Counter({"ranged GET": len(gets)})
            # A part costs its GETs and nothing else on S3; the assembler adds the write.
            want = Counter({"HEAD": 2, "PUT": 1}) if index == assembler else Counter()
            assert rest == want, (index, rest)
        assert total["ranged GET"] == sum(expected)
        assert others == Counter({"HEAD": 2, "PUT": 1}), others
        assert started == Counter({"HEAD": 1, "other": 1}), started
        assert source_writes(policy.log) == []
        constants[len(spans)] = others

        state = service.build_state(rig.bucket, KEY)
        assert state is not None and state.status == "done" and state.parts_done == len(spans)
        assert stored_torrent(rig) == single_pass(rig, transport)
        assert leftovers(rig) == []

    # The non-GET requests of a build are the same for 16 parts as for 5.
    assert sorted(constants) == [5, 16]
    assert constants[5] == constants[16]


# -- 2. a part's worker dies mid-part: its message comes back ------------------------------


class WorkerKilled(BaseException):
    """Stands in for the process dying (SIGKILL, the function's timeout, out of memory): a
    BaseException, so no `except Exception` of the service's runs after it, and the worker
    neither fails the build nor deletes the message, exactly as when the process is gone."""


class _DyingBody:
    """A real HTTP body that hands over its first `keep` bytes, then the process dies."""

    def __init__(self, body: RangeBody, keep: int) -> None:
        self.body = body
        self.keep = keep

    def readinto(self, buffer: memoryview, /) -> int:
        if self.keep <= 0:
            raise WorkerKilled("killed mid-part")
        got = self.body.readinto(buffer[: self.keep])
        self.keep -= got
        return got

    def close(self) -> None:
        self.body.close()


class _DyingSource:
    """Ranges as the transport reads them, but the one starting at `at` dies partway."""

    def __init__(self, source: RangeSource, at: int) -> None:
        self.source = source
        self.at = at

    def open_range(self, start: int, end: int, /) -> RangeBody:
        body = self.source.open_range(start, end)
        return _DyingBody(body, PIECE) if start == self.at else body


@dataclass
class _PartResets(FaultRule):
    """Reset every GET of one part's bytes (the other parts read undisturbed)."""

    start: int = 0
    stop: int = 0

    def matches(self, request: RequestInfo) -> bool:
        return super().matches(request) and self.start <= span(request)[0] < self.stop


@TRANSPORTS
@pytest.mark.parametrize("death", ["killed", "gave-up"])
def test_a_part_whose_worker_dies_comes_back_and_the_build_completes(
    rig: Rig, transport: str, death: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = SIZES[0]
    data = random.Random(12).randbytes(size)
    rig.s3.put_object(Bucket=rig.bucket, Key=KEY, Body=data)
    expected = single_pass(rig, transport)
    spans = part_spans(size)
    assert rig.service(transport).make_torrent(ObjectRef(rig.bucket, KEY)).outcome is (
        Outcome.STARTED
    )

    # The first delivery: one message, handled by a process that dies partway through its
    # part's second GET. The message is not deleted (nobody is left to delete it).
    [first] = rig.receive(most=1)
    assert first["Attributes"]["ApproximateReceiveCount"] == "1"
    doomed = part_of(first["Body"])
    start, stop = spans[doomed]
    dying = rig.service(transport)
    policy = rig.proxy.policy
    policy.reset_counts()
    if death == "killed":
        real = dying.objects.range_source
        monkeypatch.setattr(
            dying.objects, "range_source", lambda info: _DyingSource(real(info), start + GET_BYTES)
        )
        with pytest.raises(WorkerKilled):
            Worker(dying, None).handle_body(first["Body"], Delivery())
        # It died after real bytes of that very GET came over HTTP.
        assert any(span(e.info)[0] == start + GET_BYTES for e in policy.log if e.info.range)
    else:
        # Every GET of this part is cut halfway by a TCP reset: the reader retries each
        # range, gives up (TransientS3Error), and the worker hands that to SQS to retry.
        policy.set_rules([_PartResets(FaultKind.RESET, ranged_only=True, start=start, stop=stop)])
        with pytest.raises(TransientS3Error, match=r"failed \d+ times in a row"):
            Worker(dying, None).handle_body(first["Body"], Delivery())
        policy.set_rules([])
        assert policy.injected[FaultKind.RESET] >= 5
    state = dying.build_state(rig.bucket, KEY)
    assert state is not None and state.status == "running", state
    assert doomed not in state.done_parts and state.parts_done == 0
    assert not [i for i in rig.items() if i.endswith(f"/{doomed}")]  # no part record

    # Later deliveries go to a fresh process. One message per receive, so every other
    # message is handled well within its own visibility timeout.
    service = rig.service(transport)
    worker = Worker(service, None)
    receives: dict[int, list[int]] = {doomed: [1]}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        messages = rig.receive(most=1, wait=1)
        for message in messages:
            count = int(message["Attributes"]["ApproximateReceiveCount"])
            receives.setdefault(part_of(message["Body"]), []).append(count)
            last = count >= service.settings.job_max_receives
            worker.handle_body(message["Body"], Delivery(last=last))
            rig.delete(message)
        state = service.build_state(rig.bucket, KEY)
        assert state is not None, "the build vanished"
        assert state.status != "failed", state.reason
        if state.status == "done":
            break
    print(f"\nFANOUT {death} ({transport}): part {doomed} delivered {receives[doomed]}")
    assert receives[doomed] == [1, 2], receives  # back once, with ApproximateReceiveCount 2
    assert sorted(receives) == list(range(len(spans)))
    state = service.build_state(rig.bucket, KEY)
    assert state is not None and state.status == "done" and state.parts_done == len(spans)
    assert stored_torrent(rig) == expected
    assert leftovers(rig) == []
    assert rig.receive(most=10) == []


# -- 3. overwritten between two parts ------------------------------------------------------


@TRANSPORTS
def test_an_object_overwritten_between_parts_fails_on_the_next_ranged_get(
    rig: Rig, transport: str
) -> None:
    size = SIZES[0]
    rng = random.Random(33)
    old = rig.s3.put_object(Bucket=rig.bucket, Key=KEY, Body=rng.randbytes(size))["ETag"]
    service = rig.service(transport)
    assert service.make_torrent(ObjectRef(rig.bucket, KEY)).outcome is Outcome.STARTED
    bodies = rig.take_all()
    worker = Worker(service, None)
    for body in bodies[:3]:
        worker.handle_body(body, Delivery())
    # Same size: only the ETag tells the new bytes from the old, so only If-Match can.
    new = rig.s3.put_object(Bucket=rig.bucket, Key=KEY, Body=rng.randbytes(size))["ETag"]
    assert new != old

    policy = rig.proxy.policy
    policy.reset_counts()
    worker.handle_body(bodies[3], Delivery())  # not raised: a change is never worth a retry
    refused = [e for e in policy.log if kind_of(e) == "ranged GET" and e.status == 412]
    assert refused, [(e.info.range, e.status) for e in policy.log]
    assert all(e.info.headers.get("if-match") == old for e in refused)
    state = service.build_state(rig.bucket, KEY)
    assert state is not None and state.status == "failed", state
    assert "changed or was deleted mid-build" in (state.reason or ""), state.reason
    assert state.parts_done == 3

    # The rest of the parts find the build over: not one S3 request between them.
    mark = len(policy.log)
    for body in bodies[4:]:
        worker.handle_body(body, Delivery())
    assert policy.log[mark:] == []
    print(
        f"\nFANOUT overwrite ({transport}): {len(refused)} GETs answered 412;"
        f" reason: {state.reason}"
    )
    assert torrent_keys(rig.s3, rig.bucket) == []
    assert leftovers(rig) == []
    assert source_writes(policy.log) == []
