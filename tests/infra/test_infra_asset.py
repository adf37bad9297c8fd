"""The Lambda asset: exactly the runtime package, whatever else lies in lambda_src/.

What ships is an allow-list (infra/functions.py, ASSET_ALLOW_LIST). These tests read the
folders the session synth staged into cdk.out for each function, and say what should be there
without asking the allow-list: the repository's own files (git), and the modules the handlers
named in the template import.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.synth import ROOT, Synth, resources, session_synth

pytestmark = pytest.mark.infra

LAMBDA_SRC = ROOT / "lambda_src"
PACKAGE = "s3torrent"
# Top-level packages Lambda provides besides the standard library: the runtime's boto3 and
# botocore, and the Powertools layer (which brings pydantic).
LAMBDA_PROVIDED = frozenset({"boto3", "botocore", "aws_lambda_powertools", "pydantic"})


@pytest.fixture(scope="module")
def synth() -> Synth:
    return session_synth()


def git_files(*options: str) -> set[str]:
    """`git ls-files` under lambda_src/s3torrent, as lambda_src/-relative POSIX paths."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", *options, "--", PACKAGE],
            cwd=LAMBDA_SRC,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git checkout: {error}")
    return {name for name in listing.decode().split("\0") if name}


def is_cli(path: str) -> bool:
    return path == f"{PACKAGE}/cli.py" or path.startswith(f"{PACKAGE}/cli/")


def source_files() -> set[str]:
    """The package as the repository holds it: tracked files still on disk (of any kind, so a
    tracked file the allow-list drops is noticed), and new modules not added yet (work in
    progress in this tree ships too)."""
    tracked = git_files("--cached")
    new = {name for name in git_files("--others", "--exclude-standard") if name.endswith(".py")}
    return {name for name in tracked | new if (LAMBDA_SRC / name).is_file()}


def runtime_files() -> set[str]:
    """What the asset must hold: the package's source files minus the CLI (local only)."""
    return {name for name in source_files() if not is_cli(name)}


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


def function_assets(outdir: Path) -> dict[str, Path]:
    """`Stack/FunctionLogicalId` -> the staged folder of its code, for every s3torrent function."""
    found: dict[str, Path] = {}
    for manifest in sorted(outdir.glob("*.assets.json")):
        stack = manifest.name.removesuffix(".assets.json")
        files = json.loads(manifest.read_text())["files"]
        template = json.loads((outdir / f"{stack}.template.json").read_text())
        for lid, function in resources(template, "AWS::Lambda::Function").items():
            code = function["Properties"]["Code"]
            if "ZipFile" in code:  # CDK's own inline bucket-notifications handler
                continue
            source = files[code["S3Key"].removesuffix(".zip")]["source"]
            assert source["packaging"] == "zip", (stack, lid)
            found[f"{stack}/{lid}"] = outdir / source["path"]
    return found


def test_every_function_ships_exactly_the_runtime_package(synth: Synth) -> None:
    assets = function_assets(synth.outdir)
    assert len(assets) == 9, sorted(assets)  # api, worker, backfill in each of the three stacks
    assert len(set(assets.values())) == 1  # one asset, shared
    shipped, expected = files_under(next(iter(assets.values()))), runtime_files()
    assert (sorted(shipped - expected), sorted(expected - shipped)) == ([], []), "(extra, missing)"


# --- what the handlers import -----------------------------------------------------------------


def module_file(root: Path, module: str) -> Path | None:
    """The file `import module` runs, inside `root` (a module, or a package's __init__)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.parent / f"{base.name}.py", base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, module: str) -> Iterator[tuple[str, bool]]:
    """(absolute module name, must exist) for each import in the file, at any depth, except
    under `if TYPE_CHECKING:`; `from a import b` gives `a` (required) and `a.b` (a submodule or
    just a name)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    todo: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and is_type_checking(node):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, True
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            yield base, True
            for alias in node.names:
                yield f"{base}.{alias.name}", False


def closure(root: Path, entries: set[str]) -> tuple[set[str], set[str], set[str]]:
    """From the entry modules: (files run, s3torrent modules missing, other top-level imports)."""
    ran: set[str] = set()
    missing: set[str] = set()
    others: set[str] = set()
    todo = [(entry, True) for entry in entries]
    seen: set[str] = set()
    while todo:
        name, required = todo.pop()
        parts = name.split(".")
        if parts[0] != PACKAGE:
            if required:
                others.add(parts[0])
            continue
        # `import a.b.c` runs a/__init__.py and a/b/__init__.py first.
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            path = module_file(root, prefix)
            if path is None:
                if required or depth < len(parts):
                    missing.add(prefix)
                break
            if prefix in seen:
                continue
            seen.add(prefix)
            ran.add(path.relative_to(root).as_posix())
            todo.extend(imports_of(path, prefix))
    return ran, missing, others


def test_the_asset_is_what_the_handlers_import_and_nothing_else(synth: Synth) -> None:
    handlers: set[str] = set()
    for manifest in synth.outdir.glob("*.template.json"):
        template = json.loads(manifest.read_text())
        for function in resources(template, "AWS::Lambda::Function").values():
            if "Handler" in function["Properties"] and "S3Key" in function["Properties"]["Code"]:
                handlers.add(function["Properties"]["Handler"].rpartition(".")[0])
    assert handlers == {f"{PACKAGE}.handlers.{name}" for name in ("api", "worker", "backfill")}
    (folder,) = set(function_assets(synth.outdir).values())
    ran, missing, others = closure(folder, handlers)
    assert sorted(missing) == [], "imported by a handler, not in the asset"
    assert sorted(files_under(folder) - ran) == [], "shipped, never imported by a handler"
    assert sorted(others - sys.stdlib_module_names - LAMBDA_PROVIDED) == [], "Lambda lacks these"


# --- strays never ship ------------------------------------------------------------------------


def test_stray_files_in_lambda_src_change_nothing(tmp_path: Path) -> None:
    import aws_cdk as cdk
    from infra.functions import lambda_code

    def copy_of_the_sources(root: Path) -> Path:
        for name in source_files():  # the CLI included: the allow-list must drop it
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(LAMBDA_SRC / name, root / name)
        return root

    def stage(root: Path) -> tuple[str, set[str]]:
        app = cdk.App(outdir=str(root.parent / f"{root.name}.out"))
        code = lambda_code(str(root)).bind(cdk.Stack(app, "Asset"))
        assert code.s3_location is not None
        asset_hash = code.s3_location.object_key.removesuffix(".zip")
        return asset_hash, files_under(Path(app.outdir) / f"asset.{asset_hash}")

    clean = copy_of_the_sources(tmp_path / "clean")
    strayed = copy_of_the_sources(tmp_path / "strayed")
    strays = {
        ".env": "AWS_SECRET_ACCESS_KEY=not-for-lambda\n",
        "setup.py": "",
        f"{PACKAGE}.egg-info/PKG-INFO": "Metadata-Version: 2.4\n",
        f"{PACKAGE}/x.py~": "# an editor backup\n",
        f"{PACKAGE}/settings.py.orig": "# a merge leftover\n",
        f"{PACKAGE}/.env": "TOKEN=x\n",
        f"{PACKAGE}/__pycache__/settings.cpython-314.pyc": "",
        f"{PACKAGE}/torrent/__pycache__/bencode.cpython-311.pyc": "",
        f"{PACKAGE}/.mypy_cache/3.11/cache.db": "",
    }
    for name, content in strays.items():
        (strayed / name).parent.mkdir(parents=True, exist_ok=True)
        (strayed / name).write_text(content)
    # Emacs locks a file it edits with a dangling symlink named .#file.
    os.symlink("root@host.4242:1764000000", strayed / PACKAGE / "handlers" / ".#worker.py")

    clean_hash, clean_files = stage(clean)
    strayed_hash, strayed_files = stage(strayed)
    expected = runtime_files()
    assert (sorted(clean_files - expected), sorted(expected - clean_files)) == ([], [])
    assert (sorted(strayed_files - clean_files), sorted(clean_files - strayed_files)) == ([], [])
    assert strayed_hash == clean_hash  # same asset, so no needless Lambda update either
