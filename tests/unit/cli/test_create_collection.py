"""`s3torrent create s3://BUCKET/PREFIX/` against moto in-process: a collection, in JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from s3torrent import cli
from s3torrent.torrent import read_collection_torrent as read_collection
from tests.support.moto import BUCKET

FILES = {"pub/set 1/a+b.bin": b"a" * 20_000, "pub/set 1/dir/ü.txt": b"u" * 10, "pub/set 1/0": b""}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def filled(s3: Any) -> Any:
    for key, data in FILES.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    return s3


def test_a_trailing_slash_makes_a_v1_collection(filled: Any, capsys: Any) -> None:
    code, out, err = run(capsys, "create", f"s3://{BUCKET}/pub/set 1/", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["kind"] == "collection"
    assert report["files"] == 3
    assert report["meta_version"] == "1"
    assert report["torrent_key"] == "pub/set 1.torrent"
    assert report["bytes_read"] == 20_010
    assert report["name"] == "set 1"
    assert report["web_seeds"] == [f"https://{BUCKET}.s3.us-east-1.amazonaws.com/pub/"]
    stored = filled.get_object(Bucket=BUCKET, Key="pub/set 1.torrent")["Body"].read()
    assert read_collection(stored).info_hash_v1 == report["info_hash_v1"]
    # Again: fresh from the listing, nothing read.
    code, out, _ = run(capsys, "create", f"s3://{BUCKET}/pub/set 1/", "--json")
    assert code == 0 and json.loads(out)["outcome"] == "fresh"
    assert json.loads(out)["bytes_read"] == 0


def test_an_object_reports_its_kind_too(filled: Any, capsys: Any) -> None:
    code, out, err = run(capsys, "create", f"s3://{BUCKET}/pub/set 1/a+b.bin", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["kind"], report["files"], report["meta_version"]) == ("object", 1, "hybrid")


def test_an_empty_prefix_fails_with_one_line(s3: Any, capsys: Any) -> None:
    code, out, err = run(capsys, "create", f"s3://{BUCKET}/none/")
    assert code != 0 and not out
    assert "no object under this prefix" in err and err.count("\n") == 1


def test_output_file_and_a_v2_collection(filled: Any, capsys: Any, tmp_path: Any) -> None:
    target = tmp_path / "set.torrent"
    code, _, err = run(capsys, "create", f"s3://{BUCKET}/pub/set 1/", "-o", str(target))
    assert code == 0, err
    assert read_collection(target.read_bytes()).name == "set 1"
    assert "Contents" not in filled.list_objects_v2(Bucket=BUCKET, Prefix="pub/set 1.torrent")
    code, out, err = run(
        capsys, "create", f"s3://{BUCKET}/pub/set 1/", "--meta-version", "2", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert (report["meta_version"], report["info_hash_v1"]) == ("2", None)
    assert report["info_hash_v2"] and report["files"] == 3
