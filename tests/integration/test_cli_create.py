"""`s3torrent create` and `s3torrent show`, run as the installed command against moto's server.

Every torrent the CLI writes is loaded by libtorrent, which must report the info hashes
`--json` printed, and those must equal the ones libtorrent computes itself from the same
bytes (`lt.create_torrent` + `set_piece_hashes`: the independent reference).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest

from tests.support.references import libtorrent_hashes as reference_hashes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning"),
]

CLI = str(Path(sys.executable).parent / "s3torrent")


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [CLI, *args], capture_output=True, input=stdin, timeout=120, env=os.environ.copy()
    )


def keys_of(s3_client: Any, bucket: str) -> list[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def loaded_hashes(data: bytes) -> tuple[str | None, str | None]:
    """The info hashes libtorrent reports for a .torrent (None where absent)."""
    hashes = lt.torrent_info(lt.bdecode(data)).info_hashes()
    return (
        str(hashes.v1) if hashes.has_v1() else None,
        str(hashes.v2) if hashes.has_v2() else None,
    )


KEYS = [
    "plain.bin",
    "dir/with space.bin",
    "ünï/cödé €.bin",
    "a+b%20c.bin",
    "100%/x+y.bin",
]


@pytest.mark.parametrize("version", ["1", "2", "hybrid"])
@pytest.mark.parametrize("key", KEYS)
def test_create_writes_the_torrent_next_to_the_object(
    s3_client: Any, bucket: str, moto_endpoint: str, key: str, version: str
) -> None:
    data = os.urandom(70_000 if version != "2" else 16_384 * 3 + 1)
    s3_client.put_object(Bucket=bucket, Key=key, Body=data)

    done = run_cli(
        "create",
        f"s3://{bucket}/{key}",
        "--endpoint-url",
        moto_endpoint,
        "--meta-version",
        version,
        "--piece-length",
        "16384",
        "--tracker",
        "udp://tracker.example:6969/announce",
        "--json",
    )

    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["torrent_key"] == key + ".torrent"
    assert report["size"] == len(data)
    assert report["piece_length"] == 16384
    assert report["source"] == "computed"
    assert report["magnet"].startswith("magnet:?xt=urn:")
    assert keys_of(s3_client, bucket) == sorted([key, key + ".torrent"])

    stored = s3_client.get_object(Bucket=bucket, Key=key + ".torrent")
    torrent = stored["Body"].read()
    assert loaded_hashes(torrent) == (report["info_hash_v1"], report["info_hash_v2"])
    name = key.rsplit("/", 1)[-1]
    v1, v2 = reference_hashes(data, name, 16384, version)
    assert (report["info_hash_v1"] or "0" * 40, report["info_hash_v2"] or "0" * 64) == (v1, v2)
    if version == "1":
        assert report["info_hash_v2"] is None
    if version == "2":
        assert report["info_hash_v1"] is None

    assert stored["ContentType"] == "application/x-bittorrent"
    assert stored["ContentDisposition"].startswith("attachment; filename=")
    if name.isascii():
        assert stored["ContentDisposition"] == f'attachment; filename="{name}.torrent"'
    else:
        assert "filename*=UTF-8''" in stored["ContentDisposition"]
    head = s3_client.head_object(Bucket=bucket, Key=key)
    meta = stored["Metadata"]
    assert meta["created-by"] == "s3torrent"
    assert meta["source-etag"] == head["ETag"]
    assert meta["size"] == str(len(data))
    assert meta["piece-length"] == "16384"
    assert meta["meta-version"] == version
    assert meta.get("info-hash-v1") == report["info_hash_v1"]
    assert meta.get("info-hash-v2") == report["info_hash_v2"]

    info = lt.torrent_info(lt.bdecode(torrent))
    assert info.name() == name
    assert [tracker.url for tracker in info.trackers()] == ["udp://tracker.example:6969/announce"]
    folder = key[: key.rfind("/") + 1]
    assert [seed["url"] for seed in info.web_seeds()] == [
        f"{moto_endpoint}/{bucket}/{_quote(folder)}"
    ]


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def test_a_second_create_is_fresh_and_identical(
    s3_client: Any, bucket: str, moto_endpoint: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key="f.bin", Body=os.urandom(40_000))
    first = run_cli("create", f"s3://{bucket}/f.bin", "--endpoint-url", moto_endpoint, "--json")
    torrent = s3_client.get_object(Bucket=bucket, Key="f.bin.torrent")["Body"].read()
    second = run_cli("create", f"s3://{bucket}/f.bin", "--endpoint-url", moto_endpoint, "--json")
    assert first.returncode == second.returncode == 0
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert (one["outcome"], two["outcome"]) == ("created", "fresh")
    assert one["magnet"] == two["magnet"]
    assert two["bytes_read"] == 0
    forced = run_cli(
        "create", f"s3://{bucket}/f.bin", "--endpoint-url", moto_endpoint, "--force", "--json"
    )
    assert json.loads(forced.stdout)["outcome"] == "created"
    assert s3_client.get_object(Bucket=bucket, Key="f.bin.torrent")["Body"].read() == torrent


def test_output_to_a_file_or_stdout_writes_nothing_to_s3(
    s3_client: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    s3_client.put_object(Bucket=bucket, Key="d/f.bin", Body=os.urandom(20_000))
    target = tmp_path / "out.torrent"
    done = run_cli(
        "create",
        f"s3://{bucket}/d/f.bin",
        "--endpoint-url",
        moto_endpoint,
        "-o",
        str(target),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["torrent_key"] is None and report["output"] == str(target)
    assert loaded_hashes(target.read_bytes()) == (report["info_hash_v1"], report["info_hash_v2"])

    piped = run_cli("create", f"s3://{bucket}/d/f.bin", "--endpoint-url", moto_endpoint, "-o", "-")
    assert piped.returncode == 0
    assert piped.stdout == target.read_bytes()
    assert keys_of(s3_client, bucket) == ["d/f.bin"]


def test_human_output_names_what_was_written(
    s3_client: Any, bucket: str, moto_endpoint: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key="f.bin", Body=b"hello")
    done = run_cli("create", f"s3://{bucket}/f.bin", "--endpoint-url", moto_endpoint)
    text = done.stdout.decode()
    assert done.returncode == 0
    assert f"wrote: s3://{bucket}/f.bin.torrent (computed)" in text
    assert "info hash v1" in text and "magnet" in text
    assert done.stderr == b""  # no progress bar when stderr is not a terminal


@pytest.mark.parametrize(
    ("setup", "target", "extra", "says"),
    [
        ({"empty.bin": b""}, "empty.bin", [], "0-byte"),
        ({"dir/": b""}, "dir/", [], "directory marker"),
        ({"x.bin.torrent": b"d4:spami1ee"}, "x.bin.torrent", [], ".torrent"),
        ({}, "missing.bin", [], "no such object"),
        ({"f.bin": b"abc"}, "f.bin", ["--piece-length", "1000"], "power of two"),
        ({"f.bin": b"abc"}, "f.bin", ["--piece-length", str(3 * 16384)], "power of two"),
        ({"f.bin": b"abc"}, "f.bin", ["--piece-length", "8192"], "power of two"),
        ({"f.bin": b"abc"}, "f.bin", ["--web-seed", "ftp://nope/"], "web seed"),
        ({"f.bin": b"abc"}, "f.bin", ["--source", "native"], "torrent"),
    ],
)
def test_bad_input_fails_with_one_line_and_writes_nothing(
    s3_client: Any,
    bucket: str,
    moto_endpoint: str,
    setup: dict[str, bytes],
    target: str,
    extra: list[str],
    says: str,
) -> None:
    for key, body in setup.items():
        s3_client.put_object(Bucket=bucket, Key=key, Body=body)
    before = keys_of(s3_client, bucket)

    done = run_cli("create", f"s3://{bucket}/{target}", "--endpoint-url", moto_endpoint, *extra)

    assert done.returncode != 0
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("s3torrent: error: ")
    assert says in lines[0]
    assert keys_of(s3_client, bucket) == before


def test_missing_bucket_and_bad_uri(moto_endpoint: str) -> None:
    for uri, says in (
        ("s3://no-such-bucket-here/k", "does not exist"),
        ("s3://only-a-bucket", "no key"),
        ("http://x/y", "not an s3:// URI"),
    ):
        done = run_cli("create", uri, "--endpoint-url", moto_endpoint)
        lines = done.stderr.decode().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and says in lines[0], lines


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class _HtmlEverywhere(http.server.BaseHTTPRequestHandler):
    """Answers every request with 200 and a web page (a captive portal, a wrong port)."""

    def _page(self) -> None:
        body = b"<html><body>Welcome</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = _page

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(params=[_Handler, _HtmlEverywhere], ids=["file-server", "html-everywhere"])
def not_s3(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    handler = request.param
    if handler is _Handler:
        (tmp_path / "bkt").mkdir()
        (tmp_path / "bkt" / "present.bin").write_bytes(b"a file on a web server")

        def make(*args: Any) -> http.server.BaseHTTPRequestHandler:
            return _Handler(*args, directory=str(tmp_path))

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("key", ["present.bin", "missing.bin"])
def test_an_endpoint_that_is_not_s3_is_a_clear_error(not_s3: str, key: str) -> None:
    done = run_cli("create", f"s3://bkt/{key}", "--endpoint-url", not_s3, "--json")
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 1
    assert done.stdout == b""
    assert len(lines) == 1, lines
    assert "not S3" in lines[0] or "does not answer like S3" in lines[0], lines[0]


def test_show_describes_a_torrent(
    s3_client: Any, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    s3_client.put_object(Bucket=bucket, Key="dir/show me.bin", Body=os.urandom(50_000))
    made = json.loads(
        run_cli(
            "create",
            f"s3://{bucket}/dir/show me.bin",
            "--endpoint-url",
            moto_endpoint,
            "--private",
            "--comment",
            "hi",
            "--web-seed",
            "https://cdn.example/{key}",
            "--json",
        ).stdout
    )
    path = tmp_path / "t.torrent"
    path.write_bytes(
        s3_client.get_object(Bucket=bucket, Key="dir/show me.bin.torrent")["Body"].read()
    )

    shown = run_cli("show", str(path), "--json")
    assert shown.returncode == 0
    report = json.loads(shown.stdout)
    for field in ("name", "size", "piece_length", "info_hash_v1", "info_hash_v2", "magnet"):
        assert report[field] == made[field]
    assert report["pieces"] == -(-50_000 // report["piece_length"])
    assert report["meta_version"] == "hybrid"
    assert report["private"] is True and report["comment"] == "hi"
    assert report["web_seeds"] == ["https://cdn.example/dir/show%20me.bin"]
    assert report["trackers"] == []

    human = run_cli("show", str(path)).stdout.decode()
    assert "show me.bin" in human and made["info_hash_v2"] in human
    piped = run_cli("show", "-", "--json", stdin=path.read_bytes())
    assert json.loads(piped.stdout) == report

    for bad, says in (
        (tmp_path / "nope.torrent", "cannot read"),
        (tmp_path / "junk", "not a torrent"),
    ):
        if bad.name == "junk":
            bad.write_bytes(b"<html>")
        done = run_cli("show", str(bad))
        lines = done.stderr.decode().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and says in lines[0], lines
