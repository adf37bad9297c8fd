"""Bad requests get the documented 4xx (declared in /openapi.json) and write nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.stack import (
    EVENTS_BUCKET,
    HttpAnswer,
    Stack,
    all_keys,
    aws,
    http,
    object_exists,
    wait_for,
)

pytestmark = pytest.mark.e2e

EMPTY_KEY = "bad/empty.bin"


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # relative to the API
    body: bytes | None
    status: int
    code: str | None  # the error code, JSON or XML
    resource: tuple[str, str]  # (OpenAPI path, method) whose responses must declare `status`


def json_body(bucket: str, key: str) -> bytes:
    return f'{{"bucket": "{bucket}", "key": "{key}"}}'.encode()


CASES = [
    Case("unknown bucket (POST)", "POST", "/torrents", json_body("not-in-the-allowlist", "a.bin"),
         403, "AccessDenied", ("/torrents", "post")),
    Case("unknown bucket (?torrent)", "GET", "/not-in-the-allowlist/a.bin?torrent", None,
         403, "AccessDenied", ("/{bucket}/{key}", "get")),
    Case("missing key (POST)", "POST", "/torrents", json_body(EVENTS_BUCKET, "no/such.bin"),
         404, "NoSuchKey", ("/torrents", "post")),
    Case("missing key (?torrent)", "GET", f"/{EVENTS_BUCKET}/no/such.bin?torrent", None,
         404, "NoSuchKey", ("/{bucket}/{key}", "get")),
    Case("missing key (status)", "GET", f"/torrents/{EVENTS_BUCKET}/no/such.bin", None,
         404, "NoSuchKey", ("/torrents/{bucket}/{key}", "get")),
    Case(".torrent key (POST)", "POST", "/torrents", json_body("demo", "sample.bin.torrent"),
         400, None, ("/torrents", "post")),
    Case(".torrent key (?torrent)", "GET", "/demo/sample.bin.torrent?torrent", None,
         400, None, ("/{bucket}/{key}", "get")),
    Case("0-byte object (POST)", "POST", "/torrents", json_body(EVENTS_BUCKET, EMPTY_KEY),
         400, None, ("/torrents", "post")),
    Case("0-byte object (?torrent)", "GET", f"/{EVENTS_BUCKET}/{EMPTY_KEY}?torrent", None,
         400, None, ("/{bucket}/{key}", "get")),
    Case("malformed JSON (torrents)", "POST", "/torrents", b'{"bucket": "demo", "key": ',
         400, "MalformedJSON", ("/torrents", "post")),
    Case("malformed JSON (backfills)", "POST", "/backfills", b"{not json",
         400, "MalformedJSON", ("/backfills", "post")),
    Case("unknown bucket (backfill)", "POST", "/backfills", b'{"bucket": "not-in-the-allowlist"}',
         403, "AccessDenied", ("/backfills", "post")),
]  # fmt: skip


@pytest.fixture(scope="module")
def openapi(stack: Stack) -> dict[str, object]:
    answer = http("GET", f"{stack.api_url}/openapi.json")
    assert answer.status == 200
    return answer.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def empty_object(stack: Stack) -> Iterator[None]:
    """A 0-byte object uploaded with the AWS CLI: its event must not make a torrent either."""
    aws("s3", "cp", "-", f"s3://{EVENTS_BUCKET}/{EMPTY_KEY}", endpoint=stack.s3_url)
    s3 = stack.s3()
    wait_for(lambda: object_exists(s3, EVENTS_BUCKET, EMPTY_KEY), 5, "the 0-byte object")
    yield


def snapshot(stack: Stack) -> dict[str, dict[str, str]]:
    """Every key and ETag of the buckets a bad request could write to."""
    s3 = stack.s3()
    found: dict[str, dict[str, str]] = {}
    for bucket in ("demo", EVENTS_BUCKET):
        found[bucket] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found[bucket].update({item["Key"]: item["ETag"] for item in page.get("Contents", [])})
    return found


def error_code(answer: HttpAnswer) -> str | None:
    if answer.headers.get("content-type", "").startswith("application/xml"):
        text = answer.body.decode()
        return text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else None
    return answer.json().get("error", {}).get("code")  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_request_gets_its_4xx_and_writes_nothing(
    stack: Stack, openapi: dict[str, object], empty_object: None, case: Case
) -> None:
    before = snapshot(stack)
    headers = {"Content-Type": "application/json"} if case.body is not None else {}
    answer = http(case.method, stack.api_url + case.path, case.body, headers)
    assert answer.status == case.status, answer.body
    if case.code:
        assert error_code(answer) == case.code, answer.body
    path, method = case.resource
    documented = openapi["paths"][path][method]["responses"]  # type: ignore[index]
    assert str(case.status) in documented, f"{case.status} is not documented for {method} {path}"
    assert snapshot(stack) == before


def test_empty_object_event_makes_no_torrent(stack: Stack, empty_object: None) -> None:
    # The worker saw the 0-byte object's event long ago (the cases above took longer than that).
    assert EMPTY_KEY + ".torrent" not in all_keys(stack.s3(), EVENTS_BUCKET)


def test_aws_cli_gets_an_s3_style_error_for_a_missing_key(stack: Stack) -> None:
    done = aws(
        "s3api", "get-object-torrent", "--bucket", EVENTS_BUCKET, "--key", "no/such.bin",
        "/dev/null", endpoint=stack.api_url, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "NoSuchKey" in done.stderr
