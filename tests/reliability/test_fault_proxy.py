"""The fault proxy itself: it forwards S3 faithfully, and breaks requests exactly as asked."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import time

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from tests.support.faults.helpers import plain_client
from tests.support.faults.proxy import (
    BodyHook,
    Emulation,
    FaultKind,
    FaultPolicy,
    FaultProxy,
    FaultRule,
    RequestInfo,
)

pytestmark = pytest.mark.integration

BODY = os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture
def via_proxy(fault_proxy: FaultProxy, bucket: str):  # type: ignore[no-untyped-def]
    client = plain_client(fault_proxy.url)
    client.put_object(
        Bucket=bucket,
        Key="dir/obj.bin",
        Body=BODY,
        ContentType="application/x-test",
        Metadata={"who": "proxy"},
        ACL="public-read",  # raw_get is unsigned (moto enforces ACLs on those)
    )
    return client


def raw_get(
    proxy: FaultProxy, path: str, timeout: float = 5.0
) -> tuple[int, bytes, BaseException | None]:
    """An unsigned GET through the proxy with http.client: status, bytes read, error if any."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", int(proxy.url.rsplit(":", 1)[1]), timeout=timeout
    )
    conn.request("GET", path)
    response = conn.getresponse()
    received = bytearray()
    try:
        while chunk := response.read1(65536):
            received += chunk
        if response.length:  # http.client raises IncompleteRead only through read()
            response.read()
    except (OSError, http.client.HTTPException) as error:
        return response.status, bytes(received), error
    finally:
        conn.close()
    return response.status, bytes(received), None


def test_forwards_s3_faithfully(fault_proxy: FaultProxy, via_proxy, bucket: str) -> None:  # type: ignore[no-untyped-def]
    head = via_proxy.head_object(Bucket=bucket, Key="dir/obj.bin")
    assert head["ContentLength"] == len(BODY)
    assert head["ContentType"] == "application/x-test"
    assert head["Metadata"] == {"who": "proxy"}
    etag = head["ETag"]

    whole = via_proxy.get_object(Bucket=bucket, Key="dir/obj.bin")["Body"].read()
    assert whole == BODY

    part = via_proxy.get_object(
        Bucket=bucket, Key="dir/obj.bin", Range="bytes=100-1099", IfMatch=etag
    )
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert part["ContentRange"] == f"bytes 100-1099/{len(BODY)}"
    assert part["Body"].read() == BODY[100:1100]

    with pytest.raises(ClientError) as info:
        via_proxy.get_object(Bucket=bucket, Key="dir/obj.bin", Range="bytes=0-9", IfMatch='"nope"')
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"

    with pytest.raises(ClientError) as info:
        via_proxy.get_object(Bucket=bucket, Key="dir/missing")
    assert info.value.response["Error"]["Code"] == "NoSuchKey"

    listed = via_proxy.list_objects_v2(Bucket=bucket, Prefix="dir/")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/obj.bin"]
    via_proxy.delete_object(Bucket=bucket, Key="dir/obj.bin")
    assert "Contents" not in via_proxy.list_objects_v2(Bucket=bucket)

    ranged = [e.info for e in fault_proxy.policy.log if e.info.range]
    assert ranged and ranged[0].headers["if-match"] == etag  # headers reach the store as sent
    assert fault_proxy.policy.total_injected == 0


def test_chunked_request_bodies_are_forwarded(
    fault_proxy: FaultProxy, bucket: str, s3_client
) -> None:  # type: ignore[no-untyped-def]
    conn = http.client.HTTPConnection(
        "127.0.0.1", int(fault_proxy.url.rsplit(":", 1)[1]), timeout=5
    )
    conn.putrequest("PUT", f"/{bucket}/chunked")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for piece in (b"hello ", b"chunked ", b"world"):
        conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    conn.send(b"0\r\n\r\n")
    assert conn.getresponse().status == 200
    conn.close()
    assert (
        s3_client.get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"hello chunked world"
    )


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        (FaultKind.SLOWDOWN, 503, "SlowDown"),
        (FaultKind.INTERNAL, 500, "InternalError"),
        (FaultKind.THROTTLE, 429, "SlowDown"),
    ],
)
def test_error_faults_answer_s3_xml(
    fault_proxy: FaultProxy, via_proxy, bucket: str, kind, status, code
) -> None:  # type: ignore[no-untyped-def]
    fault_proxy.policy.set_rules([FaultRule(kind)])
    with pytest.raises(ClientError) as info:
        via_proxy.get_object(Bucket=bucket, Key="dir/obj.bin")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert info.value.response["Error"]["Code"] == code
    assert fault_proxy.policy.injected[kind] == 1
    # Only object GETs are eligible by default: HEAD and listings pass.
    via_proxy.head_object(Bucket=bucket, Key="dir/obj.bin")
    via_proxy.list_objects_v2(Bucket=bucket)
    assert fault_proxy.policy.injected[kind] == 1


def test_botocore_retries_clear_a_limited_fault(
    fault_proxy: FaultProxy, via_proxy, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    fault_proxy.policy.set_rules([FaultRule(FaultKind.SLOWDOWN, limit=2)])
    client = plain_client(fault_proxy.url, attempts=3)
    assert client.get_object(Bucket=bucket, Key="dir/obj.bin")["Body"].read() == BODY
    assert fault_proxy.policy.injected[FaultKind.SLOWDOWN] == 2


def test_reset_sends_part_of_the_body_then_rst(
    fault_proxy: FaultProxy, via_proxy, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    fault_proxy.policy = FaultPolicy([FaultRule(FaultKind.RESET)], reset_fraction=0.25)
    status, received, error = raw_get(fault_proxy, f"/{bucket}/dir/obj.bin")
    assert status == 200
    assert error is not None, "the connection must break"
    assert isinstance(error, ConnectionResetError | http.client.IncompleteRead), repr(error)
    assert 0 < len(received) < len(BODY)
    assert received == BODY[: len(received)]
    assert fault_proxy.policy.injected[FaultKind.RESET] == 1


def test_reset_through_boto3_is_a_read_error(
    fault_proxy: FaultProxy, via_proxy, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    fault_proxy.policy.set_rules([FaultRule(FaultKind.RESET, ranged_only=True)])
    body = via_proxy.get_object(Bucket=bucket, Key="dir/obj.bin", Range="bytes=0-2097151")["Body"]
    with pytest.raises(
        Exception
    ) as info:  # botocore wraps it: ResponseStreamingError / ProtocolError
        body.read()
    assert "reset" in repr(info.value).lower() or "incomplete" in repr(info.value).lower()


def test_slow_bodies_arrive_whole_but_late(fault_proxy: FaultProxy, via_proxy, bucket: str) -> None:  # type: ignore[no-untyped-def]
    fault_proxy.policy = FaultPolicy(
        [FaultRule(FaultKind.SLOW)], slow_chunk=256 * 1024, slow_delay=0.02
    )
    started = time.monotonic()
    assert via_proxy.get_object(Bucket=bucket, Key="dir/obj.bin")["Body"].read() == BODY
    assert time.monotonic() - started >= 12 * 0.02  # 13 chunks, a pause after each


def test_stall_ends_in_the_clients_timeout(fault_proxy: FaultProxy, via_proxy, bucket: str) -> None:  # type: ignore[no-untyped-def]
    fault_proxy.policy = FaultPolicy([FaultRule(FaultKind.STALL)], stall_seconds=30)
    client = plain_client(fault_proxy.url, read_timeout=0.5)
    started = time.monotonic()
    with pytest.raises((ReadTimeoutError, socket.timeout, OSError, Exception)) as info:
        client.get_object(Bucket=bucket, Key="dir/obj.bin")["Body"].read()
    elapsed = time.monotonic() - started
    assert "timeout" in repr(info.value).lower() or "timed out" in repr(info.value).lower()
    assert elapsed < 5, f"stalled GET took {elapsed:.1f}s"
    assert fault_proxy.policy.injected[FaultKind.STALL] == 1


def test_policy_is_seeded_and_counts_by_kind(
    fault_proxy: FaultProxy, via_proxy, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    via_proxy.put_object(Bucket=bucket, Key="small", Body=b"x")

    def run(seed: int) -> list[str | None]:
        fault_proxy.policy = FaultPolicy(
            [FaultRule(FaultKind.SLOWDOWN, rate=0.2), FaultRule(FaultKind.INTERNAL, rate=0.1)],
            seed=seed,
        )
        for _ in range(40):
            with contextlib.suppress(ClientError):
                via_proxy.get_object(Bucket=bucket, Key="small")["Body"].read()
        return [e.fault for e in fault_proxy.policy.log]

    first, again, other = run(11), run(11), run(12)
    assert first == again
    assert first != other
    injected = sum(1 for f in first if f)
    assert 4 <= injected <= 24  # ~28% of 40
    assert fault_proxy.policy.summary()["requests_GET"] == 40


def test_body_hook_fires_once_mid_body(fault_proxy: FaultProxy, via_proxy, bucket: str) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[int, RequestInfo]] = []
    log = fault_proxy.policy.log

    def action(info: RequestInfo) -> None:
        seen.append((log[-1].body_bytes_sent, info))

    fault_proxy.policy.hooks.append(BodyHook(action, after_bytes=1024 * 1024, key=r"obj\.bin$"))
    assert via_proxy.get_object(Bucket=bucket, Key="dir/obj.bin")["Body"].read() == BODY
    assert via_proxy.get_object(Bucket=bucket, Key="dir/obj.bin")["Body"].read() == BODY
    assert len(seen) == 1
    sent, info = seen[0]
    assert 1024 * 1024 <= sent < 1024 * 1024 + 64 * 1024
    assert info.key == "dir/obj.bin"


def test_max_consecutive_lets_the_same_request_through(
    fault_proxy: FaultProxy, via_proxy, bucket: str
) -> None:  # type: ignore[no-untyped-def]
    fault_proxy.policy = FaultPolicy([FaultRule(FaultKind.INTERNAL)], max_consecutive=2)
    outcomes = []
    for _ in range(3):
        try:
            via_proxy.get_object(Bucket=bucket, Key="dir/obj.bin", Range="bytes=0-9")["Body"].read()
            outcomes.append("ok")
        except ClientError:
            outcomes.append("fault")
    assert outcomes == ["fault", "fault", "ok"]


def test_emulations_answer_as_s3_would(fault_proxy: FaultProxy, via_proxy, bucket: str) -> None:  # type: ignore[no-untyped-def]
    fault_proxy.policy.emulations.append(
        Emulation(
            "payer", lambda i: "x-amz-request-payer" not in i.headers, 403, "AccessDenied", "no"
        )
    )
    with pytest.raises(ClientError) as info:
        via_proxy.head_object(Bucket=bucket, Key="dir/obj.bin")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    head = via_proxy.head_object(Bucket=bucket, Key="dir/obj.bin", RequestPayer="requester")
    assert head["ContentLength"] == len(BODY)
    assert [e.emulated for e in fault_proxy.policy.log[-2:]] == ["payer", None]
