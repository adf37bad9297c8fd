"""`s3torrent create --api` and `s3torrent status` against the local stack's API.

`s3torrent serve` with a 1 MiB inline size and 64 KiB fan-out parts: a 24 MiB object (64 KiB
pieces, the automatic length) is queued by `POST /torrents` (202) and its build split into 384
parts hashed by the worker's own queue, so the CLI, a subprocess with a user's environment,
follows a real fan-out build part by part. Uploads land with the bucket's notifications off,
so nothing but the CLI's request builds a torrent.

The local stack does not check signatures (loopback is let in); the CLI's SigV4 signature is
verified in tests/unit/cli/test_remote.py.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from s3torrent.torrent import read_torrent
from tests.support.ports import free_port
from tests.support.stack import BIN, ServeProcess, Stack, client_env, wait_for

pytestmark = pytest.mark.e2e

BUCKET = "e2e-remote"
KEY = "models/big model+v1.bin"  # a space and a plus: both URL-quoted in the API's path
SIZE = 24 * 1024**2
PIECE = 64 * 1024  # the automatic piece length of 24 MiB
PARTS = SIZE // PIECE  # one piece a part: the part size is the piece length
CLI_SECONDS = 180
PROGRESS = re.compile(r"building: (\d+) of (\d+) parts")


@pytest.fixture(scope="module")
def remote_stack() -> Iterator[Stack]:
    s3_port, api_port = free_port(), free_port()
    env = client_env(
        S3TORRENT_S3_PORT=str(s3_port),
        S3TORRENT_API_PORT=str(api_port),
        S3TORRENT_API_INLINE_MAX_BYTES=str(1024**2),
        S3TORRENT_FANOUT_PART_BYTES=str(PIECE),
    )
    process = ServeProcess(["--bucket", BUCKET], env)
    seconds = process.wait_ready()
    running = Stack(process, f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{api_port}", seconds)
    # Quiet, as in a bucket that predates s3torrent: no upload builds its own torrent.
    running.s3().put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={})
    yield running
    code = process.stop(signal.SIGTERM)
    assert code == 0, f"s3torrent serve exited {code}:\n{process.output}"


def s3torrent(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed command, with the environment of a user's shell (test credentials)."""
    return subprocess.run(
        [str(BIN / "s3torrent"), *args],
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=CLI_SECONDS,
    )


def upload(stack: Stack, key: str, seed: int, size: int = SIZE) -> None:
    stack.s3().put_object(Bucket=BUCKET, Key=key, Body=random.Random(seed).randbytes(size))


def stored_torrent(stack: Stack, key: str) -> Any:
    data = stack.s3().get_object(Bucket=BUCKET, Key=key + ".torrent")["Body"].read()
    return read_torrent(data)


@dataclass(frozen=True)
class RemoteBuild:
    done: subprocess.CompletedProcess[str]
    report: dict[str, Any]


@pytest.fixture(scope="module")
def remote_build(remote_stack: Stack) -> RemoteBuild:
    """`create --api --json` of the big object, once for the module."""
    upload(remote_stack, KEY, seed=1)
    done = s3torrent("create", f"s3://{BUCKET}/{KEY}", "--api", remote_stack.api_url, "--json")
    assert done.returncode == 0, f"{done.stderr}\n{remote_stack.process.output[-3000:]}"
    return RemoteBuild(done, json.loads(done.stdout))


def test_create_api_follows_a_fanout_build_to_the_stored_torrent(
    remote_stack: Stack, remote_build: RemoteBuild
) -> None:
    report = remote_build.report
    print(remote_build.done.stderr, json.dumps(report, indent=1), sep="\n")
    assert (report["outcome"], report["status"]) == ("created", "fresh")
    assert report["parts"] == PARTS >= 16
    assert report["parts_done"] == report["parts"]
    assert (report["size"], report["piece_length"], report["pieces"]) == (SIZE, PIECE, PARTS)
    assert report["torrent_key"] == KEY + ".torrent"
    torrent = stored_torrent(remote_stack, KEY)
    assert report["info_hash_v1"] == torrent.info_hash_v1
    assert report["info_hash_v2"] == torrent.info_hash_v2
    assert report["meta_version"] == str(torrent.meta_version) == "hybrid"
    # Progress on stderr, one line per change (not a terminal): parts counted up to N.
    progress = [tuple(map(int, found)) for found in PROGRESS.findall(remote_build.done.stderr)]
    assert progress, remote_build.done.stderr
    assert all(parts == PARTS and 0 <= done <= parts for done, parts in progress)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    # The build was queued (202) and made by the worker's parts, not within the request.
    output = remote_stack.process.output
    assert re.search(r"POST /torrents -> 202", output), output[-3000:]
    assert output.count("message of type 's3torrent.part'") >= PARTS


def test_status_of_the_built_torrent(remote_stack: Stack, remote_build: RemoteBuild) -> None:
    def status_json() -> dict[str, Any] | None:
        done = s3torrent("status", f"s3://{BUCKET}/{KEY}", "--api", remote_stack.api_url, "--json")
        assert done.returncode == 0, done.stderr
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer if answer["parts"] > 1 else None

    # The torrent is visible (fresh) a moment before its build is marked done, and until
    # then the API counts it as 1 part: wait that moment out.
    status = wait_for(status_json, 10, "status never reported the build's parts")
    assert (status["status"], status["parts"], status["parts_done"]) == ("fresh", PARTS, PARTS)
    assert status["info_hash_v2"] == remote_build.report["info_hash_v2"]

    done = s3torrent("status", f"s3://{BUCKET}/{KEY}", "--api", remote_stack.api_url)
    print(done.stdout)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "status        fresh"
    assert f"parts         {PARTS} of {PARTS}" in lines
    assert f"info hash v1  {remote_build.report['info_hash_v1']}" in lines


def test_asking_again_answers_fresh_at_once(remote_stack: Stack, remote_build: RemoteBuild) -> None:
    done = s3torrent("create", f"s3://{BUCKET}/{KEY}", "--api", remote_stack.api_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"up to date: s3://{BUCKET}/{KEY}.torrent (computed)"
    assert "building" not in done.stderr


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("small/no-torrent.bin", "no torrent made by s3torrent"),
        ("small/missing.bin", "no such object"),
    ],
)
def test_status_without_a_torrent_exits_1(remote_stack: Stack, key: str, says: str) -> None:
    upload(remote_stack, "small/no-torrent.bin", seed=2, size=1000)  # notifications are off
    done = s3torrent("status", f"s3://{BUCKET}/{key}", "--api", remote_stack.api_url)
    print(done.stderr)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("s3torrent: error: GET /torrents/")
    assert says in done.stderr and "(NoSuchKey, HTTP 404)" in done.stderr


def test_options_the_api_cannot_queue_are_its_400(remote_stack: Stack) -> None:
    # v1 is not the stack's setting (hybrid): a torrent for this caller alone, made within the
    # request or not at all, and 24 MiB is over the inline size.
    upload(remote_stack, "big/options.bin", seed=3)
    uri = f"s3://{BUCKET}/big/options.bin"
    done = s3torrent("create", uri, "--api", remote_stack.api_url, "--meta-version", "1")
    print(done.stderr)
    assert (done.returncode, done.stdout) == (1, "")
    assert "(InvalidRequest, HTTP 400)" in done.stderr and "inline" in done.stderr


def test_a_build_whose_object_changes_fails_with_the_reason(remote_stack: Stack) -> None:
    key = "big/overwritten.bin"
    upload(remote_stack, key, seed=4)
    argv = ["create", f"s3://{BUCKET}/{key}", "--api", remote_stack.api_url]
    process = subprocess.Popen(
        [str(BIN / "s3torrent"), *argv],
        env=client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines = []
    deadline = time.monotonic() + CLI_SECONDS
    for line in process.stderr:  # overwritten once its parts are being counted
        lines.append(line)
        if "building:" in line or time.monotonic() > deadline:
            break
    upload(remote_stack, key, seed=5, size=1000)
    out, rest = process.communicate(timeout=CLI_SECONDS)
    err = "".join(lines) + rest
    print(err)
    assert (process.returncode, out) == (1, ""), err
    failed = re.search(
        rf"^s3torrent: error: the build of s3://{BUCKET}/{key} failed: (.+)$", err, re.M
    )
    assert failed, err
    # Usually a part's GET answers 412 ("changed or was deleted mid-build"). Now and then moto
    # answers a GET racing the overwrite with an HTML 500, which the engine takes for "the
    # endpoint does not answer like S3" and fails the part for good: a failure either way, and
    # the CLI's part is to report it with its reason.
    assert "mid-build" in failed.group(1) or "does not answer like S3" in failed.group(1)
