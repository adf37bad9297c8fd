"""The API handler against moto's server over HTTP: the S3-compatible route, the 307 for a
big torrent (followed for real), and a queued POST /torrents finished by the worker.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import libtorrent as lt
import pytest

from s3torrent.handlers import api
from s3torrent.handlers import worker as worker_handler
from s3torrent.handlers.api import s3_compatible
from s3torrent.handlers.runtime import Runtime
from s3torrent.settings import Settings
from tests.support.handlers import (
    SESSION,
    FakeContext,
    api_body,
    client,
    drain,
    header,
    load_event,
    make_resources,
    sqs_event,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

KEY = "vidéos/2024/clip (final)+1.bin"
BODY = bytes(range(251)) * 4000  # 1,004,000 bytes


@dataclass
class Stack:
    s3: Any
    sqs: Any
    bucket: str
    resources: Any
    endpoint: str


def runtime_for(stack: Stack, **values: Any) -> Runtime:
    settings = Settings.from_mapping(
        {
            "buckets": [{"name": stack.bucket}],
            "endpoint_url": stack.endpoint,
            "queue_url": stack.resources.queue_url,
            "backfill_queue_url": stack.resources.backfill_queue_url,
            "backfill_table": stack.resources.table,
            **values,
        }
    )
    return Runtime(settings, session=SESSION)


@pytest.fixture
def stack(moto_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    s3 = client("s3", moto_endpoint)
    s3.put_object(Bucket=bucket, Key=KEY, Body=BODY)
    made = Stack(
        s3, client("sqs", moto_endpoint), bucket, make_resources(moto_endpoint), moto_endpoint
    )
    monkeypatch.setattr(api, "runtime", runtime_for(made))
    return made


def get_torrent(bucket: str, key: str) -> dict[str, Any]:
    event = load_event("apigw_get_object_torrent.json")
    event["path"] = f"/{bucket}/{quote(key, safe='/')}"
    response: dict[str, Any] = api.lambda_handler(event, FakeContext())
    return response


def test_get_object_torrent_over_http(stack: Stack) -> None:
    response = get_torrent(stack.bucket, KEY)
    assert response["statusCode"] == 200
    info = lt.torrent_info(cast(Any, lt.bdecode(api_body(response))))
    assert info.name() == "clip (final)+1.bin" and info.total_size() == len(BODY)
    stored = stack.s3.head_object(Bucket=stack.bucket, Key=KEY + ".torrent")
    assert stored["ContentType"] == "application/x-bittorrent"
    assert stored["Metadata"]["info-hash-v1"] == str(info.info_hashes().v1)

    reads: list[str] = []
    runtime = api.runtime
    for s3 in {id(c): c for c in (runtime.objects.client, runtime.objects.data_client)}.values():
        s3.meta.events.register(
            "request-created.s3", lambda request, operation_name, **_: reads.append(operation_name)
        )
    again = get_torrent(stack.bucket, KEY)
    assert api_body(again) == api_body(response)
    assert reads == ["HeadObject", "GetObject"]  # the object's HEAD, the stored torrent's GET


def test_errors_over_http(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    response = get_torrent(stack.bucket, "no such key")
    assert response["statusCode"] == 404 and b"<Code>NoSuchKey</Code>" in api_body(response)
    monkeypatch.setattr(
        api,
        "runtime",
        runtime_for(stack, buckets=[{"name": stack.bucket}, {"name": "gone-bucket-x"}]),
    )
    response = get_torrent("gone-bucket-x", "k")
    assert response["statusCode"] == 404 and b"<Code>NoSuchBucket</Code>" in api_body(response)


def test_big_torrent_redirects_to_a_working_presigned_url(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_compatible, "MAX_INLINE_TORRENT_BYTES", 1024)
    response = get_torrent(stack.bucket, KEY)
    assert response["statusCode"] == 307
    location = header(response, "Location") or ""
    assert location.startswith(stack.endpoint)
    with urllib.request.urlopen(location) as fetched:  # what a client following 307 does
        data = fetched.read()
    assert data == stack.s3.get_object(Bucket=stack.bucket, Key=KEY + ".torrent")["Body"].read()
    assert len(data) > 1024


def test_post_torrents_queued_then_made_by_the_worker(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Options of the caller's own are queued only where callers may replace the stored torrent.
    queuing = runtime_for(stack, api_inline_max_bytes=1000, api_callers_may_replace=True)
    monkeypatch.setattr(api, "runtime", queuing)
    event = load_event("apigw_post_torrents.json")
    event["body"] = json.dumps(
        {"bucket": stack.bucket, "key": KEY, "options": {"meta_version": "2", "comment": "later"}}
    )
    response = api.lambda_handler(event, FakeContext())
    assert response["statusCode"] == 202
    location = json.loads(api_body(response))["location"]

    status_event = load_event("apigw_get_torrent_status.json")
    status_event["path"] = location
    assert api.lambda_handler(status_event, FakeContext())["statusCode"] == 404

    monkeypatch.setattr(worker_handler, "runtime", runtime_for(stack))
    jobs = drain(stack.sqs, stack.resources.queue_url)
    assert len(jobs) == 1
    result = worker_handler.lambda_handler(sqs_event(jobs), FakeContext())
    assert result == {"batchItemFailures": []}

    status = api.lambda_handler(status_event, FakeContext())
    body = json.loads(api_body(status))
    assert status["statusCode"] == 200 and body["status"] == "fresh"
    assert body["meta_version"] == "2" and body["info_hash_v1"] is None
    assert body["magnet"].startswith("magnet:?xt=urn:btmh:1220" + body["info_hash_v2"])
