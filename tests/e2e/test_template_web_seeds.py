"""The web seed as the default template wires it, downloaded through by real clients.

A bare `cdk deploy` gives every function `S3TORRENT_WEB_SEEDS` = `https://<distribution>/{folder}`,
the distribution's one origin being the bucket the stack creates, with no origin path: so
`https://<distribution>/<key>` is `<bucket>/<key>`. Here that exact template comes from the
session synth, and only its scheme and domain are replaced by the local stack's embedded S3
endpoint and the bucket's path-style URL (`http://127.0.0.1:PORT/BUCKET/`), which the local
stack makes publicly readable with a bucket policy, as the distribution's OAC policy makes the
objects readable through CloudFront. A second `s3torrent serve` runs with the template's
torrent settings; an upload gets its torrent through S3 events, and aria2c and libtorrent
download the object through that web seed alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import libtorrent as lt
import pytest

from tests.support.downloads import aria2c, libtorrent_download
from tests.support.lambda_runtime import functions, resolve
from tests.support.ports import free_port
from tests.support.stack import ServeProcess, Stack, client_env, http, wait_for_torrent
from tests.support.synth import logical_id, one, session_synth

pytestmark = [pytest.mark.e2e, pytest.mark.infra]

STACK = "S3TorrentDefault"
BUCKET = "s3torrent-web-seed"  # stands in for the bucket CloudFormation names
DISTRIBUTION = "distribution.invalid"  # stands in for <id>.cloudfront.net while resolving
# Set by the stack from its own resources (the local stack has its own), not torrent settings.
STACK_OWNED = {
    "S3TORRENT_BUCKETS",
    "S3TORRENT_REGION",
    "S3TORRENT_QUEUE_URL",
    "S3TORRENT_BACKFILL_QUEUE_URL",
    "S3TORRENT_BACKFILL_TABLE",
    "S3TORRENT_JOB_MAX_RECEIVES",
}


@pytest.fixture(scope="module")
def template_settings() -> dict[str, str]:
    """The functions' S3TORRENT_* settings of the default template (the same for all three),
    references resolved, the distribution's domain standing in as DISTRIBUTION."""
    synth = session_synth()
    template = synth.default
    distribution_id, distribution = one(template, "AWS::CloudFront::Distribution", "WebSeed")
    bucket_id = logical_id(template, "AWS::S3::Bucket", "S3TorrentBucket")
    # The distribution serves the created bucket from its root: host/<key> is bucket/<key>.
    (origin,) = distribution["Properties"]["DistributionConfig"]["Origins"]
    assert origin["DomainName"] == {"Fn::GetAtt": [bucket_id, "RegionalDomainName"]}, origin
    assert origin.get("OriginPath", "") == "", origin
    fakes = {f"{distribution_id}.DomainName": DISTRIBUTION, bucket_id: BUCKET}
    seen = []
    for function in functions(template, synth.outdir, STACK).values():
        seen.append(
            {
                name: resolve(value, fakes)
                for name, value in function.environment.items()
                if name.startswith("S3TORRENT_") and name not in STACK_OWNED
            }
        )
    assert len(seen) == 3 and all(env == seen[0] for env in seen), seen
    return seen[0]


def local_web_seeds(template_seeds: str, s3_url: str) -> str:
    """The template's web seeds with only `https://<distribution>/` replaced by the bucket's
    URL on the local endpoint (path-style)."""
    seeds = json.loads(template_seeds)
    origin = f"https://{DISTRIBUTION}/"
    assert seeds and all(seed.startswith(origin) for seed in seeds), seeds
    return json.dumps([f"{s3_url}/{BUCKET}/" + seed.removeprefix(origin) for seed in seeds])


@pytest.fixture(scope="module")
def seeded_stack(template_settings: dict[str, str]) -> Iterator[Stack]:
    """`s3torrent serve` with the template's torrent settings and its web seed made local."""
    s3_port, api_port = free_port(), free_port()
    s3_url = f"http://127.0.0.1:{s3_port}"
    settings = {
        **template_settings,
        "S3TORRENT_WEB_SEEDS": local_web_seeds(template_settings["S3TORRENT_WEB_SEEDS"], s3_url),
    }
    env = client_env(S3TORRENT_S3_PORT=str(s3_port), S3TORRENT_API_PORT=str(api_port), **settings)
    process = ServeProcess(["--bucket", BUCKET, "--quiet"], env)
    seconds = process.wait_ready()
    yield Stack(process, s3_url, f"http://127.0.0.1:{api_port}", seconds)
    code = process.stop()
    assert code == 0, f"s3torrent serve exited {code}:\n{process.output}"


def test_the_template_web_seed_downloads_with_aria2c_and_libtorrent(
    seeded_stack: Stack, template_settings: dict[str, str], tmp_path: Path
) -> None:
    assert template_settings["S3TORRENT_WEB_SEEDS"] == f'["https://{DISTRIBUTION}/{{folder}}"]'
    data = os.urandom(2_700_001)  # a short last piece
    key = "videos/clip.bin"  # as docs/first-deployment.md uploads it
    s3 = seeded_stack.s3()
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    wait_for_torrent(s3, BUCKET, key)
    # As anyone fetches it from the distribution: `curl https://$SEED/videos/clip.bin.torrent`.
    answer = http("GET", f"{seeded_stack.s3_url}/{BUCKET}/{quote(key)}.torrent")
    assert answer.status == 200, answer.body
    metainfo: Any = lt.bdecode(answer.body)
    seeds = metainfo[b"url-list"]
    assert (seeds if isinstance(seeds, list) else [seeds]) == [
        f"{seeded_stack.s3_url}/{BUCKET}/videos/".encode()
    ]
    assert b"announce" not in metainfo and b"announce-list" not in metainfo  # web seed only
    torrent = tmp_path / "clip.bin.torrent"
    torrent.write_bytes(answer.body)

    aria2c(torrent, tmp_path / "aria2")
    assert (tmp_path / "aria2" / "clip.bin").read_bytes() == data

    libtorrent_download(answer.body, tmp_path / "libtorrent")
    assert (tmp_path / "libtorrent" / "clip.bin").read_bytes() == data
