"""`create --api` and `status` against a scripted API on loopback: what is sent, how it is
signed, how a queued build is followed, and what is printed.

The local stack does not check signatures (it lets loopback in), so the signature is checked
here, by a SigV4 verifier written from AWS's description of the algorithm rather than botocore's
code: the canonical request is rebuilt from what arrived on the wire.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from s3torrent import cli
from s3torrent.cli import remote

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "session-token-example"
REGION = "eu-west-1"


@dataclass
class Received:
    method: str
    path: str  # as on the wire: percent-encoded
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class FakeApi:
    """A loopback HTTP server answering scripted (status, body, headers) in turn."""

    answers: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def answer(self, status: int, body: Any, **headers: str) -> None:
        self.answers.append((status, body, headers))


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            fake.received.append(
                Received(
                    self.command,
                    self.path,
                    {name.lower(): value for name, value in self.headers.items()},
                    self.rfile.read(length),
                )
            )
            status, body, headers = fake.answers.pop(0) if fake.answers else (500, {}, {})
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/prod"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Known credentials (with a session token) and region for every command."""
    monkeypatch.setattr(
        cli,
        "new_session",
        lambda: boto3.session.Session(
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            aws_session_token=TOKEN,
            region_name=REGION,
        ),
    )
    monkeypatch.setattr(remote, "POLL_SECONDS", 0.01)


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def verify_sigv4(request: Received, *, host: str, service: str, region: str) -> None:
    """Fails unless `request` carries a valid SigV4 signature by ACCESS_KEY/SECRET_KEY.

    From the AWS General Reference, "Create a canonical request" and "Calculate the signature":
    for every service but S3 each path segment is URI-encoded twice, so the wire path (encoded
    once) is encoded once more.
    """
    algorithm, _, fields = request.headers["authorization"].partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    parts = dict(item.strip().split("=", 1) for item in fields.split(","))
    access_key, date, scope_region, scope_service, terminal = parts["Credential"].split("/")
    assert (access_key, scope_region, scope_service, terminal) == (
        ACCESS_KEY,
        region,
        service,
        "aws4_request",
    )
    signed = parts["SignedHeaders"].split(";")
    assert {"host", "x-amz-date", "x-amz-security-token"} <= set(signed)
    assert request.headers["host"] == host
    assert request.headers["x-amz-security-token"] == TOKEN
    canonical = "\n".join(
        [
            request.method,
            quote(request.path.partition("?")[0], safe="/~"),
            "",  # no query string on these routes
            *(f"{name}:{' '.join(request.headers[name].split())}" for name in signed),
            "",
            ";".join(signed),
            hashlib.sha256(request.body).hexdigest(),
        ]
    )
    amz_date = request.headers["x-amz-date"]
    assert amz_date.startswith(date)
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            f"{date}/{region}/{service}/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = _hmac(("AWS4" + SECRET_KEY).encode(), date)
    for step in (region, service, "aws4_request"):
        key = _hmac(key, step)
    assert parts["Signature"] == hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def info(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "status": status,
        "kind": "object",
        "bucket": "b",
        "key": "dir/a b+c.bin",
        "torrent_key": "dir/a b+c.bin.torrent" if status in ("created", "fresh") else None,
        "size": 40 * 1024**2 if status in ("created", "fresh") else None,
        "piece_length": 65536 if status in ("created", "fresh") else None,
        "meta_version": "hybrid",
        "info_hash_v1": "a" * 40,
        "info_hash_v2": "b" * 64,
        "magnet": "magnet:?xt=urn:btih:" + "a" * 40,
        "source": "computed",
        "parts": 1,
        "parts_done": None,
        "reason": None,
        **fields,
    }


KEY_URI = "s3://b/dir/a b+c.bin"
KEY_PATH = "/prod/torrents/b/dir/a%20b%2Bc.bin"


def test_a_queued_build_is_followed_part_by_part(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.answer(202, {"status": "queued", "location": "/torrents/b/dir/a%20b%2Bc.bin"})
    api.answer(404, {"error": {"code": "NoSuchKey", "message": "no torrent made by s3torrent"}})
    api.answer(200, info("building", parts=4, parts_done=1))
    api.answer(503, {"error": {"code": "ServiceUnavailable", "message": "slow"}}, **{
        "Retry-After": "0"
    })  # fmt: skip
    api.answer(200, info("building", parts=4, parts_done=3))
    api.answer(200, info("fresh", parts=4, parts_done=4))
    code, out, err = run(["create", KEY_URI, "--api", api.url, "--json"], monkeypatch)
    assert code == 0, err
    report = json.loads(out)
    assert report["outcome"] == "created" and report["status"] == "fresh"
    assert (report["parts"], report["parts_done"], report["pieces"]) == (4, 4, 640)
    assert report["info_hash_v1"] == "a" * 40 and report["torrent_key"] == "dir/a b+c.bin.torrent"
    # One line per change when stderr is not a terminal (a log, CI).
    assert err.splitlines() == [
        "a b+c.bin: queued, waiting for the worker",
        "a b+c.bin: building: 1 of 4 parts",
        "a b+c.bin: building: 3 of 4 parts",
    ]
    post, *polls = api.received
    assert (post.method, post.path) == ("POST", "/prod/torrents")
    assert json.loads(post.body) == {"bucket": "b", "key": "dir/a b+c.bin"}
    assert post.headers["content-type"] == "application/json"
    assert [(poll.method, poll.path) for poll in polls] == [("GET", KEY_PATH)] * 5
    host = api.url.split("/")[2]
    for request in api.received:
        verify_sigv4(request, host=host, service="execute-api", region=REGION)


def test_progress_is_redrawn_in_place_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = remote.BuildProgress(stream, "f.bin")
    progress.show("building: 1 of 4 parts")
    progress.show("building: 1 of 4 parts")
    progress.close()
    text = stream.getvalue()
    assert text.count("\rf.bin: building: 1 of 4 parts  0:00\x1b[K") == 2
    assert text.endswith("\r\x1b[K")


def test_a_failed_build_exits_1_with_its_reason(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.answer(202, {"status": "queued", "location": "/torrents/b/k"})
    api.answer(200, info("failed", parts=8, parts_done=3, reason="s3://b/k changed mid-build"))
    code, out, err = run(["create", "s3://b/k", "--api", api.url, "--quiet"], monkeypatch)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "s3torrent: error: the build of s3://b/k failed: s3://b/k changed mid-build"
    ]


def test_made_at_once_prints_what_a_local_create_prints(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.answer(201, info("created"))
    code, out, err = run(["create", KEY_URI, "--api", api.url], monkeypatch)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "wrote: s3://b/dir/a b+c.bin.torrent (computed)"
    assert "parts         1 of 1" in lines
    assert "size          41943040 (40.0 MiB)" in lines
    assert "pieces        640" in lines
    assert f"info hash v1  {'a' * 40}" in lines


def test_options_are_passed_and_the_apis_refusal_is_shown(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = "s3://b/k: options of a caller's own are made within the request only"
    api.answer(400, {"error": {"code": "InvalidRequest", "message": message}})
    argv = ["create", "s3://b/k", "--api", api.url + "/", "--meta-version", "2"]
    argv += ["--piece-length", "1M", "--tracker", "udp://t.example:1/a", "--no-web-seeds"]
    code, out, err = run([*argv, "--private", "--comment", "hi"], monkeypatch)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"s3torrent: error: POST /torrents: {message} (InvalidRequest, HTTP 400)"
    ]
    assert json.loads(api.received[0].body) == {
        "bucket": "b",
        "key": "k",
        "options": {
            "meta_version": "2",
            "piece_length": 1 << 20,
            "trackers": ["udp://t.example:1/a"],
            "web_seeds": [],
            "private": True,
            "comment": "hi",
        },
    }


def test_api_gateways_own_errors_are_shown(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api.answer(403, {"message": "Missing Authentication Token"})
    code, _, err = run(["status", "s3://b/k", "--api", api.url], monkeypatch)
    assert code == 1
    assert "Missing Authentication Token (no such route: does --api end with the stage" in err
    assert "(GatewayError, HTTP 403)" in err


@pytest.mark.parametrize(
    ("flag", "named"),
    [
        (["-o", "x.torrent"], "--output"),
        (["--force"], "--force"),
        (["--endpoint-url", "http://s3"], "--endpoint-url"),
        (["--request-payer"], "--request-payer"),
        (["--expected-bucket-owner", "111122223333"], "--expected-bucket-owner"),
        (["--source-tag", "x"], "--source-tag"),
        (["--source", "native"], "--source"),
    ],
)
def test_local_only_flags_are_usage_errors(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, flag: list[str], named: str
) -> None:
    code, out, err = run(["create", "s3://b/k", "--api", api.url, *flag], monkeypatch)
    assert (code, out) == (2, "")
    assert err.startswith(f"s3torrent create: error: {named} is not taken with --api: ")
    assert api.received == []


def test_wait_seconds_needs_api(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(["create", "s3://b/k", "--wait-seconds", "5"], monkeypatch)
    assert code == 2 and "--wait-seconds" in err and "needs --api" in err


def test_wait_seconds_0_returns_once_queued(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api.answer(202, {"status": "queued", "location": "/torrents/b/k"})
    argv = ["create", "s3://b/k", "--api", api.url, "--wait-seconds", "0", "--json"]
    code, out, _ = run(argv, monkeypatch)
    assert code == 0 and json.loads(out)["outcome"] == "queued"
    assert len(api.received) == 1


def test_a_build_still_running_at_the_deadline_exits_1(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.answer(202, {"status": "queued", "location": "/torrents/b/k"})
    api.answer(200, info("building", parts=8, parts_done=3))
    argv = ["create", "s3://b/k", "--api", api.url, "--wait-seconds", "1", "--quiet"]
    monkeypatch.setattr(remote, "POLL_SECONDS", 2.0)  # past the deadline after one poll
    code, _, err = run(argv, monkeypatch)
    assert code == 1
    assert "still building: 3 of 8 parts after 1 s" in err


def test_status_prints_parts_hashes_and_magnet(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.answer(200, info("building", parts=16, parts_done=5))
    code, out, _ = run(["status", KEY_URI, "--api", api.url], monkeypatch)
    assert code == 0
    assert out.splitlines()[:3] == [
        "status        building",
        "object        s3://b/dir/a b+c.bin",
        "parts         5 of 16",
    ]
    verify_sigv4(api.received[0], host=api.url.split("/")[2], service="execute-api", region=REGION)


def test_status_of_a_missing_torrent_exits_1(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    message = "s3://b/k: no torrent made by s3torrent at k.torrent"
    api.answer(404, {"error": {"code": "NoSuchKey", "message": message}})
    code, out, err = run(["status", "s3://b/k", "--api", api.url, "--json"], monkeypatch)
    assert (code, out) == (1, "")
    assert err == f"s3torrent: error: GET /torrents/b/k: {message} (NoSuchKey, HTTP 404)\n"


def test_status_json_is_the_apis_answer_and_failed_exits_1(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = info("failed", parts=8, parts_done=3, reason="gone")
    api.answer(200, answer)
    code, out, _ = run(["status", "s3://b/k", "--api", api.url, "--json"], monkeypatch)
    assert code == 1 and json.loads(out) == answer


def test_the_region_comes_from_an_execute_api_hostname() -> None:
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
    )
    url = "https://abc123.execute-api.ap-southeast-2.amazonaws.com/prod/"
    from s3torrent.cli.api import connect

    client = connect(url, None, session)
    assert (client.base_url, client.region) == (url.rstrip("/"), "ap-southeast-2")
    assert connect(url, "eu-west-1", session).region == "eu-west-1"  # --region wins
    assert connect("http://127.0.0.1:8000", None, session).region == "us-east-1"


def test_no_api_answer_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(["status", "s3://b/k", "--api", "http://127.0.0.1:9/prod"], monkeypatch)
    assert code == 1
    assert err.startswith("s3torrent: error: GET /torrents/b/k: no answer from http://127.0.0.1:9")


def test_remote_commands_load_no_pydantic_or_engine() -> None:
    # `create --api` and `status` need botocore (to sign) but not the local engine's stack.
    script = textwrap.dedent("""
        import contextlib, io, sys
        from s3torrent import cli
        with contextlib.redirect_stderr(io.StringIO()):
            for argv in (["status", "s3://b/k"], ["create", "s3://b/k", "--json"]):
                assert cli.main([*argv, "--api", "http://127.0.0.1:9/prod"]) == 1
        loaded = {m.split(".")[0] for m in sys.modules} & {"pydantic"}
        loaded |= {m for m in sys.modules if m in ("s3torrent.service", "s3torrent.settings")}
        print(sorted(loaded))
        """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("etag", "parts"), [('"e1"', 4), ('"e2"', 1)])
def test_fresh_before_the_build_is_marked_done_keeps_the_watched_parts(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, etag: str, parts: int
) -> None:
    # The assembling worker writes the torrent before it marks the build done: a poll in
    # between reads `fresh`, `parts: 1`. The build watched for the same ETag made it.
    api.answer(202, {"status": "queued", "location": "/torrents/b/k"})
    api.answer(200, info("building", parts=4, parts_done=3, source_etag='"e1"'))
    api.answer(200, info("fresh", parts=1, parts_done=1, source_etag=etag))
    code, out, _ = run(["create", "s3://b/k", "--api", api.url, "--json"], monkeypatch)
    report = json.loads(out)
    assert code == 0 and (report["parts"], report["parts_done"]) == (parts, parts)
