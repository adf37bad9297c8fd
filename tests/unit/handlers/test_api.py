"""The API handler, driven with API Gateway REST proxy events from tests/events (moto in-process).

Every error path is checked for its documented status and body (the README), and a table of
nasty inputs must never produce a 5xx.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import pytest
from moto import mock_aws

from s3torrent import job_queue
from s3torrent.backfill.progress import QUEUED_JOB_PREFIX
from s3torrent.errors import TransientServiceError
from s3torrent.handlers import api
from s3torrent.handlers.api import outcomes, s3_compatible
from s3torrent.handlers.runtime import Runtime
from s3torrent.messages import JobMessage
from s3torrent.settings import BucketScope, Settings
from s3torrent.torrent import read_torrent
from tests.support.handlers import (
    SESSION,
    FakeContext,
    Resources,
    api_body,
    client,
    drain,
    header,
    load_event,
    make_resources,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

BUCKET = "s3torrent-demo"
KEY = "reports/Q1 2024 summary.pdf"
BODY = bytes(range(256)) * 400  # 102,400 bytes: 7 pieces of 16 KiB


@dataclass
class Stack:
    s3: Any
    sqs: Any
    runtime: Runtime
    queue_url: str
    backfill_queue_url: str


def resources_of(stack: Stack) -> Resources:
    table = stack.runtime.settings.backfill_table
    assert table is not None
    return Resources(stack.queue_url, stack.backfill_queue_url, table)


def make_settings(resources: Resources, **values: Any) -> Settings:
    return resources.settings(
        {
            "buckets": [{"name": BUCKET}, {"name": "torrents"}],
            "public_prefixes": [{"name": BUCKET, "prefix": "public/"}],
            **values,
        }
    )


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        s3 = client("s3")
        for name in (BUCKET, "torrents", "not-allowed-bucket"):
            s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=BODY)
        resources = make_resources()
        runtime = Runtime(make_settings(resources), session=SESSION)
        monkeypatch.setattr(api, "runtime", runtime)
        yield Stack(
            s3,
            client("sqs"),
            runtime,
            resources.queue_url,
            resources.backfill_queue_url,
        )


def call(event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = api.lambda_handler(event, FakeContext())
    return response


def get_torrent_event(key: str, bucket: str = BUCKET, **changes: Any) -> dict[str, Any]:
    event = load_event("apigw_get_object_torrent.json")
    event["path"] = f"/{bucket}/{quote(key, safe='/')}"
    event["requestContext"]["path"] = "/prod" + event["path"]
    event.update(changes)
    return event


def json_error(response: dict[str, Any]) -> tuple[int, str]:
    assert header(response, "Content-Type") == "application/json"
    body = json.loads(api_body(response))
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return response["statusCode"], body["error"]["code"]


def xml_error(response: dict[str, Any]) -> tuple[int, str]:
    assert header(response, "Content-Type") == "application/xml"
    root = ElementTree.fromstring(api_body(response))
    assert root.tag == "Error"
    assert [child.tag for child in root] == ["Code", "Message", "Resource", "RequestId"]
    assert root.findtext("RequestId") == "e0b4a0f4-1c9b-4a8e-9d3e-2c1f0a9b8c7d"
    return response["statusCode"], root.findtext("Code") or ""


def s3_requests(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    """Every S3 request the runtime's clients make from now on: (operation, url, Range)."""
    seen: list[tuple[str, str, str | None]] = []

    def hook(request: Any, operation_name: str, **_: Any) -> None:
        seen.append((operation_name, request.url, request.headers.get("Range")))

    clients = {id(c): c for c in (runtime.objects.client, runtime.objects.data_client)}
    for s3 in clients.values():
        s3.meta.events.register("request-created.s3", hook)
    return seen


# --- GET /{bucket}/{key+}?torrent --------------------------------------------------------


def test_get_object_torrent_returns_the_binary_torrent_then_serves_it_stored(stack: Stack) -> None:
    response = call(load_event("apigw_get_object_torrent.json"))
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    assert header(response, "Content-Type") == "application/x-bittorrent"
    assert (
        header(response, "Content-Disposition")
        == 'attachment; filename="Q1 2024 summary.pdf.torrent"'
    )
    data = api_body(response)
    torrent = read_torrent(data)
    assert torrent.name == "Q1 2024 summary.pdf" and torrent.length == len(BODY)
    stored = stack.s3.get_object(Bucket=BUCKET, Key=KEY + ".torrent")["Body"].read()
    assert stored == data

    seen = s3_requests(stack.runtime)
    again = call(load_event("apigw_get_object_torrent.json"))
    assert api_body(again) == data
    ranged = [url for _, url, byte_range in seen if byte_range]
    assert ranged == [], "a fresh stored torrent is served without reading the object"
    assert not any(op == "PutObject" for op, _, _ in seen)


@pytest.mark.parametrize(
    "key",
    [
        "math/a+b=c.txt",
        "café/menü ✓.txt",
        "progress/100% done.bin",
        "dots/../not-a-parent.bin",  # S3 keys may hold '..': opaque, never a file path
        "double//slash.bin",
        "trailing space .bin",
        "percent%2Fslash.bin",
    ],
)
def test_keys_with_special_characters(stack: Stack, key: str) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key=key, Body=b"hello " * 1000)
    response = call(get_torrent_event(key))
    assert response["statusCode"] == 200, api_body(response)
    torrent = read_torrent(api_body(response))
    assert torrent.name == key.rsplit("/", 1)[-1]
    assert stack.s3.head_object(Bucket=BUCKET, Key=key + ".torrent")["ContentLength"] > 0


def test_encoded_slash_in_a_path_is_a_slash_in_the_key(stack: Stack) -> None:
    # S3 semantics: %2F in a path is '/' in the key (clients encode it either way).
    event = get_torrent_event(KEY)
    event["path"] = f"/{BUCKET}/reports%2FQ1%202024%20summary.pdf"
    response = call(event)
    assert response["statusCode"] == 200
    assert read_torrent(api_body(response)).name == "Q1 2024 summary.pdf"


def test_bucket_named_torrents_still_serves_get_object_torrent(stack: Stack) -> None:
    stack.s3.put_object(Bucket="torrents", Key="a/b.bin", Body=b"z" * 5000)
    event = get_torrent_event("a/b.bin", bucket="torrents")
    response = call(event)
    assert response["statusCode"] == 200
    assert read_torrent(api_body(response)).name == "b.bin"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"path": f"/{BUCKET}/no/such/key.bin"}, 404, "NoSuchKey"),
        ({"path": "/not-allowed-bucket/x.bin"}, 403, "AccessDenied"),
        ({"queryStringParameters": None}, 400, "InvalidRequest"),
        ({"queryStringParameters": {"versionId": "abc"}}, 400, "InvalidRequest"),
        ({"path": f"/{BUCKET}/folder/"}, 400, "InvalidRequest"),  # a directory marker
        ({"path": f"/{BUCKET}/{quote(KEY)}.torrent"}, 400, "InvalidRequest"),
        ({"path": f"/{BUCKET}/{'k' * 1020}"}, 400, "InvalidRequest"),  # key.torrent > 1024
        ({"httpMethod": "PUT"}, 405, "MethodNotAllowed"),
        ({"httpMethod": "DELETE"}, 405, "MethodNotAllowed"),
    ],
)
def test_get_object_torrent_errors_are_s3_xml(
    stack: Stack, change: dict[str, Any], status: int, code: str
) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key="folder/", Body=b"")
    event = load_event("apigw_get_object_torrent.json")
    event.update(change)
    response = call(event)
    assert xml_error(response) == (status, code)


def test_missing_bucket_is_no_such_bucket(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    values = stack.runtime.settings.model_dump()
    values["buckets"] = [*values["buckets"], {"name": "gone-bucket"}]
    settings = Settings.from_mapping(values)
    monkeypatch.setattr(api, "runtime", Runtime(settings, session=SESSION))
    response = call(get_torrent_event("x.bin", bucket="gone-bucket"))
    assert xml_error(response) == (404, "NoSuchBucket")


def test_empty_object_is_invalid_request(stack: Stack) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key="empty.bin", Body=b"")
    response = call(get_torrent_event("empty.bin"))
    status, code = xml_error(response)
    assert (status, code) == (400, "InvalidRequest")
    assert b"0-byte object" in api_body(response)


def test_anonymous_requests_only_under_public_prefixes(stack: Stack) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key="public/café menu+1.txt", Body=b"menu" * 100)
    anonymous = load_event("apigw_get_object_torrent_anonymous.json")
    response = call(anonymous)
    assert response["statusCode"] == 200
    assert read_torrent(api_body(response)).name == "café menu+1.txt"

    private = copy.deepcopy(anonymous)
    private["path"] = f"/{BUCKET}/{quote(KEY)}"
    assert xml_error(call(private)) == (403, "AccessDenied")

    local = copy.deepcopy(private)  # the local stack: loopback callers are trusted
    local["requestContext"]["identity"]["sourceIp"] = "127.0.0.1"
    assert call(local)["statusCode"] == 200


def test_request_payer_and_expected_owner_reach_s3(stack: Stack) -> None:
    seen: list[dict[str, str]] = []

    def hook(request: Any, **_: Any) -> None:
        seen.append(dict(request.headers))

    stack.runtime.objects.client.meta.events.register("request-created.s3", hook)
    event = load_event("apigw_get_object_torrent.json")
    event["headers"].update(
        {"x-amz-request-payer": "requester", "X-Amz-Expected-Bucket-Owner": "123456789012"}
    )
    response = call(event)
    assert response["statusCode"] == 200
    assert header(response, "x-amz-request-charged") == "requester"
    assert seen and all(h.get("x-amz-request-payer") == "requester" for h in seen)
    assert all(h.get("x-amz-expected-bucket-owner") == "123456789012" for h in seen)

    event["headers"]["X-Amz-Expected-Bucket-Owner"] = "not-an-account"
    assert xml_error(call(event)) == (400, "InvalidRequest")


def test_large_torrent_redirects_to_a_presigned_get(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_compatible, "MAX_INLINE_TORRENT_BYTES", 100)
    response = call(load_event("apigw_get_object_torrent.json"))
    assert response["statusCode"] == 307
    location = header(response, "Location") or ""
    assert "/reports/Q1%202024%20summary.pdf.torrent?" in location, location
    assert "Signature=" in location  # SigV4 once the client asks for s3v4 (see the README)
    assert stack.s3.head_object(Bucket=BUCKET, Key=KEY + ".torrent")


def test_object_over_inline_limit_is_queued_and_answered_503(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = resources_of(stack)
    # Callers may replace the stored torrent here, so their own options may be queued too.
    settings = make_settings(resources, api_inline_max_bytes=10, api_callers_may_replace=True)
    monkeypatch.setattr(api, "runtime", Runtime(settings, session=SESSION))
    response = call(load_event("apigw_get_object_torrent.json"))
    assert xml_error(response) == (503, "ServiceUnavailable")
    assert header(response, "Retry-After") == "60"
    jobs = [json.loads(body) for body in drain(stack.sqs, stack.queue_url)]
    assert jobs == [{"type": "s3torrent.job", "bucket": BUCKET, "key": KEY}]

    post = call(load_event("apigw_post_torrents.json"))
    assert post["statusCode"] == 202
    body = json.loads(api_body(post))
    assert body == {
        "status": "queued",
        "location": "/torrents/s3torrent-demo/reports/Q1%202024%20summary.pdf",
        "bucket": BUCKET,
        "key": KEY,
        "source_etag": stack.s3.head_object(Bucket=BUCKET, Key=KEY)["ETag"],
    }
    assert header(post, "Location") == body["location"]
    (job,) = [json.loads(b) for b in drain(stack.sqs, stack.queue_url)]
    assert job["key"] == KEY and job["overrides"]["comment"] == "Q1"


def test_polling_a_large_object_queues_one_job_per_version_and_options(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client retrying `?torrent` every Retry-After must not start one more full read of
    the same huge object per poll (they would all hash the same bytes at once)."""
    resources = resources_of(stack)
    settings = make_settings(resources, api_inline_max_bytes=10, api_callers_may_replace=True)
    runtime = Runtime(settings, session=SESSION)
    monkeypatch.setattr(api, "runtime", runtime)

    def queued_after(event_file: str, times: int) -> list[dict[str, Any]]:
        for _ in range(times):
            assert call(load_event(event_file))["statusCode"] in (202, 503)
        return [json.loads(body) for body in drain(stack.sqs, stack.queue_url)]

    assert len(queued_after("apigw_get_object_torrent.json", 3)) == 1
    # Other options make another torrent: one more job, once.
    (job,) = queued_after("apigw_post_torrents.json", 2)
    assert job["overrides"]["comment"] == "Q1"
    assert queued_after("apigw_get_object_torrent.json", 1) == []
    # A new version of the object is another job.
    stack.s3.put_object(Bucket=BUCKET, Key=KEY, Body=BODY + b"!")
    assert len(queued_after("apigw_get_object_torrent.json", 2)) == 1
    # Past the hold (a worker's longest run), the job may have died: queued again.
    later = time.time() + job_queue.REQUESTED_JOB_HOLD_SECONDS + 1
    monkeypatch.setattr(runtime.progress, "clock", lambda: later)
    assert len(queued_after("apigw_get_object_torrent.json", 2)) == 1
    # One mark per distinct job, none of them a backfill.
    marks = [
        item["backfill_id"]["S"]
        for item in client("dynamodb").scan(TableName=resources.table)["Items"]
    ]
    assert len(marks) == 3 and all(mark.startswith(QUEUED_JOB_PREFIX) for mark in marks)
    assert [runtime.progress.get(mark) for mark in marks] == [None] * 3


def test_a_job_that_could_not_be_sent_is_not_held(stack: Stack) -> None:
    class Refusing:
        def send(self, body: str) -> None:
            raise TransientServiceError("SQS is down")

    marks = stack.runtime.progress
    job = JobMessage(bucket=BUCKET, key=KEY)
    with pytest.raises(TransientServiceError):
        job_queue.queue_requested_job(Refusing(), marks, job, '"etag"')  # type: ignore[arg-type]
    sent: list[str] = []
    queue = type("Queue", (), {"send": lambda self, body: sent.append(body)})()
    assert job_queue.queue_requested_job(queue, marks, job, '"etag"')
    assert not job_queue.queue_requested_job(queue, marks, job, '"etag"')
    assert sent == [job.to_body()]


# --- POST /torrents, GET /torrents/{bucket}/{key+} -------------------------------------------


def runtime_with(stack: Stack, **values: Any) -> Runtime:
    """The stack's runtime with some settings changed."""
    settings = stack.runtime.settings.model_copy(update=values)
    return Runtime(settings, session=SESSION)


def test_post_torrents_creates_then_reports_fresh(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fixture asks for trackers and a comment of its own: stored only where allowed.
    monkeypatch.setattr(api, "runtime", runtime_with(stack, api_callers_may_replace=True))
    created = call(load_event("apigw_post_torrents.json"))
    assert created["statusCode"] == 201
    body = json.loads(api_body(created))
    assert body["status"] == "created" and body["source"] == "computed"
    assert body["torrent_key"] == KEY + ".torrent" and body["size"] == len(BODY)
    assert body["magnet"].startswith("magnet:?xt=urn:btih:" + body["info_hash_v1"])
    assert "tr=udp%3A%2F%2Ftracker.example.org%3A1337%2Fannounce" in body["magnet"]
    torrent = read_torrent(stack.s3.get_object(Bucket=BUCKET, Key=KEY + ".torrent")["Body"].read())
    assert torrent.comment == "Q1" and torrent.info_hash_v1 == body["info_hash_v1"]

    # The same body, base64-encoded as API Gateway sends it with binary media types "*/*".
    again = call(load_event("apigw_post_torrents_base64.json"))
    assert again["statusCode"] == 200
    assert json.loads(api_body(again)) | {"status": "created"} == body | {"source": body["source"]}

    status = call(load_event("apigw_get_torrent_status.json"))
    assert status["statusCode"] == 200
    described = json.loads(api_body(status))
    assert described["status"] == "fresh" and described["info_hash_v2"] == body["info_hash_v2"]

    stack.s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"new content")
    stale = json.loads(api_body(call(load_event("apigw_get_torrent_status.json"))))
    assert stale["status"] == "stale"


def test_post_torrents_with_own_options_never_replaces_the_stored_torrent(stack: Stack) -> None:
    """Anonymous users on public prefixes are served the stored `<key>.torrent`: a caller's
    own trackers, web seeds or comment must not become what everyone else downloads."""
    made = post({"bucket": BUCKET, "key": KEY})  # the deployment's options: stored
    assert made["statusCode"] == 201
    stored = stack.s3.get_object(Bucket=BUCKET, Key=KEY + ".torrent")["Body"].read()

    own = {
        "trackers": ["udp://evil.example:6969/announce"],
        "web_seeds": ["https://mirror.example/{key}"],
        "comment": "mine",
    }
    for options in (own, {"comment": "mine"}, {"meta_version": "2"}, {"piece_length": 32768}):
        response = post({"bucket": BUCKET, "key": KEY, "options": options})
        assert response["statusCode"] == 200, api_body(response)
        body = json.loads(api_body(response))
        assert body["status"] == "custom" and body["torrent_key"] is None
        assert header(response, "Location") is None  # nothing is stored where it would point
        torrent = read_torrent(base64.b64decode(body["torrent"]))
        assert torrent.info_hash_v1 == body["info_hash_v1"]
        assert torrent.info_hash_v2 == body["info_hash_v2"]
        assert body["torrent_bytes"] == len(torrent.data) and body["size"] == len(BODY)
        assert torrent.comment == options.get("comment")
        again = stack.s3.get_object(Bucket=BUCKET, Key=KEY + ".torrent")["Body"].read()
        assert again == stored
    made = read_torrent(
        base64.b64decode(
            json.loads(api_body(post({"bucket": BUCKET, "key": KEY, "options": own})))["torrent"]
        )
    )
    assert made.trackers == (("udp://evil.example:6969/announce",),)
    assert made.web_seeds == ("https://mirror.example/reports/Q1%202024%20summary.pdf",)

    # Options that are the deployment's own change nothing: the stored torrent, as it is.
    same = post({"bucket": BUCKET, "key": KEY, "options": {"meta_version": "hybrid"}})
    assert same["statusCode"] == 200 and json.loads(api_body(same))["status"] == "fresh"


def test_post_torrents_with_own_options_and_no_stored_torrent_stores_nothing(
    stack: Stack,
) -> None:
    response = post({"bucket": BUCKET, "key": KEY, "options": {"comment": "mine"}})
    assert json.loads(api_body(response))["status"] == "custom"
    listed = stack.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    assert [item["Key"] for item in listed] == [KEY]


def test_own_options_over_the_inline_size_are_refused_not_queued(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "runtime", runtime_with(stack, api_inline_max_bytes=10))
    response = post({"bucket": BUCKET, "key": KEY, "options": {"comment": "mine"}})
    assert json_error(response) == (400, "InvalidRequest")
    message = json.loads(api_body(response))["error"]["message"]
    assert "inline size (10 bytes)" in message and "without options" in message
    assert drain(stack.sqs, stack.queue_url) == []  # a job would write the stored torrent
    # Without options of its own, the deployment's torrent is queued as before.
    assert post({"bucket": BUCKET, "key": KEY})["statusCode"] == 202
    assert len(drain(stack.sqs, stack.queue_url)) == 1


def test_a_custom_torrent_too_big_for_a_response_is_refused(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outcomes, "MAX_CUSTOM_TORRENT_BYTES", 100)
    response = post({"bucket": BUCKET, "key": KEY, "options": {"comment": "mine"}})
    assert json_error(response) == (400, "InvalidRequest")
    assert "over the 100 a response carries" in api_body(response).decode()


def test_callers_may_replace_the_stored_torrent_when_the_settings_say_so(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "runtime", runtime_with(stack, api_callers_may_replace=True))
    response = post({"bucket": BUCKET, "key": KEY, "options": {"comment": "mine"}})
    assert response["statusCode"] == 201
    assert json.loads(api_body(response))["torrent"] is None
    stored = stack.s3.get_object(Bucket=BUCKET, Key=KEY + ".torrent")["Body"].read()
    assert read_torrent(stored).comment == "mine"


def anonymous(event: dict[str, Any]) -> dict[str, Any]:
    """The event as API Gateway would pass it without a signature (a route left open)."""
    event = copy.deepcopy(event)
    identity = event["requestContext"]["identity"]
    for name in ("userArn", "caller", "accessKey", "cognitoIdentityId", "user"):
        identity[name] = None
    return event


def test_every_route_checks_the_caller_itself(stack: Stack) -> None:
    """Defence in depth: were API Gateway to let an unsigned call through, the handler still
    serves anonymous callers only `?torrent` and status on public prefixes, and never makes
    a torrent or starts or reads a backfill for them."""
    stack.s3.put_object(Bucket=BUCKET, Key="public/open.bin", Body=BODY)
    posted = load_event("apigw_post_torrents.json")
    posted["body"] = json.dumps({"bucket": BUCKET, "key": "public/open.bin"})
    assert json_error(call(anonymous(posted))) == (403, "AccessDenied")
    assert not stack.s3.list_objects_v2(Bucket=BUCKET, Prefix="public/open.bin.")["KeyCount"]
    assert call(posted)["statusCode"] == 201  # signed: made

    status = load_event("apigw_get_torrent_status.json")
    status["path"] = f"/torrents/{BUCKET}/public/open.bin"
    assert call(anonymous(status))["statusCode"] == 200  # public prefix: readable
    status["path"] = f"/torrents/{BUCKET}/{quote(KEY)}"
    assert json_error(call(anonymous(status))) == (403, "AccessDenied")
    status["path"] = "/torrents/not-allowed-bucket/public/open.bin"
    assert json_error(call(status)) == (403, "AccessDenied")  # signed, outside the allowlist

    backfill = load_event("apigw_post_backfills.json")
    assert json_error(call(anonymous(backfill))) == (403, "AccessDenied")
    assert drain(stack.sqs, stack.backfill_queue_url) == []
    started = json.loads(api_body(call(backfill)))
    follow = load_event("apigw_get_backfill.json")
    follow["path"] = started["location"]
    assert json_error(call(anonymous(follow))) == (403, "AccessDenied")
    unknown = anonymous(load_event("apigw_get_backfill.json"))  # no hint whether it exists
    assert json_error(call(unknown)) == (403, "AccessDenied")
    assert call(follow)["statusCode"] == 200


def test_a_backfill_outside_the_allowlist_is_not_shown(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = json.loads(api_body(call(load_event("apigw_post_backfills.json"))))
    follow = load_event("apigw_get_backfill.json")
    follow["path"] = started["location"]
    narrowed = runtime_with(stack, buckets=(BucketScope(name="torrents"),))
    monkeypatch.setattr(api, "runtime", narrowed)
    assert json_error(call(follow)) == (403, "AccessDenied")


def post(body: Any, content_type: str | None = "application/json") -> dict[str, Any]:
    event = load_event("apigw_post_torrents.json")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    event["headers"].pop("Content-Type", None)
    if content_type is not None:
        event["headers"]["Content-Type"] = content_type
    return call(event)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "MalformedJSON"),
        ({"bucket": BUCKET}, "application/json", 422, "ValidationError"),
        ({"bucket": BUCKET, "key": KEY, "extra": 1}, "application/json", 422, "ValidationError"),
        (
            {"bucket": BUCKET, "key": KEY, "options": {"piece_length": 1000}},
            "application/json",
            422,
            "ValidationError",
        ),
        (
            {"bucket": BUCKET, "key": KEY, "options": {"meta_version": "3"}},
            "application/json",
            422,
            "ValidationError",
        ),
        ({"bucket": BUCKET, "key": "é" * 600}, "application/json", 422, "ValidationError"),
        (
            {"bucket": BUCKET, "key": KEY, "options": {"trackers": ["ftp://x"]}},
            "application/json",
            422,
            "ValidationError",
        ),
        ({"bucket": BUCKET, "key": KEY}, "text/plain", 415, "UnsupportedMediaType"),
        ({"bucket": BUCKET, "key": "nope.bin"}, "application/json", 404, "NoSuchKey"),
        ({"bucket": "not-allowed-bucket", "key": KEY}, "application/json", 403, "AccessDenied"),
        ({"bucket": BUCKET, "key": "dir/"}, "application/json", 400, "InvalidRequest"),
        ([1, 2, 3], "application/json", 422, "ValidationError"),
        ("x" * (64 * 1024 + 1), "application/json", 413, "RequestEntityTooLarge"),
    ],
)
def test_post_torrents_errors(
    stack: Stack, body: Any, content_type: str, status: int, code: str
) -> None:
    assert json_error(post(body, content_type)) == (status, code)


def test_validation_errors_say_where(stack: Stack) -> None:
    response = post({"bucket": BUCKET, "key": KEY, "options": {"piece_length": 20000}})
    error = json.loads(api_body(response))["error"]
    assert error["details"][0]["loc"] == ["body", "options", "piece_length"]
    assert "power of two" in error["message"]


def test_get_torrent_status_404_when_none(stack: Stack) -> None:
    event = load_event("apigw_get_torrent_status.json")
    assert json_error(call(event)) == (404, "NoSuchKey")
    event["path"] = "/torrents/not-allowed-bucket/x"
    assert json_error(call(event)) == (403, "AccessDenied")


# --- backfills -------------------------------------------------------------------------------


def test_post_backfill_then_follow_it(stack: Stack) -> None:
    response = call(load_event("apigw_post_backfills.json"))
    assert response["statusCode"] == 202
    body = json.loads(api_body(response))
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"])
    assert body["location"] == f"/backfills/{body['id']}" == header(response, "Location")
    assert body["prefix"] == "reports/"
    (start,) = [json.loads(b) for b in drain(stack.sqs, stack.backfill_queue_url)]
    assert start == {
        "type": "s3torrent.backfill",
        "backfill_id": body["id"],
        "bucket": BUCKET,
        "prefix": "reports/",
        "step": 0,
    }
    event = load_event("apigw_get_backfill.json")
    event["path"] = body["location"]
    progress = json.loads(api_body(call(event)))
    assert progress["status"] == "queued" and progress["queued"] == 0
    assert progress["id"] == body["id"] and progress["bucket"] == BUCKET


def test_backfill_errors(stack: Stack) -> None:
    assert json_error(call(load_event("apigw_get_backfill.json"))) == (404, "NoSuchBackfill")
    event = load_event("apigw_post_backfills.json")
    event["body"] = json.dumps({"bucket": "not-allowed-bucket"})
    assert json_error(call(event)) == (403, "AccessDenied")
    event["body"] = json.dumps({"prefix": "x"})
    assert json_error(call(event)) == (422, "ValidationError")


def test_backfill_without_configured_queue_is_501(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_mapping({"buckets": [{"name": BUCKET}]})
    monkeypatch.setattr(api, "runtime", Runtime(settings, session=SESSION))
    assert json_error(call(load_event("apigw_post_backfills.json"))) == (501, "NotImplemented")


# --- routing and the OpenAPI document --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "allow"),
    [
        ("GET", "/", 404, "NotFound", None),
        ("GET", "/nothing", 404, "NotFound", None),
        ("GET", "/torrents", 405, "MethodNotAllowed", "POST"),
        ("DELETE", "/torrents", 405, "MethodNotAllowed", "POST"),
        ("PUT", "/backfills", 405, "MethodNotAllowed", "POST"),
        ("POST", "/openapi.json", 405, "MethodNotAllowed", "GET"),
        ("DELETE", "/backfills/abc", 405, "MethodNotAllowed", "GET"),
        ("POST", f"/torrents/{BUCKET}/k", 405, "MethodNotAllowed", "GET"),
    ],
)
def test_unknown_routes_and_methods(
    stack: Stack, method: str, path: str, status: int, code: str, allow: str | None
) -> None:
    event = load_event("apigw_get_openapi.json")
    event.update(httpMethod=method, path=path)
    response = call(event)
    assert json_error(response) == (status, code)
    assert header(response, "Allow") == allow


def test_openapi_documents_every_route(stack: Stack) -> None:
    response = call(load_event("apigw_get_openapi.json"))
    assert response["statusCode"] == 200
    document = json.loads(api_body(response))
    paths = document["paths"]
    assert set(paths) == {
        "/{bucket}/{key}",
        "/torrents",
        "/torrents/{bucket}/{key}",
        "/backfills",
        "/backfills/{backfill_id}",
        "/feeds/{bucket}",
        "/feeds/{bucket}/{prefix}",
        "/browse/{bucket}",
        "/browse/{bucket}/{prefix}",
    }
    s3_route = paths["/{bucket}/{key}"]["get"]
    assert set(s3_route["responses"]["200"]["content"]) == {"application/x-bittorrent"}
    assert set(s3_route["responses"]["404"]["content"]) == {"application/xml"}
    assert "307" in s3_route["responses"]
    names = {p["name"] for p in s3_route["parameters"]}
    assert {"torrent", "x-amz-request-payer", "x-amz-expected-bucket-owner"} <= names
    post_torrents = paths["/torrents"]["post"]
    assert {"200", "201", "202", "400", "403", "404", "413", "415", "422"} <= set(
        post_torrents["responses"]
    )
    assert post_torrents["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert "ErrorBody" in document["components"]["schemas"]
    assert "422" not in paths["/torrents/{bucket}/{key}"]["get"]["responses"]


# --- no 5xx for any input --------------------------------------------------------------------


def _nasty_events() -> list[tuple[str, dict[str, Any]]]:
    base = load_event("apigw_get_object_torrent.json")
    posted = load_event("apigw_post_torrents.json")
    cases: list[tuple[str, dict[str, Any]]] = []

    def add(name: str, template: dict[str, Any], **changes: Any) -> None:
        event = copy.deepcopy(template)
        event.update(changes)
        cases.append((name, event))

    for path in [
        "/",
        "//",
        "///",
        f"/{BUCKET}",
        f"/{BUCKET}/",
        f"/{BUCKET}//",
        f"/{BUCKET}/..",
        f"/{BUCKET}/../../etc/passwd",
        f"/{BUCKET}/%2e%2e/%2e%2e",
        f"/{BUCKET}/%2F%2F",
        f"/{BUCKET}/%FF%FE",
        f"/{BUCKET}/%",
        f"/{BUCKET}/%zz",
        f"/{BUCKET}/a%00b",
        f"/{BUCKET}/{'%F0%9F%92%A9' * 300}",
        f"/{BUCKET}/" + "a" * 5000,
        "/" + "b" * 300 + "/k",
        "/UPPER_bucket/k",
        "/torrents/%00/%00",
        "/backfills/%00",
        "/backfills/" + "x" * 2000,
        "/torrents/" + BUCKET,
        "/openapi.json/x",
    ]:
        add(f"path {path[:40]}", base, path=path)
    for query in [
        {"torrent": "x" * 3000},
        {"torrent": "", "versionId": "%00"},
        {"torrent": "", "versionId": "null"},
        {"TORRENT": ""},
    ]:
        add(f"query {str(query)[:40]}", base, queryStringParameters=query)
    for name, value in [
        ("x-amz-request-payer", "bucket-owner"),
        ("x-amz-expected-bucket-owner", ""),
        ("x-amz-expected-bucket-owner", "1" * 100),
    ]:
        event = copy.deepcopy(base)
        event["headers"][name] = value
        cases.append((f"header {name}={value[:10]}", event))
    add("no headers", base, headers=None, multiValueHeaders=None)
    add("no identity", base, requestContext={"requestId": "r", "stage": "prod", "path": "/x"})
    for body in [
        None,
        "",
        "null",
        "[]",
        "0",
        '"string"',
        "{}",
        '{"bucket": null, "key": null}',
        '{"bucket": 1, "key": 2}',
        '{"bucket": "' + BUCKET + '", "key": ""}',
        '{"bucket": "' + BUCKET + '", "key": "x", "options": null}',
        '{"bucket": "' + BUCKET + '", "key": "x", "options": {"trackers": "udp://x"}}',
        '{"bucket": "' + BUCKET + '", "key": "x", "options": {"web_seeds": ["{nope}"]}}',
        '{"bucket": "' + BUCKET + '", "key": "x", "options": {"piece_length": 1e400}}',
        '{"bucket": "' + BUCKET + '", "key": "x", "version_id": "nope"}',
        "[" * 5000 + "]" * 5000,
        '{"a": "\\ud800"}',
        "\xff\xfe",
    ]:
        add(f"body {str(body)[:30]}", posted, body=body)
    add(
        "body binary",
        posted,
        body=base64.b64encode(bytes(range(256))).decode(),
        isBase64Encoded=True,
    )
    add("body bad base64", posted, body="!!!not base64!!!", isBase64Encoded=True)
    for content_type in [
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "",
    ]:
        event = copy.deepcopy(posted)
        event["headers"]["Content-Type"] = content_type
        cases.append((f"content-type {content_type[:20]}", event))
    backfill = load_event("apigw_post_backfills.json")
    for body in ['{"bucket": "' + BUCKET + '", "prefix": null}', '{"bucket": ""}', "{"]:
        add(f"backfill body {body[:30]}", backfill, body=body)
    for method in ["HEAD", "OPTIONS", "PATCH", "TRACE", "get"]:
        add(f"method {method}", base, httpMethod=method)
    return cases


NASTY = _nasty_events()


@pytest.mark.parametrize(("name", "event"), NASTY, ids=[name for name, _ in NASTY])
def test_no_5xx_for_nasty_inputs(stack: Stack, name: str, event: dict[str, Any]) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key="x", Body=b"x" * 100)
    response = call(copy.deepcopy(event))
    assert 200 <= response["statusCode"] < 500, (
        name,
        response["statusCode"],
        api_body(response)[:300],
    )
    content_type = header(response, "Content-Type")
    if response["statusCode"] >= 400:
        assert content_type in ("application/json", "application/xml")
        if content_type == "application/json":
            assert set(json.loads(api_body(response))) == {"error"}
