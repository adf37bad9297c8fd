"""The local stack's fixes to moto's SQS give moto's own answers, and are cheaper."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.sqs.models import sqs_backends

from s3torrent_local import moto_fixes


def scenario() -> dict[str, Any]:
    """Queue operations whose answers depend on the clock and on the retention check."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    for n in range(6):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}", DelaySeconds=30 if n < 2 else 0)
    # Two messages sent 61 s ago: past the queue's retention period, never received.
    queue = sqs_backends["123456789012"]["us-east-1"].queues["q"]
    for message in queue._messages[-2:]:
        message.sent_timestamp -= 61_000
    received = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=0
    )["Messages"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {
        "received": sorted(message["Body"] for message in received),
        "visible": attributes["ApproximateNumberOfMessages"],
        "in_flight": attributes["ApproximateNumberOfMessagesNotVisible"],
        "delayed": attributes["ApproximateNumberOfMessagesDelayed"],
    }


def test_queue_answers_are_moto_s() -> None:
    with mock_aws():
        shipped = scenario()
    moto_fixes.install()
    try:
        with mock_aws():
            fixed = scenario()
    finally:
        moto_fixes.uninstall()
    assert fixed == shipped
    assert fixed["received"] == ["m2", "m3"]  # m0, m1 delayed; m4, m5 past retention
    assert fixed["delayed"] == "2"


def test_now_is_the_same_clock() -> None:
    moto_fixes.install()
    try:
        before = time.time()
        fixed = moto_fixes.unix_time()
        original = moto_fixes._ORIGINAL_UNIX_TIME()
        after = time.time()
        assert before <= fixed <= after
        assert before - 0.001 <= original <= after + 0.001
        assert abs(moto_fixes.unix_time_millis() / 1000 - time.time()) < 0.5
    finally:
        moto_fixes.uninstall()


@mock_aws
def test_receiving_no_longer_computes_every_attribute_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto builds all of a queue's attributes (an O(depth) count) once per message it
    receives, which made a deep queue quadratic; the fix reads the retention period only."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="deep")["QueueUrl"]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": str(n)} for n in range(10)]
    )
    calls = []
    backend_class = type(sqs_backends["123456789012"]["us-east-1"])
    original = backend_class.get_queue_attributes

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(backend_class, "get_queue_attributes", counted)

    def receive() -> int:
        calls.clear()
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        assert len(answer["Messages"]) == 10
        return len(calls)

    assert receive() >= 10  # moto as it ships: once per message
    moto_fixes.install()
    try:
        assert receive() == 0
    finally:
        moto_fixes.uninstall()


def concurrent_deletes_and_sends(rounds: int = 5) -> tuple[int, int]:
    """Delete received messages from 8 threads while 2 threads send: (stuck, lost)."""
    backend = sqs_backends["123456789012"]["us-east-1"]
    stuck = lost = 0
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show at once
    try:
        for n in range(rounds):
            name = f"race-{n}"
            backend.create_queue(name)
            for i in range(400):
                backend.send_message(name, f"old {i}")
            handles = [
                message.receipt_handle
                for _ in range(40)
                for message in backend.receive_message(name, 10, 0, 3600)
            ]
            assert len(handles) == 400

            def delete(share: list[str], queue_name: str = name) -> None:
                for handle in share:
                    backend.delete_message(queue_name, handle)

            def send(first: int, queue_name: str = name) -> None:
                for i in range(first, first + 50):
                    backend.send_message(queue_name, f"new {i}")

            threads = [threading.Thread(target=delete, args=(handles[k::8],)) for k in range(8)]
            threads += [threading.Thread(target=send, args=(k * 50,)) for k in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            bodies = [message.body for message in backend.queues[name]._messages]
            stuck += sum(body.startswith("old") for body in bodies)
            lost += 100 - sum(body.startswith("new") for body in bodies)
    finally:
        sys.setswitchinterval(switch)
    return stuck, lost


@mock_aws
def test_concurrent_deletes_neither_resurrect_nor_lose_messages() -> None:
    moto_fixes.install()
    try:
        assert concurrent_deletes_and_sends() == (0, 0)
    finally:
        moto_fixes.uninstall()


def test_ranged_gets_read_only_their_range_and_give_moto_s_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and 4 bytes
    ranges = ["bytes=0-0", "bytes=5-70000", "bytes=1048575-1048579", "bytes=1000-9999999"]
    ranges += ["bytes=-10", "bytes=1048570-", ""]  # not plain ranges: moto's own path

    def fetch_all() -> list[bytes]:
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="bkt")
            s3.put_object(Bucket="bkt", Key="k", Body=data)
            got = []
            for spec in ranges:
                extra = {"Range": spec} if spec else {}
                got.append(s3.get_object(Bucket="bkt", Key="k", **extra)["Body"].read())
            return got

    moto_fixes.uninstall()
    own = fetch_all()
    windows = []
    original_init = moto_fixes._RangeWindow.__init__

    def counting_init(self: Any, key: Any) -> None:
        windows.append(key)
        original_init(self, key)

    monkeypatch.setattr(moto_fixes._RangeWindow, "__init__", counting_init)
    moto_fixes.install()
    try:
        fixed = fetch_all()
    finally:
        moto_fixes.uninstall()
    assert fixed == own
    assert own[1] == data[5:70001] and own[3] == data[1000:]
    assert len(windows) == 4  # the four plain ranges read through the window, no whole copy
