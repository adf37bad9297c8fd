"""Every package under lambda_src/ and local/ is in pyproject.toml's list, so a wheel has it.

The editable install and the Lambda asset take folders as they are; a wheel takes only the
packages listed. A package missing from the list would work everywhere but in a wheel.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(base).parts)
        for base in (ROOT / "lambda_src", ROOT / "local")
        for init in base.rglob("__init__.py")
        if ".egg-info" not in str(init)
    }
    assert found <= listed, sorted(found - listed)
