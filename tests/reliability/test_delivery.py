"""SQS delivers at least once and in any order; some messages are poison. The worker copes.

Everything goes through the worker Lambda's real entry point,
`s3torrent.handlers.worker.lambda_handler`, with SQS events built from the fixtures in
tests/events (the bodies are the S3 notifications moto/S3 send), against moto's server.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest

from s3torrent.backfill.progress import ProgressStore, StepClaim
from s3torrent.handlers import worker as worker_handler
from s3torrent.handlers.runtime import Runtime
from s3torrent.messages import JobMessage
from s3torrent.settings import Settings
from s3torrent.torrent import read_torrent
from s3torrent.worker import WRITE_MARGIN_SECONDS
from s3torrent_local.lambda_context import FakeLambdaContext
from s3torrent_local.queues import EventSource, QueueConsumer
from tests.support.faults.events import created, load, removed, s3_notification, sqs_event
from tests.support.faults.helpers import reference_hashes, source_writes, torrent_keys
from tests.support.faults.proxy import FaultKind, FaultProxy, FaultRule
from tests.support.handlers import client, make_resources

pytestmark = pytest.mark.integration

KEY = "inbox/report 2026+final.bin"  # a space and a '+': notification keys are URL-encoded


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch, bucket: str, moto_endpoint: str) -> Iterator[Any]:
    """The worker Lambda, configured for this test's bucket on moto (direct, no proxy)."""

    def use(endpoint: str = moto_endpoint, **extra: Any) -> Any:
        settings = Settings.from_mapping(
            {"buckets": [{"name": bucket}], "endpoint_url": endpoint, **extra}
        )
        monkeypatch.setattr(worker_handler, "runtime", Runtime(settings))
        return invoke

    def invoke(*bodies: str) -> dict[str, Any]:
        event = sqs_event(*bodies)
        response: dict[str, Any] = worker_handler.lambda_handler(
            event, FakeLambdaContext("s3torrent-worker", 60)
        )
        return response

    use()
    yield use


def settled(s3_client: Any, bucket: str, expected: bytes | None) -> None:
    """The bucket holds the torrent of `expected` (the current object), or none if deleted."""
    keys = torrent_keys(s3_client, bucket)
    assert not [k for k in keys if k.endswith(".torrent.torrent")]
    if expected is None:
        assert keys == []
        return
    assert keys == [KEY + ".torrent"]
    current = s3_client.head_object(Bucket=bucket, Key=KEY)["ETag"]
    stored = s3_client.get_object(Bucket=bucket, Key=KEY + ".torrent")
    assert stored["Metadata"]["source-etag"] == current
    torrent = read_torrent(stored["Body"].read())
    assert (torrent.info_hash_v1, torrent.info_hash_v2) == reference_hashes(expected, KEY)


@pytest.mark.slow
def test_duplicate_and_reordered_events_settle_on_the_current_object(
    worker: Any, s3_client: Any, bucket: str
) -> None:
    """All 4! orders of (put, put, delete, put), each event delivered twice, one at a time,
    against every final state those operations can leave: the torrent of what is there now."""
    invoke = worker()
    rng = random.Random(5)
    versions = [rng.randbytes(n) for n in (70_001, 1_234, 300_000)]
    events = [
        created(bucket, KEY),
        created(bucket, KEY),
        removed(bucket, KEY),
        created(bucket, KEY),
    ]
    tried = 0
    # The operations happened in order put v0, put v1, delete, put v2 and the events arrive
    # after the fact, in any order, duplicated; the final state is v2, or gone (no last put).
    for final in (versions[2], None):
        s3_client.put_object(Bucket=bucket, Key=KEY, Body=versions[0])
        s3_client.put_object(Bucket=bucket, Key=KEY, Body=versions[1])
        s3_client.delete_object(Bucket=bucket, Key=KEY)
        if final is not None:
            s3_client.put_object(Bucket=bucket, Key=KEY, Body=final)
        for order in itertools.permutations(range(len(events))):
            for index in order:
                for _ in range(2):  # at least once: every event comes twice
                    assert invoke(events[index]) == {"batchItemFailures": []}
            settled(s3_client, bucket, final)
            tried += 1
        # Also all at once, duplicates and a torrent key's own event in the same batch.
        batch = [*events, *events, created(bucket, KEY + ".torrent")]
        rng.shuffle(batch)
        assert invoke(*batch) == {"batchItemFailures": []}
        settled(s3_client, bucket, final)
        for key in torrent_keys(s3_client, bucket):
            s3_client.delete_object(Bucket=bucket, Key=key)
    print(f"\nDELIVERY orders tried: {tried} x 2 final states, each event delivered twice")


def test_events_interleaved_with_changes_settle(worker: Any, s3_client: Any, bucket: str) -> None:
    """Events processed between the operations, late and duplicated: each step settles."""
    invoke = worker()
    rng = random.Random(6)
    late: list[str] = []
    current: bytes | None = None
    for step in range(12):
        if current is not None and rng.random() < 0.3:
            s3_client.delete_object(Bucket=bucket, Key=KEY)
            current = None
            late.append(removed(bucket, KEY))
        else:
            current = rng.randbytes(rng.randint(1, 200_000))
            s3_client.put_object(Bucket=bucket, Key=KEY, Body=current)
            late.append(created(bucket, KEY))
        # Deliver a random, duplicated, reordered selection of everything sent so far, then
        # the latest event last (SQS delivers it eventually): the state must settle.
        stale = rng.sample(late, k=min(len(late), 3))
        assert invoke(*stale, *stale) == {"batchItemFailures": []}
        assert invoke(late[-1]) == {"batchItemFailures": []}
        settled(s3_client, bucket, current)
        assert step >= 0


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_poison_messages_are_logged_and_acknowledged_the_rest_unaffected(
    worker: Any,
    fault_proxy: FaultProxy,
    s3_client: Any,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker(fault_proxy.url)
    good = {f"good/{n}.bin": random.Random(n).randbytes(1000 + n) for n in range(3)}
    for key, data in good.items():
        s3_client.put_object(Bucket=bucket, Key=key, Body=data)
    s3_client.put_object(Bucket=bucket, Key="cursed.bin", Body=b"never readable" * 1000)
    # "cursed.bin" can never be read: every GET of it resets mid-body.
    fault_proxy.policy.set_rules([FaultRule(FaultKind.RESET, key=r"^cursed\.bin$")])

    poison = [record["body"] for record in load("sqs_poison.json")["Records"]]
    bodies = [
        created(bucket, "good/0.bin"),
        *poison[:4],  # not JSON; unknown type; ObjectRestore event type; job without a key
        created(bucket, "cursed.bin"),
        s3_notification("ObjectCreated:Put", "not-an-allowed-bucket", "x.bin"),
        created(bucket, "good/1.bin"),
        f'{{"type": "s3torrent.job", "bucket": "{bucket}", "key": "good/2.bin"}}',
        "[]",
    ]
    event = sqs_event(*bodies)
    ids = [record["messageId"] for record in event["Records"]]
    with caplog.at_level(logging.INFO):
        response = worker_handler.lambda_handler(event, FakeLambdaContext("s3torrent-worker", 60))

    # Only the message worth retrying comes back (then goes to the DLQ); the others are done.
    assert response == {"batchItemFailures": [{"itemIdentifier": ids[5]}]}
    assert sorted(torrent_keys(s3_client, bucket)) == sorted(k + ".torrent" for k in good)
    for key, data in good.items():
        body = s3_client.get_object(Bucket=bucket, Key=key + ".torrent")["Body"].read()
        torrent = read_torrent(body)
        assert (torrent.info_hash_v1, torrent.info_hash_v2) == reference_hashes(data, key)
    assert source_writes(fault_proxy.policy.log) == []
    reasons = [getattr(r, "reason", None) or r.getMessage() for r in _warnings(caplog)]
    text = "\n".join(str(r) for r in reasons)
    for expected in (
        "not JSON",
        "unknown message type",
        "unsupported S3 event type",
        "malformed job message",
        "cursed.bin",
        "not a JSON object",
    ):
        assert expected in text, f"no log says {expected!r}:\n{text}"
    print(f"\nPOISON: {len(bodies)} messages, reasons logged: {len(reasons)}")


def through_a_redrive_queue(
    sqs_client: Any, name: str, bodies: list[str], max_receive_count: int
) -> tuple[list[str], int]:
    """Send `bodies` to a real (moto) queue with a DLQ, polled like Lambda does until it is
    empty: (the bodies that reached the DLQ, polls)."""
    dlq_url = sqs_client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs_client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
    queue_url = sqs_client.create_queue(
        QueueName=f"{name}-q", Attributes={"RedrivePolicy": json.dumps(redrive)}
    )["QueueUrl"]
    for body in bodies:
        sqs_client.send_message(QueueUrl=queue_url, MessageBody=body)
    consumer = QueueConsumer(
        sqs_client,
        EventSource(
            function_name="s3torrent-worker",
            queue_url=queue_url,
            queue_arn=queue_url,
            handler=lambda: worker_handler.lambda_handler,
            timeout_seconds=60,
            max_receive_count=max_receive_count,
            retry_delay_seconds=0,
            poll_seconds=0,
        ),
    )
    polls = 0
    while consumer.poll_once() and polls < 10:
        polls += 1
    assert polls < 10
    left = sqs_client.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages", [])
    assert left == []
    dead = sqs_client.receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", [])
    return [message["Body"] for message in dead], polls


@pytest.mark.slow
def test_a_message_that_never_succeeds_ends_in_the_dlq(
    worker: Any, fault_proxy: FaultProxy, s3_client: Any, sqs_client: Any, bucket: str
) -> None:
    """Through a real (moto) queue with a redrive policy, polled like Lambda does."""
    worker(fault_proxy.url, job_max_receives=2)
    s3_client.put_object(Bucket=bucket, Key="cursed.bin", Body=b"x" * 5000)
    s3_client.put_object(Bucket=bucket, Key="fine.bin", Body=b"y" * 5000)
    fault_proxy.policy.set_rules([FaultRule(FaultKind.SLOWDOWN, key=r"^cursed\.bin$")])
    bodies = [created(bucket, "cursed.bin"), created(bucket, "fine.bin"), "not json"]
    dead, polls = through_a_redrive_queue(sqs_client, bucket, bodies, max_receive_count=2)
    assert dead == [created(bucket, "cursed.bin")]
    assert torrent_keys(s3_client, bucket) == ["fine.bin.torrent"]
    print(f"\nDLQ: {polls} polls; faults {fault_proxy.policy.summary()}")


@pytest.mark.slow
def test_a_backfill_job_that_ends_in_the_dlq_is_counted_failed_and_the_backfill_completes(
    worker: Any,
    fault_proxy: FaultProxy,
    s3_client: Any,
    sqs_client: Any,
    bucket: str,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job retried until SQS gives up on it must not leave its backfill waiting forever."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    table = make_resources(moto_endpoint).table
    progress = ProgressStore(client("dynamodb", moto_endpoint), table)
    assert progress.create("bf-dlq", bucket, "")
    assert progress.claim_step("bf-dlq", 0, "test", 60) is StepClaim.CLAIMED
    assert progress.commit_step("bf-dlq", 0, "test", {"listed": 2, "queued": 2}, next_message=None)
    assert progress.get("bf-dlq").state == "listed"  # type: ignore[union-attr]
    worker(fault_proxy.url, backfill_table=table, job_max_receives=3)
    s3_client.put_object(Bucket=bucket, Key="cursed.bin", Body=b"x" * 5000)
    s3_client.put_object(Bucket=bucket, Key="fine.bin", Body=b"y" * 5000)
    fault_proxy.policy.set_rules([FaultRule(FaultKind.SLOWDOWN, key=r"^cursed\.bin$")])
    jobs = [
        JobMessage(bucket=bucket, key=key, backfill_id="bf-dlq").to_body()
        for key in ("cursed.bin", "fine.bin")
    ]
    with caplog.at_level(logging.WARNING):
        dead, _ = through_a_redrive_queue(sqs_client, bucket, jobs, max_receive_count=3)
    assert dead == [jobs[0]]
    assert torrent_keys(s3_client, bucket) == ["fine.bin.torrent"]
    final = progress.get("bf-dlq")
    assert final is not None
    assert (final.state, final.counters["done"], final.counters["failed"]) == ("complete", 1, 1)
    text = caplog.text
    assert text.count("retrying") >= 2  # the first two deliveries of cursed.bin
    assert "last delivery failed: off to the dead-letter queue" in text


@pytest.mark.slow
def test_a_read_the_invocation_cannot_finish_fails_only_its_record(
    worker: Any,
    fault_proxy: FaultProxy,
    s3_client: Any,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker stops a read that would outlive its invocation, keeping time to report the
    batch: the other record's torrent is made and only the slow one comes back."""
    worker(fault_proxy.url)
    s3_client.put_object(Bucket=bucket, Key="slow.bin", Body=b"s" * (8 << 20))
    s3_client.put_object(Bucket=bucket, Key="fine.bin", Body=b"f" * 5000)
    # 16 KiB every 5 ms: the 8 MiB read takes seconds, the first progress tick comes at 1 s.
    fault_proxy.policy.set_rules([FaultRule(FaultKind.SLOW, key=r"^slow\.bin$")])
    event = sqs_event(created(bucket, "fine.bin"), created(bucket, "slow.bin"))
    # Half a second more than the margin a worker keeps to write a torrent.
    context = FakeLambdaContext("s3torrent-worker", WRITE_MARGIN_SECONDS + 0.5)
    with caplog.at_level(logging.WARNING):
        response = worker_handler.lambda_handler(event, context)
    slow_id = event["Records"][1]["messageId"]
    assert response == {"batchItemFailures": [{"itemIdentifier": slow_id}]}
    assert torrent_keys(s3_client, bucket) == ["fine.bin.torrent"]
    reasons = [str(getattr(record, "reason", "")) for record in caplog.records]
    assert any("of the invocation left; retrying" in reason for reason in reasons), reasons
    assert context.get_remaining_time_in_millis() > 10_000  # stopped well before the end
