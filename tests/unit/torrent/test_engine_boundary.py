"""The torrent engine stands alone: the standard library and its own modules, nothing else.

Checked in a fresh interpreter started without site-packages (`-S`), so an import of boto3,
pydantic or any other installed package fails outright rather than passing unnoticed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LAMBDA_SRC = Path(__file__).resolve().parents[3] / "lambda_src"

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
import s3torrent.torrent
import s3torrent.torrent.bencode, s3torrent.torrent.hashing
import s3torrent.torrent.metainfo, s3torrent.torrent.magnet, s3torrent.torrent.errors
import s3torrent.torrent.collection, s3torrent.torrent.paths, s3torrent.torrent.limits
import s3torrent.torrent.reading
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_the_engine_imports_only_the_standard_library_and_itself() -> None:
    done = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, str(LAMBDA_SRC)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    ours = {name for name in loaded if name.split(".")[0] == "s3torrent"}
    others = {name.split(".")[0] for name in loaded} - {"s3torrent"}
    assert ours, loaded
    assert all(name == "s3torrent" or name.startswith("s3torrent.torrent") for name in ours), ours
    assert others <= set(sys.stdlib_module_names), sorted(others - set(sys.stdlib_module_names))
