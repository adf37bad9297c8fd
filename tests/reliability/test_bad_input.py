"""The bad-input catalogue: every way a caller or an object can be wrong, and what they get.

Each case goes through the API Lambda behind the local API Gateway (HTTP, as a client sends
it), and where it applies through the CLI and the worker too. S3 behaviours moto does not
have (SSE-C objects, Requester Pays, the expected-bucket-owner check) are answered by the
fault proxy the way S3 answers them. The README has the table, one row per case.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import pytest

from s3torrent import cli
from s3torrent.handlers import worker as worker_handler
from s3torrent.handlers.runtime import Runtime
from s3torrent.settings import Settings
from s3torrent.torrent import read_torrent
from s3torrent_local.lambda_context import FakeLambdaContext
from tests.support.faults.events import created, sqs_event
from tests.support.faults.helpers import plain_client, reference_hashes, source_writes, torrent_keys
from tests.support.faults.proxy import Emulation, FaultProxy, RequestInfo

pytestmark = pytest.mark.integration

OWNER = "123456789012"  # moto's account
LONG_KEY = "k/" + "x" * 1018  # 1020 bytes: its .torrent would be 1028


@pytest.fixture(scope="module")
def objects(moto_endpoint: str) -> str:
    """A bucket with one object of every awkward kind (one per module: only read here)."""
    s3 = plain_client(moto_endpoint, attempts=3)
    bucket = f"bad-input-{os.getpid()}"
    s3.create_bucket(Bucket=bucket)
    put = s3.put_object
    put(Bucket=bucket, Key="ok.bin", Body=b"fine" * 1000)
    put(Bucket=bucket, Key="big.bin", Body=os.urandom(5000))
    put(Bucket=bucket, Key="already.torrent", Body=b"d4:infod6:lengthi1eee")
    put(Bucket=bucket, Key=LONG_KEY, Body=b"long")
    put(Bucket=bucket, Key="empty.bin", Body=b"")
    put(Bucket=bucket, Key="folder/", Body=b"")
    put(Bucket=bucket, Key="cold.bin", Body=b"cold", StorageClass="GLACIER")
    put(Bucket=bucket, Key="ssec.bin", Body=b"encrypted")
    put(Bucket=bucket, Key="secret", Body=b"the secret outside the prefix")
    put(Bucket=bucket, Key="pub/../secret", Body=b"a key with a dot-dot segment, literally")
    put(Bucket=bucket, Key="pub/a/b", Body=b"inside the prefix")
    return bucket


@pytest.fixture
def s3_like(fault_proxy: FaultProxy, objects: str) -> FaultProxy:
    """The proxy, answering as S3 would where moto does not."""

    def ssec(info: RequestInfo) -> bool:
        # S3: HEAD of an SSE-C object without its key is a bare 400; a GET, InvalidRequest.
        return info.key == "ssec.bin" and "x-amz-server-side-encryption-customer-key" not in (
            info.headers
        )

    def owner_mismatch(info: RequestInfo) -> bool:
        owner = info.headers.get("x-amz-expected-bucket-owner")
        return owner is not None and owner != OWNER

    def requester_pays(info: RequestInfo) -> bool:
        return info.key.startswith("rp/") and info.headers.get("x-amz-request-payer") != (
            "requester"
        )

    fault_proxy.policy.emulations += [
        Emulation(
            "sse-c",
            ssec,
            400,
            "InvalidRequest",
            "The object was stored using a form of Server Side Encryption. The correct"
            " parameters must be provided to retrieve the object.",
        ),
        Emulation("owner", owner_mismatch, 403, "AccessDenied", "Access Denied"),
        Emulation("requester-pays", requester_pays, 403, "AccessDenied", "Access Denied"),
    ]
    return fault_proxy


@pytest.fixture
def api(local_api: Any, s3_like: FaultProxy, objects: str) -> Any:
    return local_api(
        buckets=[
            {"name": objects},
            {"name": "no-such-bucket-anywhere"},
        ],
        endpoint_url=s3_like.url,
        api_inline_max_bytes=4096,
    )


def made(s3_client: Any, bucket: str, *keys: str) -> list[str]:
    """Which of these objects have a `.torrent` (default: the ones no torrent may exist for)."""
    present = set(torrent_keys(s3_client, bucket))
    wanted = keys or UNFIT
    return [k + ".torrent" for k in wanted if k + ".torrent" in present]


def s3_error(body: bytes) -> str:
    text = body.decode()
    assert text.startswith("<?xml") and "<Error>" in text, text
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0]


def get_torrent(
    api: Any, bucket: str, key: str, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    return api.request("GET", f"/prod/{bucket}/{quote(key)}?torrent", headers=headers)


# --- objects that get no torrent, and say why ---------------------------------------------

OBJECT_CASES = [
    # id, key, status, S3 code, words of the reason
    ("missing-key", "nope.bin", 404, "NoSuchKey", "no such object"),
    ("torrent-key", "already.torrent", 400, "InvalidRequest", ".torrent"),
    ("torrent-key-too-long", LONG_KEY, 400, "InvalidRequest", "1024-byte"),
    ("zero-bytes", "empty.bin", 400, "InvalidRequest", "0-byte"),
    ("directory-marker", "folder/", 400, "InvalidRequest", "directory marker"),
    ("sse-c", "ssec.bin", 400, "InvalidRequest", "SSE-C"),
    ("archived-glacier", "cold.bin", 400, "InvalidRequest", "archive"),
]


UNFIT = [case[1] for case in OBJECT_CASES] + ["big.bin", "secret"]


@pytest.mark.parametrize(
    ("key", "status", "code", "words"),
    [case[1:] for case in OBJECT_CASES],
    ids=[case[0] for case in OBJECT_CASES],
)
def test_unfit_objects_are_refused_with_their_reason(
    api: Any, objects: str, s3_client: Any, key: str, status: int, code: str, words: str
) -> None:
    got, headers, body = get_torrent(api, objects, key)
    assert (got, s3_error(body)) == (status, code), body
    assert words.lower() in body.decode().lower(), body
    assert headers["content-type"] == "application/xml"
    answer, document = api.post_json("/prod/torrents", {"bucket": objects, "key": key})
    assert answer == status, document
    assert words.lower() in json.dumps(document).lower(), document
    assert made(s3_client, objects) == []


def test_unknown_bucket(api: Any, s3_client: Any) -> None:
    status, _, body = get_torrent(api, "no-such-bucket-anywhere", "k.bin")
    assert (status, s3_error(body)) == (404, "NoSuchBucket")
    status, document = api.post_json(
        "/prod/torrents", {"bucket": "no-such-bucket-anywhere", "key": "k.bin"}
    )
    assert status == 404 and document["error"]["code"] == "NoSuchBucket", document


def test_bucket_outside_the_allowlist(api: Any, s3_client: Any) -> None:
    s3_client.create_bucket(Bucket="not-allowed-here")
    s3_client.put_object(Bucket="not-allowed-here", Key="k.bin", Body=b"x")
    status, _, body = get_torrent(api, "not-allowed-here", "k.bin")
    assert (status, s3_error(body)) == (403, "AccessDenied")
    status, document = api.post_json(
        "/prod/torrents", {"bucket": "not-allowed-here", "key": "k.bin"}
    )
    assert status == 403 and document["error"]["code"] == "AccessDenied"
    assert torrent_keys(s3_client, "not-allowed-here") == []


def test_object_over_the_configured_limit(api: Any, objects: str, sqs_client: Any) -> None:
    """Over the API's inline limit: POST queues it (202), ?torrent says come back (503)."""
    status, headers, body = get_torrent(api, objects, "big.bin")
    assert (status, s3_error(body)) == (503, "ServiceUnavailable"), body
    assert int(headers["retry-after"]) > 0
    status, document = api.post_json("/prod/torrents", {"bucket": objects, "key": "big.bin"})
    assert status == 202, document
    assert document["status"] == "queued" and document["location"].endswith("/big.bin")
    queued = sqs_client.receive_message(
        QueueUrl=api.settings.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", [])
    jobs = [json.loads(m["Body"]) for m in queued]
    assert {"type": "s3torrent.job", "bucket": objects, "key": "big.bin"} in [
        {k: j[k] for k in ("type", "bucket", "key")} for j in jobs
    ]


# --- options that are wrong -----------------------------------------------------------------

OPTION_CASES = [
    ("piece-length-not-power-of-two", {"piece_length": 12345}, 422),
    ("piece-length-too-small", {"piece_length": 8192}, 422),
    ("piece-length-huge", {"piece_length": 1 << 31}, 422),
    ("tracker-not-a-url", {"trackers": ["ftp://tracker.example/announce"]}, 422),
    ("tracker-javascript", {"trackers": ["javascript:alert(1)"]}, 422),
    ("web-seed-not-http", {"web_seeds": ["file:///etc/passwd"]}, 422),
    ("web-seed-bad-placeholder", {"web_seeds": ["https://cdn.example/{nope}/"]}, 400),
    ("meta-version-unknown", {"meta_version": "3"}, 422),
    ("unknown-option", {"endpoint_url": "http://169.254.169.254/"}, 422),
]


@pytest.mark.parametrize(
    ("options", "status"),
    [case[1:] for case in OPTION_CASES],
    ids=[case[0] for case in OPTION_CASES],
)
def test_bad_options_are_refused(
    api: Any, objects: str, s3_client: Any, options: dict[str, Any], status: int
) -> None:
    got, document = api.post_json(
        "/prod/torrents", {"bucket": objects, "key": "ok.bin", "options": options}
    )
    assert got == status, document
    assert document["error"]["message"], document
    assert made(s3_client, objects) == []


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--piece-length", "12345"], "power of two"),
        (["--tracker", "ftp://tracker.example/announce"], "tracker"),
        (["--web-seed", "file:///etc/passwd"], "web seed"),
    ],
    ids=["piece-length", "tracker", "web-seed"],
)
def test_bad_options_in_the_cli(
    objects: str,
    s3_like: FaultProxy,
    capsys: pytest.CaptureFixture[str],
    s3_client: Any,
    flags: list[str],
    words: str,
) -> None:
    argv = ["create", f"s3://{objects}/ok.bin", "--endpoint-url", s3_like.url, *flags]
    assert cli.main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0].lower(), err
    assert made(s3_client, objects) == []


# --- requests that are wrong ----------------------------------------------------------------


def test_oversized_json(api: Any, objects: str) -> None:
    body = json.dumps({"bucket": objects, "key": "ok.bin", "options": {"comment": "x" * 70_000}})
    status, _, answer = api.request(
        "POST", "/prod/torrents", body=body, headers={"Content-Type": "application/json"}
    )
    assert status == 413, answer
    assert json.loads(answer)["error"]["code"] == "RequestEntityTooLarge"


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("text/plain", '{"bucket": "b", "key": "k"}', 415),
        # Powertools parses form bodies itself: refused by validation (422), not 415.
        ("application/x-www-form-urlencoded", "bucket=b&key=k", 422),
        ("application/json", '{"bucket": "b", "key": ', 400),
        ("application/json", "[1, 2, 3]", 422),
        ("application/json", '{"bucket": "b", "key": "k", "extra": 1}', 422),
    ],
    ids=["text-plain", "form", "malformed-json", "json-array", "unknown-field"],
)
def test_wrong_content_type_or_shape(api: Any, content_type: str, body: str, status: int) -> None:
    got, headers, answer = api.request(
        "POST", "/prod/torrents", body=body, headers={"Content-Type": content_type}
    )
    assert got == status, answer
    assert headers["content-type"].startswith("application/json")
    assert json.loads(answer)["error"]["code"]


# --- path tricks ------------------------------------------------------------------------------


@pytest.fixture
def scoped_api(local_api: Any, s3_like: FaultProxy, objects: str) -> Any:
    """Only `pub/` of the bucket is configured."""
    return local_api(buckets=[{"name": objects, "prefix": "pub/"}], endpoint_url=s3_like.url)


def test_dot_dot_is_a_literal_key_never_a_way_out(scoped_api: Any, objects: str) -> None:
    """`pub/../secret` is its own S3 object (keys are literal): its torrent, never `secret`'s."""
    for path in (
        f"/prod/{objects}/pub/../secret?torrent",
        f"/prod/{objects}/pub/%2E%2E/secret?torrent",
    ):
        status, _, body = scoped_api.request("GET", path)
        assert status == 200, body
        torrent = read_torrent(body)
        expected = b"a key with a dot-dot segment, literally"
        assert torrent.length == len(expected)
        assert (torrent.info_hash_v1, torrent.info_hash_v2) == reference_hashes(
            expected, "pub/../secret"
        )
    status, _, body = scoped_api.request("GET", f"/prod/{objects}/secret?torrent")
    assert (status, s3_error(body)) == (403, "AccessDenied")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/prod/{b}/pub%2F..%2Fsecret?torrent", 200),  # the same literal key, encoded: inside
        ("/prod/{b}/%2E%2E/secret?torrent", 403),  # `../secret` is not under pub/
        ("/prod/{b}//pub/a/b?torrent", 403),  # key `/pub/a/b`: another key, not under pub/
        ("/prod/{b}/pub//a/b?torrent", 404),  # key `pub//a/b`: inside, and no such object
        ("/prod/{b}%2Fpub/a/b?torrent", 403),  # bucket `b/pub`: not a configured bucket
        ("/prod/{B}/pub/a/b?torrent", 403),  # the bucket in upper case: another bucket
        ("/prod/%2E%2E/{b}/pub/a/b?torrent", 403),
    ],
    ids=[
        "encoded-slashes",
        "dot-dot-first",
        "double-slash-first",
        "double-slash-inside",
        "slash-in-bucket",
        "bucket-case",
        "dot-dot-bucket",
    ],
)
def test_path_tricks(scoped_api: Any, objects: str, s3_client: Any, path: str, status: int) -> None:
    target = path.format(b=objects, B=objects.upper())
    got, _, body = scoped_api.request("GET", target)
    assert got == status, (target, body)
    if status != 200:
        assert s3_error(body) in ("AccessDenied", "NoSuchKey", "NoSuchBucket"), body
    assert "secret.torrent" not in torrent_keys(s3_client, objects)


# --- Requester Pays, expected bucket owner -------------------------------------------------------


def test_requester_pays_without_the_header(
    api: Any, objects: str, s3_client: Any, s3_like: FaultProxy
) -> None:
    """moto does not enforce Requester Pays (put_bucket_request_payment is stored, not
    enforced): the proxy refuses reads of `rp/` keys without `x-amz-request-payer`, as S3 does."""
    s3_client.put_object(Bucket=objects, Key="rp/data.bin", Body=b"pay me" * 100)
    status, _, body = get_torrent(api, objects, "rp/data.bin")
    assert (status, s3_error(body)) == (403, "AccessDenied"), body
    status, headers, body = get_torrent(
        api, objects, "rp/data.bin", **{"x-amz-request-payer": "requester"}
    )
    assert status == 200, body
    assert headers.get("x-amz-request-charged") == "requester"
    # Every S3 request made for it carried the header (HEAD, ranged GETs, the .torrent PUT).
    seen = [e.info for e in s3_like.policy.log if e.info.key.startswith("rp/data.bin")]
    paid = [i for i in seen if i.headers.get("x-amz-request-payer") == "requester"]
    assert paid and {i.method for i in paid} >= {"HEAD", "GET", "PUT"}
    code = cli.main(
        [
            "create",
            f"s3://{objects}/rp/data.bin",
            "--endpoint-url",
            s3_like.url,
            "--force",
            "--request-payer",
        ]
    )
    assert code == 0


@pytest.mark.parametrize(
    ("owner", "status", "code"),
    [
        ("111122223333", 403, "AccessDenied"),
        ("not-an-account", 400, "InvalidRequest"),
        (OWNER, 200, None),
    ],
    ids=["mismatch", "malformed", "match"],
)
def test_expected_bucket_owner(
    api: Any, objects: str, s3_like: FaultProxy, owner: str, status: int, code: str | None
) -> None:
    got, _, body = get_torrent(api, objects, "ok.bin", **{"x-amz-expected-bucket-owner": owner})
    assert got == status, body
    if code:
        assert s3_error(body) == code
    if status == 403:
        forwarded = [e for e in s3_like.policy.log if e.emulated == "owner"]
        assert forwarded, "the owner check must reach S3"


def test_expected_bucket_owner_in_the_cli(
    objects: str, s3_like: FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["create", f"s3://{objects}/ok.bin", "--endpoint-url", s3_like.url]
    assert cli.main([*argv, "--expected-bucket-owner", "111122223333"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "access denied" in err[0].lower(), err


# --- the worker: every unfit object is acknowledged with a reason -------------------------------


def test_worker_acknowledges_every_unfit_object(
    monkeypatch: pytest.MonkeyPatch,
    s3_like: FaultProxy,
    objects: str,
    s3_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings.from_mapping(
        {"buckets": [{"name": objects}], "endpoint_url": s3_like.url, "max_object_bytes": 4096}
    )
    monkeypatch.setattr(worker_handler, "runtime", Runtime(settings))
    keys = [
        "already.torrent",
        LONG_KEY,
        "empty.bin",
        "folder/",
        "cold.bin",
        "ssec.bin",
        "big.bin",
        "nope.bin",
        "ok.bin",
    ]
    event = sqs_event(*(created(objects, key) for key in keys))
    response = worker_handler.lambda_handler(event, FakeLambdaContext("s3torrent-worker", 60))
    assert response == {"batchItemFailures": []}
    assert made(s3_client, objects, *keys) == ["ok.bin.torrent"]
    assert source_writes(s3_like.policy.log) == []
    logged = "\n".join(
        f"{r.getMessage()} {getattr(r, 'reason', '')} {getattr(r, 'uri', '')}"
        for r in caplog.records
    )
    for words in ("directory marker", "0-byte", "archive", "SSE-C", "size limit", "1024-byte"):
        assert words in logged, f"no log line says {words!r}:\n{logged}"
