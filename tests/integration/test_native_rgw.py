"""The native path (GetObjectTorrent) against a real Ceph radosgw with its torrents on.

radosgw 16.2 (Debian 12) serves torrents whose piece hashes after the first are wrong
(../shared/rgw/start-rgw.sh, header). So an object of one piece (<= 512 KiB, radosgw's
`rgw torrent sha unit`) gets a right torrent, which is passed through unchanged (same info
hash); a larger one gets a wrong torrent, which `auto` must replace by a computed one and
`native` must refuse. Objects are uploaded with a single PutObject, except where the test
is about multipart (radosgw answers 400 to `?torrent` for those).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import libtorrent as lt
import pytest

from s3torrent.errors import NativeTorrentUnavailable
from s3torrent.model import ObjectRef, Outcome
from s3torrent.service import TorrentService
from s3torrent.settings import Settings
from s3torrent.torrent import read_torrent
from s3torrent.wiring import build_service
from tests.support.references import libtorrent_hashes as reference_hashes
from tests.support.rgw import ACCESS_KEY, SECRET_KEY, running_rgw

pytestmark = [
    pytest.mark.rgw,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning"),
]

RGW_PIECE = 524288  # start-rgw.sh's default `rgw torrent sha unit`
BUCKET = "native"


@pytest.fixture(scope="module")
def rgw_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throw-away radosgw for this module (about 15 s to start)."""
    with running_rgw(tmp_path_factory.mktemp("rgw")) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def rgw_session() -> Any:
    # Explicit keys: the test environment's fake session token must not reach radosgw.
    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
    )


@pytest.fixture(scope="module")
def rgw(rgw_endpoint: str, rgw_session: Any) -> Any:
    client = rgw_session.client("s3", endpoint_url=rgw_endpoint)
    client.create_bucket(Bucket=BUCKET)
    return client


def service(rgw_endpoint: str, session: Any, source: str, **values: Any) -> TorrentService:
    settings = Settings.from_mapping(
        {
            "buckets": [{"name": BUCKET}],
            "endpoint_url": rgw_endpoint,
            "torrent_source": source,
            **values,
        }
    )
    return build_service(settings, session=session)


def native_of(rgw: Any, key: str) -> bytes:
    return bytes(rgw.get_object_torrent(Bucket=BUCKET, Key=key)["Body"].read())


def sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


def test_one_piece_native_torrent_is_verified_and_passed_through(
    rgw: Any, rgw_endpoint: str, rgw_session: Any
) -> None:
    data = os.urandom(300_000)  # one radosgw piece
    rgw.put_object(Bucket=BUCKET, Key="dir/one piece.bin", Body=data)
    native = native_of(rgw, "dir/one piece.bin")
    assert read_torrent(native).v1_pieces == sha1(data)  # radosgw gets one piece right

    result = service(rgw_endpoint, rgw_session, "auto").make_torrent(
        ObjectRef(BUCKET, "dir/one piece.bin")
    )

    assert result.outcome is Outcome.CREATED
    assert result.source == "native"
    assert result.torrent_bytes == native
    stored = rgw.get_object(Bucket=BUCKET, Key="dir/one piece.bin.torrent")
    body = stored["Body"].read()
    assert body == native
    assert stored["ContentType"] == "application/x-bittorrent"
    info_hash = str(lt.torrent_info(lt.bdecode(body)).info_hashes().v1)
    assert info_hash == read_torrent(native).info_hash_v1
    assert stored["Metadata"]["info-hash-v1"] == info_hash
    assert stored["Metadata"]["torrent-source"] == "native"

    again = service(rgw_endpoint, rgw_session, "auto").make_torrent(
        ObjectRef(BUCKET, "dir/one piece.bin")
    )
    assert again.outcome is Outcome.FRESH and again.torrent_bytes == native


def test_multi_piece_native_torrent_is_detected_wrong_and_replaced(
    rgw: Any, rgw_endpoint: str, rgw_session: Any
) -> None:
    data = os.urandom(3 * RGW_PIECE + 12345)
    rgw.put_object(Bucket=BUCKET, Key="many.bin", Body=data)
    native = read_torrent(native_of(rgw, "many.bin"))
    assert native.num_pieces == 4
    # The bug this guards against, as radosgw 16.2 has it: piece 0 right, piece 1 wrong.
    assert native.v1_piece_hash(0) == sha1(data[:RGW_PIECE])
    assert native.v1_piece_hash(1) != sha1(data[RGW_PIECE : 2 * RGW_PIECE])

    with pytest.raises(NativeTorrentUnavailable, match="wrong hash"):
        service(rgw_endpoint, rgw_session, "native").make_torrent(ObjectRef(BUCKET, "many.bin"))
    assert "many.bin.torrent" not in keys(rgw)

    result = service(rgw_endpoint, rgw_session, "auto", piece_length=RGW_PIECE).make_torrent(
        ObjectRef(BUCKET, "many.bin")
    )

    assert result.outcome is Outcome.CREATED
    assert result.source == "computed"
    assert result.torrent_bytes is not None
    computed = read_torrent(result.torrent_bytes)
    assert computed.info_hash_v1 != native.info_hash_v1
    assert computed.v1_pieces == b"".join(
        sha1(data[start : start + RGW_PIECE]) for start in range(0, len(data), RGW_PIECE)
    )
    stored = rgw.get_object(Bucket=BUCKET, Key="many.bin.torrent")["Body"].read()
    assert stored == result.torrent_bytes
    assert reference_hashes(data, "many.bin", RGW_PIECE) == (
        computed.info_hash_v1,
        computed.info_hash_v2,
    )


def test_multipart_objects_get_no_native_torrent(
    rgw: Any, rgw_endpoint: str, rgw_session: Any
) -> None:
    part = os.urandom(5 * 1024 * 1024)
    upload = rgw.create_multipart_upload(Bucket=BUCKET, Key="multi.bin")["UploadId"]
    etags = [
        rgw.upload_part(
            Bucket=BUCKET, Key="multi.bin", UploadId=upload, PartNumber=number, Body=part
        )["ETag"]
        for number in (1, 2)
    ]
    rgw.complete_multipart_upload(
        Bucket=BUCKET,
        Key="multi.bin",
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"ETag": e, "PartNumber": n} for n, e in ((1, etags[0]), (2, etags[1]))]
        },
    )
    with pytest.raises(NativeTorrentUnavailable):
        service(rgw_endpoint, rgw_session, "native").make_torrent(ObjectRef(BUCKET, "multi.bin"))
    result = service(rgw_endpoint, rgw_session, "auto").make_torrent(ObjectRef(BUCKET, "multi.bin"))
    assert result.source == "computed"
    assert result.counters.bytes_read == 2 * len(part)


def test_cli_against_radosgw(rgw: Any, rgw_endpoint: str) -> None:
    import json

    rgw.put_object(Bucket=BUCKET, Key="cli/small.bin", Body=os.urandom(1000))
    rgw.put_object(Bucket=BUCKET, Key="cli/large.bin", Body=os.urandom(RGW_PIECE + 1))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    env.pop("AWS_SESSION_TOKEN", None)
    cli = str(Path(sys.executable).parent / "s3torrent")

    def create(key: str, source: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                cli,
                "create",
                f"s3://{BUCKET}/{key}",
                "--endpoint-url",
                rgw_endpoint,
                "--source",
                source,
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    small = create("cli/small.bin", "native")
    assert small.returncode == 0, small.stderr
    assert json.loads(small.stdout)["source"] == "native"
    refused = create("cli/large.bin", "native")
    assert refused.returncode == 1
    assert len(refused.stderr.splitlines()) == 1 and "wrong hash" in refused.stderr
    large = create("cli/large.bin", "auto")
    assert large.returncode == 0, large.stderr
    report = json.loads(large.stdout)
    assert report["source"] == "computed"
    body = rgw.get_object(Bucket=BUCKET, Key="cli/large.bin.torrent")["Body"].read()
    hashes = lt.torrent_info(lt.bdecode(body)).info_hashes()
    assert (str(hashes.v1), str(hashes.v2)) == (report["info_hash_v1"], report["info_hash_v2"])


def keys(rgw: Any) -> list[str]:
    return [item["Key"] for item in rgw.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
