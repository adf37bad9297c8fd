"""Fan-out on the local stack: a 2 GiB object in 16 parts, and a 200-file collection in parts,
hashed by the worker's own queue.

`s3torrent serve` with S3TORRENT_FANOUT_PART_BYTES=128 MiB: the upload's event starts a
build (hybrid, the default); jobs with options (as a backfill sends them) build v1 and v2.
Every part is a message on the worker queue handled by the real worker handler; the stored
torrent's info dict must be libtorrent's for the same file and piece length, and the whole
file must be what the engine writes in a single pass. `GET /torrents` reports the parts.
"""

from __future__ import annotations

import json
import random
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from s3torrent.collections import CollectionRef
from s3torrent.messages import JobMessage
from s3torrent.settings import Settings
from s3torrent.torrent import (
    PieceHashBuilder,
    TorrentOptions,
    build_torrent,
    read_torrent,
)
from s3torrent.torrent.bencode import decode, encode
from s3torrent.wiring import build_service
from s3torrent_local.stack import WORKER_QUEUE
from tests.support.ports import free_port
from tests.support.stack import ServeProcess, Stack, client_env, http, wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import libtorrent as lt

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

BUCKET = "e2e-fanout"
KEY = "weights/model.bin"
SIZE = 2 * 1024**3
PART = 128 * 1024**2
PIECE = 512 * 1024  # the automatic piece length of 2 GiB
BUILD_SECONDS = 240


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fanout") / "model.bin"
    rng = random.Random(2)
    block = rng.randbytes(16 * 1024**2)
    with path.open("wb") as out:  # 128 distinct 16 MiB blocks: no two pieces alike
        for index in range(SIZE // len(block)):
            out.write(index.to_bytes(8, "big") + block[8:])
    return path


@pytest.fixture(scope="module")
def fanout_stack(source: Path) -> Iterator[Stack]:
    s3_port, api_port = free_port(), free_port()
    env = client_env(
        S3TORRENT_S3_PORT=str(s3_port),
        S3TORRENT_API_PORT=str(api_port),
        S3TORRENT_FANOUT_PART_BYTES=str(PART),
    )
    process = ServeProcess(["--bucket", BUCKET], env)
    seconds = process.wait_ready()
    running = Stack(process, f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{api_port}", seconds)
    running.s3().upload_file(str(source), BUCKET, KEY)  # its event starts the hybrid build
    yield running
    code = process.stop(signal.SIGTERM)
    assert code == 0, f"s3torrent serve exited {code}:\n{process.output}"


def stored(stack: Stack) -> bytes | None:
    try:
        data: bytes = stack.s3().get_object(Bucket=BUCKET, Key=KEY + ".torrent")["Body"].read()
    except stack.s3().exceptions.NoSuchKey:
        return None
    return data


def queue_job(stack: Stack, job: JobMessage) -> None:
    """A job with options on the stack's worker queue, as a backfill or the API queues it."""
    sqs = boto3.client(
        "sqs",
        endpoint_url=stack.s3_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    url = sqs.get_queue_url(QueueName=WORKER_QUEUE)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=job.to_body())


def signed_get(url: str) -> Any:
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials("test", "test"), "execute-api", "us-east-1").add_auth(request)
    return http("GET", url, headers=dict(request.headers.items()))


def libtorrent_info(path: Path, version: str) -> bytes:
    flags = {"1": lt.create_torrent.v1_only, "2": lt.create_torrent.v2_only, "hybrid": 0}[version]
    files = lt.file_storage()
    files.add_file(path.name, path.stat().st_size)
    creator = lt.create_torrent(files, PIECE, flags)
    lt.set_piece_hashes(creator, str(path.parent))
    return encode(decode(lt.bencode(creator.generate()))[b"info"])


def single_pass(path: Path, like: bytes) -> bytes:
    """What the engine writes hashing the file in one pass, with the stored torrent's options."""
    torrent = read_torrent(like)
    builder = PieceHashBuilder(SIZE, torrent.piece_length, torrent.meta_version)
    part = builder.part(0, SIZE)
    with path.open("rb") as file:
        while chunk := file.read(16 * 1024**2):
            part.write(chunk)
    options = TorrentOptions(
        meta_version=torrent.meta_version,
        piece_length=torrent.piece_length,
        trackers=torrent.trackers,
        web_seeds=torrent.web_seeds,
        private=torrent.private,
        source=torrent.source,
        comment=torrent.comment,
        created_by=torrent.created_by,
        creation_date=torrent.creation_date,
    )
    return build_torrent(path.name, builder.finish(), options).data


@pytest.mark.parametrize("version", ["hybrid", "1", "2"])
def test_a_2_gib_object_in_16_parts_is_libtorrents_torrent(
    fanout_stack: Stack, source: Path, version: str
) -> None:
    if version != "hybrid":  # a job with options, as a backfill or the API queues it
        queue_job(
            fanout_stack, JobMessage(bucket=BUCKET, key=KEY, overrides={"meta_version": version})
        )

    def built() -> bytes | None:
        data = stored(fanout_stack)
        if data is None or str(read_torrent(data).meta_version) != version:
            return None
        return data

    data = wait_for(built, BUILD_SECONDS, f"no {version} torrent of {KEY}")
    assert encode(decode(data)[b"info"]) == libtorrent_info(source, version)
    assert data == single_pass(source, data)
    status = signed_get(f"{fanout_stack.api_url}/torrents/{BUCKET}/{quote(KEY)}")
    assert status.status == 200, status.body
    info = json.loads(status.body)
    assert (info["status"], info["parts"], info["parts_done"]) == ("fresh", 16, 16)
    assert info["meta_version"] == version


COLLECTION_BUCKET = "e2e-fanout-sets"
PREFIX = "sets/two hundred+ü/"


@pytest.fixture(scope="module")
def collection_stack() -> Iterator[Stack]:
    """A stack whose parts are 128 KiB (8 pieces), with 200 awkwardly named files."""
    s3_port, api_port = free_port(), free_port()
    env = client_env(
        S3TORRENT_S3_PORT=str(s3_port),
        S3TORRENT_API_PORT=str(api_port),
        S3TORRENT_FANOUT_PART_BYTES=str(128 * 1024),
        S3TORRENT_PIECE_LENGTH=str(16 * 1024),
    )
    process = ServeProcess(["--bucket", COLLECTION_BUCKET], env)
    seconds = process.wait_ready()
    running = Stack(process, f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{api_port}", seconds)
    s3 = running.s3()
    # Off: the members' own torrents would only add work beside the collection's.
    s3.put_bucket_notification_configuration(Bucket=COLLECTION_BUCKET, NotificationConfiguration={})
    rng = random.Random(200)
    for index in range(200):
        size = rng.choice([0, 1, 16383, 16384, 16385, rng.randrange(1, 100_000)])
        key = f"{PREFIX}d{index % 7}/f {index:03} +%.bin"
        s3.put_object(Bucket=COLLECTION_BUCKET, Key=key, Body=rng.randbytes(size))
    yield running
    code = process.stop(signal.SIGTERM)
    assert code == 0, f"s3torrent serve exited {code}:\n{process.output}"


@pytest.mark.parametrize("version", ["1", "2", "hybrid"])
def test_a_200_file_collection_in_parts_is_the_single_pass_torrent(
    collection_stack: Stack, version: str
) -> None:
    stack = collection_stack
    s3 = stack.s3()
    job = JobMessage(bucket=COLLECTION_BUCKET, key=PREFIX, overrides={"meta_version": version})
    queue_job(stack, job)
    torrent_key = PREFIX.rstrip("/") + ".torrent"

    def built() -> bytes | None:
        try:
            data: bytes = s3.get_object(Bucket=COLLECTION_BUCKET, Key=torrent_key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        info = decode(data)[b"info"]
        has_v1, has_v2 = b"pieces" in info, b"file tree" in info
        wanted = {"1": (True, False), "2": (False, True), "hybrid": (True, True)}[version]
        return data if (has_v1, has_v2) == wanted else None

    data = wait_for(built, BUILD_SECONDS, f"no {version} torrent of {PREFIX}")
    settings = Settings.from_mapping(
        {
            "buckets": [{"name": COLLECTION_BUCKET}],
            "endpoint_url": stack.s3_url,
            "piece_length": 16 * 1024,
            "region": "us-east-1",
        }
    )
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    single = build_service(settings, session=session).make_collection(
        CollectionRef(COLLECTION_BUCKET, PREFIX),
        overrides={"meta_version": version},
        force=True,
        write=False,
    )
    assert data == single.torrent_bytes
    status = signed_get(f"{stack.api_url}/torrents/{COLLECTION_BUCKET}/{quote(PREFIX)}")
    info = json.loads(status.body)
    assert info["status"] == "fresh" and info["parts"] >= 16, info
    assert info["parts_done"] == info["parts"] and info["files"] == 200
