"""Kept collections on the local stack: `s3torrent serve --collection BUCKET/PREFIX/`.

Uploads, overwrites and deletes under the prefix reach the worker as S3 events; the first of
a window sends a rebuild delayed by S3TORRENT_COLLECTION_DELAY_SECONDS (2 s here, 30 s by
default) and the rest ride along, so a burst of uploads ends in one current torrent after a
few builds. Builds are counted in the worker's log (`serve -v`).
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest

from s3torrent.torrent import read_collection_torrent
from tests.support.ports import free_port
from tests.support.stack import ServeProcess, Stack, client_env, http, wait_for

pytestmark = pytest.mark.e2e

BUCKET = "e2e-kept"
PREFIX = "kept/set 1/"
TORRENT = "kept/set 1.torrent"
DELAY = 2
BUILT = re.compile(r"collection (created|changed): kept/set 1\.torrent")


@pytest.fixture(scope="module")
def kept_stack() -> Iterator[Stack]:
    s3_port, api_port = free_port(), free_port()
    env = client_env(
        S3TORRENT_S3_PORT=str(s3_port),
        S3TORRENT_API_PORT=str(api_port),
        S3TORRENT_COLLECTION_DELAY_SECONDS=str(DELAY),
    )
    process = ServeProcess(["-v", "--collection", f"{BUCKET}/{PREFIX}"], env)
    seconds = process.wait_ready()
    yield Stack(process, f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{api_port}", seconds)
    code = process.stop(signal.SIGTERM)
    assert code == 0, f"s3torrent serve exited {code}:\n{process.output}"


def files_in(s3: Any) -> dict[str, int] | None:
    try:
        data = s3.get_object(Bucket=BUCKET, Key=TORRENT)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return {"/".join(file.path): file.length for file in read_collection_torrent(data).files}


def wait_for_files(s3: Any, expected: dict[str, int] | None, timeout: float = 20) -> None:
    wait_for(lambda: files_in(s3) == expected, timeout, f"{TORRENT} never listed {expected}")


def builds(stack: Stack) -> int:
    return len(BUILT.findall(stack.process.output))


def test_a_kept_collection_follows_uploads_overwrites_and_deletes(kept_stack: Stack) -> None:
    s3 = kept_stack.s3()
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "a.bin", Body=b"a" * 1000)
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "b.bin", Body=b"b" * 2000)
    wait_for_files(s3, {"a.bin": 1000, "b.bin": 2000})
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "a.bin", Body=b"A" * 3000)  # overwrite
    wait_for_files(s3, {"a.bin": 3000, "b.bin": 2000})
    s3.delete_object(Bucket=BUCKET, Key=PREFIX + "b.bin")
    wait_for_files(s3, {"a.bin": 3000})
    # Each member keeps its own <key>.torrent as before.
    assert s3.head_object(Bucket=BUCKET, Key=PREFIX + "a.bin.torrent")


def test_a_burst_of_uploads_builds_a_few_times(kept_stack: Stack) -> None:
    s3 = kept_stack.s3()
    wait_for(lambda: files_in(s3) is not None, 20, "the first test's torrent")
    time.sleep(DELAY + 1)  # the first test's last rebuild is done
    before = builds(kept_stack)
    names = [f"burst/{i:03}.bin" for i in range(150)]
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        for wave in range(5):  # 150 uploads over about 5 s: two or three windows
            batch = names[wave * 30 : (wave + 1) * 30]
            list(
                pool.map(
                    lambda name: s3.put_object(Bucket=BUCKET, Key=PREFIX + name, Body=b"x"), batch
                )
            )
            time.sleep(1.0)
    burst = time.monotonic() - started
    expected = {"a.bin": 3000, **{name: 1 for name in names}}
    wait_for_files(s3, expected, timeout=60)
    time.sleep(DELAY + 2)  # any rebuild still due runs, and finds the torrent fresh
    status = http("GET", f"{kept_stack.api_url}/torrents/{BUCKET}/{quote(PREFIX)}").json()
    assert status["status"] == "fresh", status
    assert status["files"] == 151
    count = builds(kept_stack) - before
    print(f"150 uploads in {burst:.1f} s: {count} builds, last read {status['bytes_read']} bytes")
    assert 1 <= count <= 2 + int(burst / DELAY) * 2, kept_stack.process.output[-3000:]
