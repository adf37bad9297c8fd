"""The local stack (`s3torrent serve`) as a subprocess, and helpers that drive real clients at it.

One stack serves the whole session, started the way a user starts it (ports from
`S3TORRENT_S3_PORT` / `S3TORRENT_API_PORT`); tests talk to it only through HTTP and the clients
a user has: the AWS CLI, curl-like requests, aria2c, libtorrent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.ports import free_port

BIN = Path(sys.executable).parent  # the venv's bin: s3torrent, aws
EVENTS_BUCKET = "e2e-events"  # uploads get torrents through S3 notifications
QUIET_BUCKET = "e2e-quiet"  # in the allowlist, but its notifications are switched off
READY_SECONDS = 60
EVENT_SECONDS = 15  # an upload's .torrent appears (or a deletion's goes) within this, loaded CI too
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def client_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell has after the banner's `export` line (and nothing of ours)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "S3TORRENT_", "POWERTOOLS_"))
    }
    env.update(CREDENTIALS, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    env.update(extra)
    return env


class ServeProcess:
    """`s3torrent serve` in a subprocess: its output, collected line by line, and its exit."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            [str(BIN / "s3torrent"), "serve", *args],
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("ready"):
                self._ready.set()
        self._ready.set()  # exited: wake the waiter

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = READY_SECONDS) -> float:
        """Seconds until "ready" was printed; fails with the output if it never is."""
        self._ready.wait(timeout)
        if not any(line.startswith("ready") for line in self.lines):
            self.stop()
            pytest.fail(f"s3torrent serve did not print ready in {timeout} s:\n{self.output}")
        return time.monotonic() - self.started

    def banner(self) -> list[str]:
        """The lines printed from "ready" up to the first log line after it."""
        start = next(n for n, line in enumerate(self.lines) if line.startswith("ready"))
        block = []
        for line in self.lines[start:]:
            if block and not line.startswith((" ", "Try")):
                break
            block.append(line)
        return block

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        """Send `sig` and wait for the exit status (killed and failed if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"s3torrent serve did not stop within {timeout} s:\n{self.output}")
        self._reader.join(5)
        return code


@dataclass
class Stack:
    """The running local stack as the tests see it."""

    process: ServeProcess
    s3_url: str
    api_url: str
    ready_seconds: float

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


def start_serve(
    *args: str, s3_port: int | None = None, api_port: int | None = None
) -> ServeProcess:
    """Start `s3torrent serve` with its ports in the environment, as `make run` users set them."""
    ports = {
        "S3TORRENT_S3_PORT": str(s3_port or free_port()),
        "S3TORRENT_API_PORT": str(api_port or free_port()),
    }
    return ServeProcess(list(args), client_env(**ports))


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """One `s3torrent serve` for the session, with an events bucket and a quiet one."""
    s3_port, api_port = free_port(), free_port()
    process = start_serve(
        "--bucket", EVENTS_BUCKET, "--bucket", QUIET_BUCKET, s3_port=s3_port, api_port=api_port
    )
    seconds = process.wait_ready()
    running = Stack(process, f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{api_port}", seconds)
    # A bucket whose objects arrive without events, as in a bucket that predates s3torrent.
    aws(
        "s3api", "put-bucket-notification-configuration", "--bucket", QUIET_BUCKET,
        "--notification-configuration", "{}", endpoint=running.s3_url,
    )  # fmt: skip
    yield running
    code = process.stop(signal.SIGTERM)
    assert code == 0, f"s3torrent serve exited {code} on SIGTERM:\n{process.output}"


def aws(
    *args: str, endpoint: str | None = None, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the AWS CLI (the venv's awscli) with the fake credentials."""
    command = [str(BIN / "aws"), *args]
    if endpoint:
        command[1:1] = ["--endpoint-url", endpoint]
    done = subprocess.run(
        command, env=client_env(), cwd=cwd, capture_output=True, text=True, timeout=60
    )
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    return done


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> HttpAnswer:
    """One unsigned HTTP request; 4xx/5xx are answers, not exceptions."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=60) as response:
            return HttpAnswer(response.status, _lower(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return HttpAnswer(error.code, _lower(error.headers.items()), error.read())


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post_json(url: str, payload: Any) -> HttpAnswer:
    return http("POST", url, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until `predicate()` is truthy; fail saying `what` did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.1)


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError:
        return False
    return True


def wait_for_torrent(s3: Any, bucket: str, key: str, *, present: bool = True) -> None:
    """Wait until s3://bucket/key.torrent exists (or, with `present=False`, is gone)."""
    where = f"s3://{bucket}/{key}.torrent"
    wait_for(
        lambda: object_exists(s3, bucket, key + ".torrent") == present,
        EVENT_SECONDS,
        f"{where} {'never appeared' if present else 'stayed'}",
    )


def all_keys(s3: Any, bucket: str) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys
