"""The API's trailing-slash paths: a prefix's collection torrent (moto in-process).

`GET /{bucket}/{prefix}/?torrent` (what `aws s3api get-object-torrent --key PREFIX/` sends),
`GET /torrents/{bucket}/{prefix}/` and `POST /torrents` with a key ending in '/'.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from moto import mock_aws

from s3torrent.handlers import api
from s3torrent.handlers.runtime import Runtime
from s3torrent.torrent import read_collection_torrent as read_collection
from tests.support.handlers import (
    SESSION,
    FakeContext,
    api_body,
    client,
    drain,
    header,
    load_event,
    make_resources,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

BUCKET = "s3torrent-demo"
PREFIX = "sets/Q1 2024+/"
FILES = {PREFIX + "a b.bin": b"a" * 40_000, PREFIX + "ü/c.txt": b"c" * 10, PREFIX + "zero": b""}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with mock_aws():
        s3 = client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket="elsewhere")
        for key, data in FILES.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        resources = make_resources()
        settings = resources.settings(
            {
                "buckets": [{"name": BUCKET}],
                "api_inline_max_bytes": 1_000_000,
            }
        )
        monkeypatch.setattr(api, "runtime", Runtime(settings, session=SESSION))
        yield s3


def call(event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = api.lambda_handler(event, FakeContext())
    return response


def get(path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    event = load_event("apigw_get_object_torrent.json")
    event["path"] = path
    event["requestContext"]["path"] = "/prod" + path
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = (
        {name: [value] for name, value in query.items()} if query else None
    )
    return call(event)


def post(body: Any) -> dict[str, Any]:
    event = load_event("apigw_post_torrents.json")
    event["body"] = json.dumps(body)
    return call(event)


def test_get_object_torrent_of_a_prefix_makes_and_serves_the_collection(s3: Any) -> None:
    response = get(f"/{BUCKET}/{quote(PREFIX)}", {"torrent": ""})
    assert response["statusCode"] == 200, api_body(response)
    assert header(response, "Content-Type") == "application/x-bittorrent"
    assert header(response, "Content-Disposition") == 'attachment; filename="Q1 2024+.torrent"'
    torrent = read_collection(api_body(response))
    assert torrent.name == "Q1 2024+"
    assert sorted("/".join(f.path) for f in torrent.files) == ["a b.bin", "zero", "ü/c.txt"]
    stored = s3.get_object(Bucket=BUCKET, Key="sets/Q1 2024+.torrent")["Body"].read()
    assert stored == api_body(response)


def test_status_of_a_collection(s3: Any) -> None:
    missing = get(f"/torrents/{BUCKET}/{quote(PREFIX)}")
    assert missing["statusCode"] == 404, api_body(missing)
    made = post({"bucket": BUCKET, "key": PREFIX})
    assert made["statusCode"] == 201, api_body(made)
    body = json.loads(api_body(made))
    assert (body["kind"], body["files"], body["bytes_read"]) == ("collection", 3, 40_010)
    assert body["torrent_key"] == "sets/Q1 2024+.torrent"
    status = get(f"/torrents/{BUCKET}/{quote(PREFIX)}")
    assert status["statusCode"] == 200, api_body(status)
    described = json.loads(api_body(status))
    assert described["status"] == "fresh"
    assert (described["kind"], described["files"], described["size"]) == ("collection", 3, 40_010)
    assert described["bytes_read"] == 40_010  # of the last build
    assert described["magnet"].startswith("magnet:?xt=urn:btih:" + body["info_hash_v1"])
    again = post({"bucket": BUCKET, "key": PREFIX})
    assert again["statusCode"] == 200 and json.loads(api_body(again))["status"] == "fresh"
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "new.bin", Body=b"new")
    stale = json.loads(api_body(get(f"/torrents/{BUCKET}/{quote(PREFIX)}")))
    assert stale["status"] == "stale"


def test_an_empty_prefix_is_an_invalid_request(s3: Any) -> None:
    response = get(f"/{BUCKET}/nothing/", {"torrent": ""})
    assert response["statusCode"] == 400
    assert b"InvalidRequest" in api_body(response)
    assert b"no object under this prefix" in api_body(response)
    assert post({"bucket": BUCKET, "key": "nothing/"})["statusCode"] == 400


def test_outside_the_allowlist_is_forbidden(s3: Any) -> None:
    assert get("/elsewhere/x/", {"torrent": ""})["statusCode"] == 403
    assert post({"bucket": "elsewhere", "key": "x/"})["statusCode"] == 403


def test_over_the_inline_size_is_queued_and_the_worker_makes_it(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="big/one.bin", Body=b"x" * 1_000_001)
    runtime = api.runtime
    queue = runtime.settings.queue_url
    sqs = client("sqs")
    pending = get(f"/{BUCKET}/big/", {"torrent": ""})
    assert pending["statusCode"] == 503 and header(pending, "Retry-After") == "60"
    assert get(f"/{BUCKET}/big/", {"torrent": ""})["statusCode"] == 503  # polling again
    response = post({"bucket": BUCKET, "key": "big/", "options": {"meta_version": "hybrid"}})
    assert response["statusCode"] == 202
    assert json.loads(api_body(response))["location"] == f"/torrents/{BUCKET}/big/"
    jobs = drain(sqs, queue)
    # One job for the same listing however often it is polled, one with the caller's options.
    assert [json.loads(body) for body in jobs] == [
        {"type": "s3torrent.job", "bucket": BUCKET, "key": "big/"},
        {
            "type": "s3torrent.job",
            "bucket": BUCKET,
            "key": "big/",
            "overrides": {"meta_version": "hybrid"},
        },
    ]
    runtime.worker.handle_body(jobs[0])
    served = get(f"/{BUCKET}/big/", {"torrent": ""})
    assert served["statusCode"] == 200
    torrent = read_collection(api_body(served))
    assert [file.length for file in torrent.files] == [1_000_001]
    assert str(torrent.meta_version) == "1"
