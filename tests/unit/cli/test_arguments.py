"""The CLI's parsing, output and dispatch, in-process (moto's mock_aws where S3 is needed)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

from s3torrent import cli
from s3torrent.torrent import MetaVersion, TorrentOptions, build_torrent, hash_bytes
from tests.support.moto import BUCKET


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://b/k", ("b", "k")),
        ("s3://b/dir/a b+c%20.bin", ("b", "dir/a b+c%20.bin")),  # taken literally
        ("s3://b/dir/", ("b", "dir/")),
        ("s3://b", ("b", "")),
    ],
)
def test_parse_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert cli.parse_s3_uri(uri, key_required=False) == expected


@pytest.mark.parametrize("uri", ["b/k", "s3:/b/k", "s3:///k", "https://b.s3.amazonaws.com/k"])
def test_parse_s3_uri_refuses_what_is_not_one(uri: str) -> None:
    with pytest.raises(cli.CliError):
        cli.parse_s3_uri(uri, key_required=True)


def test_key_is_required_for_create() -> None:
    with pytest.raises(cli.CliError, match="no key"):
        cli.parse_s3_uri("s3://b", key_required=True)


@pytest.mark.parametrize(
    ("text", "count"),
    [("16384", 16384), ("256K", 262144), ("256KiB", 262144), ("4M", 4 << 20), ("1g", 1 << 30)],
)
def test_byte_counts(text: str, count: int) -> None:
    assert cli._byte_count(text) == count


def test_bad_byte_count_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["create", "s3://b/k", "--piece-length", "lots"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "s3torrent create: error: argument --piece-length: not a byte count: 'lots' (see --help)"
    ]


def test_progress_bar_draws_rate_and_eta_then_clears() -> None:
    stream = FakeTerminal()
    bar = cli.ProgressBar(stream, "f.bin")
    bar.update(50, 100)
    bar.update(100, 100)
    bar.close()
    text = stream.getvalue()
    assert "f.bin [" in text and " 50%" in text and "100%" in text and "ETA" in text
    assert "/s" in text
    assert text.endswith("\r\x1b[K")


def test_human_bytes() -> None:
    assert cli.human_bytes(5) == "5 B"
    assert cli.human_bytes(1536) == "1.5 KiB"
    assert cli.human_bytes(3 * 1024**3) == "3.0 GiB"


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, *, tty: bool) -> tuple[int, str, str]:
    out = io.StringIO()
    err: io.StringIO = FakeTerminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def test_create_shows_progress_on_a_terminal_only(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.put_object(Bucket=BUCKET, Key="f.bin", Body=b"x" * 300_000)
    code, out, err = run(["create", f"s3://{BUCKET}/f.bin"], monkeypatch, tty=True)
    assert code == 0
    assert "100%" in err and "ETA" in err
    assert "wrote: s3://bkt/f.bin.torrent" in out

    code, out, err = run(
        ["create", f"s3://{BUCKET}/f.bin", "--force", "--json"], monkeypatch, tty=True
    )
    assert code == 0 and err == ""
    assert json.loads(out)["outcome"] == "created"


def test_create_json_keys(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.put_object(Bucket=BUCKET, Key="d/f.bin", Body=b"abc")
    code, out, _ = run(
        ["create", f"s3://{BUCKET}/d/f.bin", "--meta-version", "1", "--json"],
        monkeypatch,
        tty=False,
    )
    report = json.loads(out)
    assert code == 0
    assert {
        "torrent_key",
        "size",
        "piece_length",
        "info_hash_v1",
        "info_hash_v2",
        "magnet",
        "source",
    } <= set(report)
    assert report["info_hash_v2"] is None and len(report["info_hash_v1"]) == 40
    assert report["web_seeds"] == [f"https://{BUCKET}.s3.us-east-1.amazonaws.com/d/"]


def test_web_seed_flags(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.put_object(Bucket=BUCKET, Key="d/f.bin", Body=b"abc")
    argv = ["create", f"s3://{BUCKET}/d/f.bin", "--json", "--force"]
    _, out, _ = run([*argv, "--no-web-seeds"], monkeypatch, tty=False)
    assert json.loads(out)["web_seeds"] == []
    _, out, _ = run(
        [*argv, "--web-seed", "https://cdn.example/{key}", "--web-seed", "https://m.example/"],
        monkeypatch,
        tty=False,
    )
    assert json.loads(out)["web_seeds"] == ["https://cdn.example/d/f.bin", "https://m.example/"]


def test_json_and_stdout_output_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run(["create", "s3://b/k", "-o", "-", "--json"], monkeypatch, tty=False)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "s3torrent: error: --json and --output - both want stdout: pick one"
    ]


def test_invalid_bucket_name_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(["create", "s3://Bad_Bucket!/k"], monkeypatch, tty=False)
    assert code == 1
    assert err.splitlines() == ["s3torrent: error: invalid bucket name: 'Bad_Bucket!'"]


def test_serve_is_dispatched_to_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("s3torrent_local.serve")
    fake.main = lambda argv: seen.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "s3torrent_local.serve", fake)
    assert cli.main(["serve", "--port", "9"]) == 7
    assert seen == [["--port", "9"]]


def test_the_cli_module_does_not_import_local_tooling() -> None:
    code = (
        "import sys, s3torrent.cli, s3torrent.service, s3torrent.wiring;"
        "assert not [m for m in sys.modules if m.startswith('s3torrent_local')]"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# What `s3torrent` must not import before a command needs it: about 0.3 s of CPU per run,
# paid by `--help`, `show` and every typo otherwise.
HEAVY_MODULES = ("boto3", "botocore", "pydantic")


def loaded_heavy_modules(script: str) -> list[str]:
    """Runs `script` in a fresh interpreter; the HEAVY_MODULES it left in sys.modules."""
    report = (
        "\nimport json, sys"
        f"\nheavy = {{m.split('.')[0] for m in sys.modules}} & {set(HEAVY_MODULES)!r}"
        "\nprint(json.dumps(sorted(heavy)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script + report], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_no_aws_sdk_or_pydantic() -> None:
    assert loaded_heavy_modules("import s3torrent.cli") == []


def a_torrent_file(path: Path) -> Path:
    options = TorrentOptions(meta_version=MetaVersion.HYBRID, piece_length=16384)
    hashes = hash_bytes(b"x" * 40_000, 16384, MetaVersion.HYBRID)
    path.write_bytes(build_torrent("f.bin", hashes, options).data)
    return path


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["create"], ["show", "TORRENT"], ["show", "TORRENT", "--json"]],
    ids=["help", "usage-error", "show", "show-json"],
)
def test_commands_without_s3_load_no_aws_sdk_or_pydantic(tmp_path: Path, argv: list[str]) -> None:
    torrent = a_torrent_file(tmp_path / "f.torrent")
    argv = [str(torrent) if arg == "TORRENT" else arg for arg in argv]
    script = textwrap.dedent(f"""
        import contextlib, io
        from s3torrent import cli
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                assert cli.main({argv!r}) == 0
            except SystemExit:  # argparse's way out of --help and usage errors
                pass
        """)
    assert loaded_heavy_modules(script) == []


def test_a_corrupt_torrent_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = a_torrent_file(tmp_path / "f.torrent").read_bytes()
    (tmp_path / "cut.torrent").write_bytes(good[:-7])
    assert cli.main(["show", str(tmp_path / "cut.torrent")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("s3torrent: error: not a torrent: ")
    assert len(captured.err.splitlines()) == 1


def test_a_piece_length_not_a_power_of_two_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Checked before any request: no S3 (and no credentials) needed to be told.
    assert cli.main(["create", "s3://b/k", "--piece-length", "12345"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "power of two" in lines[0] and "12345" in lines[0], lines


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for command in ("create", "show", "backfill", "serve"):
        assert command in text
