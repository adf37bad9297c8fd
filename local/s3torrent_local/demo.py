"""The demo bucket's sample object, and the few lines `s3torrent serve` prints once it is ready."""

from __future__ import annotations

import json
import random
import shlex
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from s3torrent_local.lambda_context import REGION
from s3torrent_local.stack import FAKE_CREDENTIALS

SAMPLE_KEY = "sample.bin"
SAMPLE_SIZE = 4 * 1024 * 1024
DOWNLOAD_DIR = "s3torrent-download"


class StartupError(Exception):
    """The stack came up but could not show it works (the sample got no torrent)."""


@dataclass(frozen=True)
class Sample:
    """The seeded object and what the service made of it."""

    bucket: str
    key: str
    size: int
    status: dict[str, Any]  # GET /torrents/{bucket}/{key}
    collection: dict[str, Any] | None = None  # GET /torrents/{bucket}/{prefix}/, when seeded

    @property
    def magnet(self) -> str | None:
        value = self.status.get("magnet")
        return value if isinstance(value, str) else None


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def sample_bytes() -> bytes:
    """The sample's content: the same pseudo-random bytes every run, so its torrent is too."""
    return random.Random(6881).randbytes(SAMPLE_SIZE)


# A small collection next to the sample, with the names that trip clients up: a space, `+`,
# non-ASCII, a sub-folder and a 0-byte file (docs/collections.md).
COLLECTION_PREFIX = "collections/Sommer 2024+ü/"
COLLECTION_FILES = {
    "a b.txt": b"a file with a space in its name\n" * 2000,
    "c+d.bin": bytes(range(256)) * 400,
    "ü/ñ é.txt": b"non-ASCII all the way down\n" * 300,
    "empty.txt": b"",
}


def seed_collection(s3: Any, api_url: str, bucket: str) -> dict[str, Any]:
    """Upload the demo collection, have the API make its torrent (`GET /{bucket}/{prefix}/
    ?torrent`, as `aws s3api get-object-torrent --key PREFIX/` does) and return its status."""
    for path, data in COLLECTION_FILES.items():
        s3.put_object(Bucket=bucket, Key=COLLECTION_PREFIX + path, Body=data, ACL="public-read")
    base = f"{api_url}/{quote(bucket)}/{quote(COLLECTION_PREFIX)}"
    status_url = f"{api_url}/torrents/{quote(bucket)}/{quote(COLLECTION_PREFIX)}"
    try:
        with urllib.request.urlopen(base + "?torrent", timeout=30) as response:
            response.read()
        with urllib.request.urlopen(status_url, timeout=30) as response:
            status: dict[str, Any] = json.loads(response.read())
    except (urllib.error.URLError, ValueError) as error:
        raise StartupError(f"the demo collection's torrent: {error}") from error
    return status


def seed_sample(s3: Any, api_url: str, bucket: str, *, timeout: float = 30.0) -> Sample:
    """Upload the sample, wait for its `.torrent` (S3 → queue → worker) and read its status."""
    s3.put_object(
        Bucket=bucket,
        Key=SAMPLE_KEY,
        Body=sample_bytes(),
        ContentType="application/octet-stream",
        ACL="public-read",
    )

    def has_torrent() -> bool:
        try:
            s3.head_object(Bucket=bucket, Key=SAMPLE_KEY + ".torrent")
        except ClientError:
            return False
        return True

    if not wait_until(has_torrent, timeout):
        raise StartupError(
            f"s3://{bucket}/{SAMPLE_KEY}.torrent did not appear within {timeout:.0f} s "
            "(the worker's log above says why)"
        )
    url = f"{api_url}/torrents/{quote(bucket)}/{quote(SAMPLE_KEY)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status = json.loads(response.read())
    except (urllib.error.URLError, ValueError) as error:
        raise StartupError(f"GET {url} failed: {error}") from error
    collection = seed_collection(s3, api_url, bucket)
    return Sample(
        bucket=bucket, key=SAMPLE_KEY, size=SAMPLE_SIZE, status=status, collection=collection
    )


def aws_cli() -> str:
    """How to call the AWS CLI from any shell: `aws` if that is ours, else this venv's."""
    ours = Path(sys.executable).parent / "aws"
    found = shutil.which("aws")
    if found and (not ours.exists() or Path(found).resolve() == ours.resolve()):
        return "aws"
    return str(ours) if ours.exists() else "aws"


def try_commands(s3_url: str, api_url: str, sample: Sample) -> list[str]:
    """Shell lines that work when pasted in order into another terminal (no comments: zsh)."""
    aws = aws_cli()
    bucket, key = shlex.quote(sample.bucket), shlex.quote(sample.key)
    torrent_file = shlex.quote(Path(sample.key).name + ".torrent")
    credentials = " ".join(f"{name}={value}" for name, value in FAKE_CREDENTIALS.items())
    return [
        f"export {credentials} AWS_DEFAULT_REGION={REGION}",
        "head -c 3000000 /dev/urandom > hello.bin",
        f"{aws} --endpoint-url {s3_url} s3 cp hello.bin s3://{bucket}/",
        f"{aws} --endpoint-url {s3_url} s3 ls s3://{bucket}/",
        f"{aws} s3api get-object-torrent --endpoint-url {api_url} "
        f"--bucket {bucket} --key {key} {torrent_file}",
        "aria2c --seed-time=0 --enable-dht=false --bt-enable-lpd=false "
        f"--enable-peer-exchange=false --dir={DOWNLOAD_DIR} {torrent_file}",
        f"curl -s {api_url}/torrents/{quote(sample.bucket)}/{quote(sample.key)}",
    ]


def banner(s3_url: str, api_url: str, buckets: list[str], sample: Sample, seconds: float) -> str:
    """What `s3torrent serve` prints when it is ready: where things are, and what to try."""
    mib = sample.size / (1024 * 1024)
    lines = [
        f"ready in {seconds:.1f} s: s3torrent's local stack (Ctrl-C stops it)",
        f"  S3 endpoint  {s3_url}  (buckets with torrents: {', '.join(buckets)})",
        f"  API          {api_url}  (routes: {api_url}/openapi.json)",
        f"  sample       s3://{sample.bucket}/{sample.key} ({mib:g} MiB)"
        f" -> s3://{sample.bucket}/{sample.key}.torrent",
    ]
    if sample.magnet:
        lines.append(f"  magnet       {sample.magnet}")
    if sample.collection:
        lines += collection_lines(api_url, sample.bucket, sample.collection)
    bucket = quote(sample.bucket, safe="")
    lines += [
        f"  page         {api_url}/browse/{bucket}/  (folders, objects, .torrent and magnet links)",
        f"  feed         {api_url}/feeds/{bucket}  (RSS 2.0 of the newest torrents; ?format=json)",
    ]
    lines.append(
        "Try it in another terminal: upload a file and its .torrent appears next to it; "
        "fetch the sample's torrent and download the sample through its web seed:"
    )
    lines += [f"  {command}" for command in try_commands(s3_url, api_url, sample)]
    return "\n".join(lines)


def collection_lines(api_url: str, bucket: str, status: dict[str, Any]) -> list[str]:
    """The banner's lines about the demo collection: where it is and how to fetch it."""
    name = COLLECTION_PREFIX.rstrip("/").rsplit("/", 1)[-1]
    return [
        f"  collection   s3://{bucket}/{COLLECTION_PREFIX} ({status.get('files')} files,"
        f" v{status.get('meta_version')}) -> s3://{bucket}/{status.get('torrent_key')}",
        f"  magnet       {status.get('magnet')}",
        f"  get it       {aws_cli()} s3api get-object-torrent --endpoint-url {api_url}"
        f" --bucket {shlex.quote(bucket)} --key {shlex.quote(COLLECTION_PREFIX)}"
        f" {shlex.quote(name + '.torrent')}",
    ]
