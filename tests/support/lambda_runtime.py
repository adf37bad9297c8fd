"""Run the synthesized Lambda asset as Lambda would: a clean venv, the asset alone, Lambda's env.

- `lambda_venv()`: a venv holding exactly the pins of tests/artefact/lambda-runtime.txt (the
  runtime's boto3 and the Powertools layer), created once and cached under
  `.venv-lambda/<stamp>/`, the stamp keyed by the pins and the interpreter. The folder ignores
  itself (`.venv-lambda/.gitignore`), so no edit of the repository's .gitignore is needed.
- `functions(template, outdir)`: each s3torrent function of a synthesized stack: its asset
  folder, handler string, timeout, memory and environment (references still unresolved).
- `resolve(value, fakes)`: a CloudFormation value with `Ref`/`Fn::GetAtt`/`Fn::Join`/`Fn::Sub`
  filled from `fakes` (what the test created on moto's server in place of the stack's resources).
- `invoke(...)`: one cold invocation in a subprocess of that venv, `PYTHONPATH` = the asset;
  `environment` overrides Lambda's variables (None removes one), `check=False` returns a
  failed invocation (an init error, an exception) instead of failing the test.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PINS = ROOT / "tests" / "artefact" / "lambda-runtime.txt"
RUNNER = ROOT / "tests" / "artefact" / "lambda_runner.py"
VENVS = ROOT / ".venv-lambda"
ACCOUNT = "123456789012"
REGION = "us-east-1"

# Which Powertools release a public layer version `N` of AWSLambdaPowertoolsPythonV3-* carries.
# The authoritative answer needs AWS: the layer's Description ends with the version
# (`aws lambda get-layer-version-by-arn --arn arn:aws:lambda:us-east-1:017000801446:layer:
# AWSLambdaPowertoolsPythonV3-python314-arm64:N`), and Powertools publishes the reverse map as
# public SSM parameters `/aws/service/powertools/python/{arch}/{python3.14}/{version}` (the
# Powertools docs' "Lambda Layer" section, docs/index.md). Offline, what was found (2026-12):
#   - v3.1.0 -> 2, v3.2.0 -> 3, v3.4.0 -> 5, v3.4.1 -> 6, v3.5.0 -> 6 (Powertools PRs #5344,
#     #5426, #5785, #5869, #5952 "docs(layer): update layer version number", which say so);
#   - 36 -> 3.31.1 (a public project's pin comment next to
#     `AWSLambdaPowertoolsPythonV3-python314-arm64:36`, not Powertools' own word);
#   - 38: no source found. 3.37.0 is the newest release on PyPI (checked with
#     `pip index versions aws-lambda-powertools`) and the one the dev venv tests with, so
#     layer 38 is taken to carry 3.37.0 until someone with AWS access checks it (command above).
# A layer version missing here fails the test that compares it with cdk.json: add it, with its
# source, and the pin in lambda-runtime.txt.
LAYER_POWERTOOLS: dict[int, str] = {38: "3.37.0"}


@dataclass(frozen=True)
class Function:
    """One Lambda function of the template, as Lambda would be told to run it."""

    logical_id: str
    handler: str
    asset: Path
    timeout_s: int
    memory_mb: int
    runtime: str
    environment: dict[str, Any]  # CloudFormation values, references unresolved
    layers: list[Any]


def pins() -> list[str]:
    """The requirement lines of lambda-runtime.txt."""
    lines = (line.split("#", 1)[0].strip() for line in PINS.read_text().splitlines())
    return [line for line in lines if line]


def pinned_version(package: str) -> str:
    """The version lambda-runtime.txt pins for `package` (extras ignored)."""
    for line in pins():
        name, _, version = line.partition("==")
        if re.sub(r"\[.*\]", "", name).strip().lower() == package:
            return version.strip()
    raise AssertionError(f"{package} is not pinned in {PINS}")


def base_python() -> str:
    """The interpreter under the running venv (a venv made from a venv's python nests)."""
    return str(getattr(sys, "_base_executable", sys.executable))


def lambda_venv() -> Path:
    """The clean venv's python: created on first use (python -m venv + pip install of exactly
    the pins), then reused while the pins and the interpreter stay the same. A file lock keeps
    parallel test workers from building it twice."""
    python = base_python()
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    stamp = hashlib.sha256("\n".join([*pins(), python, version]).encode()).hexdigest()[:16]
    VENVS.mkdir(exist_ok=True)
    (VENVS / ".gitignore").write_text("*\n")
    venv = VENVS / stamp
    ready = venv / ".ready"
    with (VENVS / f"{stamp}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            started = time.monotonic()
            subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *pins()],
                check=True,
                env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"},
            )
            ready.write_text(f"{time.monotonic() - started:.1f} s to create\n")
    return venv / "bin" / "python"


# --- the template ------------------------------------------------------------------------------


def asset_folders(outdir: Path, stack: str) -> dict[str, Path]:
    """Asset hash -> staged folder, from the stack's asset manifest."""
    manifest = json.loads((outdir / f"{stack}.assets.json").read_text())
    return {key: outdir / entry["source"]["path"] for key, entry in manifest["files"].items()}


def functions(template: dict[str, Any], outdir: Path, stack: str) -> dict[str, Function]:
    """Every function whose code is the s3torrent asset, keyed by its handler module's last
    name (api, worker, backfill)."""
    folders = asset_folders(outdir, stack)
    found: dict[str, Function] = {}
    for lid, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        if "S3Key" not in props["Code"]:
            continue  # CDK's own inline handlers
        # `aws:asset:path` when the CDK CLI synthesized (it enables asset metadata); the asset
        # manifest otherwise (an App synthesized in-process, as tests.support.synth does).
        path = resource.get("Metadata", {}).get("aws:asset:path")
        asset = outdir / path if path else folders[props["Code"]["S3Key"].removesuffix(".zip")]
        found[props["Handler"].split(".")[-2]] = Function(
            logical_id=lid,
            handler=props["Handler"],
            asset=asset,
            timeout_s=int(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            runtime=props["Runtime"],
            environment=dict(props["Environment"]["Variables"]),
            layers=list(props.get("Layers", [])),
        )
    return found


def resolve(value: Any, fakes: dict[str, str]) -> str:
    """A CloudFormation value as the deployed stack would see it, resources replaced by
    `fakes` (logical id -> physical id, `LogicalId.Attr` -> attribute)."""
    pseudo = {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if "Ref" in value:
        name = value["Ref"]
        if name in pseudo:
            return pseudo[name]
        if name not in fakes:
            raise KeyError(f"no fake for Ref {name}: create it and pass it in fakes")
        return fakes[name]
    if "Fn::GetAtt" in value:
        lid, attribute = value["Fn::GetAtt"]
        return fakes[f"{lid}.{attribute}"]
    if "Fn::Join" in value:
        delimiter, items = value["Fn::Join"]
        return str(delimiter).join(resolve(item, fakes) for item in items)
    if "Fn::Sub" in value:
        names = {**pseudo, **fakes}
        return re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], value["Fn::Sub"])
    raise AssertionError(f"unexpected CloudFormation value: {value!r}")


# --- one invocation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    result: Any  # None when the invocation failed
    loaded_from: dict[str, str | None]
    logs: str
    seconds: float
    returncode: int = 0  # the interpreter's exit status: not 0 for an init error or a raise


def lambda_environment(
    function: Function, fakes: dict[str, str], endpoint: str, python: Path
) -> dict[str, str]:
    """What Lambda puts in the environment, the template's variables resolved, and moto's
    server as every AWS endpoint. Nothing of the test process's own environment leaks in."""
    name = f"s3torrent-{function.logical_id}"
    env = {name_: resolve(value, fakes) for name_, value in function.environment.items()}
    env.update(
        {
            "PATH": f"{python.parent}:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONPATH": str(function.asset),  # the asset alone (Lambda adds /opt/python)
            "LAMBDA_TASK_ROOT": str(function.asset),
            "LAMBDA_RUNTIME_DIR": str(python.parent.parent),
            "_HANDLER": function.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/12/04/[$LATEST]0123456789abcdef",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",  # logging_format=JSON in the template
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            # Active tracing: Lambda hands a trace header and the daemon's address; segments
            # go out as UDP datagrams, which nobody reads here (as X-Ray would, silently).
            "_X_AMZN_TRACE_ID": (
                "Root=1-67a0b1c2-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=1"
            ),
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "AWS_ENDPOINT_URL": endpoint,  # S3, SQS, DynamoDB, Secrets Manager: moto's server
            "S3TORRENT_TEST_TIMEOUT_S": str(function.timeout_s),
        }
    )
    return env


def invoke(
    python: Path,
    function: Function,
    event: dict[str, Any],
    *,
    fakes: dict[str, str],
    endpoint: str,
    environment: Mapping[str, str | None] | None = None,
    check: bool = True,
) -> Invocation:
    """One cold invocation: a fresh interpreter of the clean venv imports the handler from the
    asset and calls it. `-s`: no user site-packages; `-P`: the runner's folder stays off
    sys.path, so only the asset (PYTHONPATH) and the venv's site-packages can be imported.
    `-B`: no `__pycache__` written into the asset, whose folder is Lambda's read-only task
    root (and which the asset tests list file by file).

    `environment`: variables to set over Lambda's (None: remove it, e.g. AWS_ENDPOINT_URL when
    each service gets its own endpoint). `check=False`: a failed invocation is returned
    (result None, its exit status and logs) rather than failing the test."""
    env = lambda_environment(function, fakes, endpoint, python)
    for name, value in (environment or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "result.json"
        started = time.monotonic()
        done = subprocess.run(
            [str(python), "-B", "-s", "-P", str(RUNNER), str(out)],
            input=json.dumps(event),
            capture_output=True,
            text=True,
            env=env,
            cwd=function.asset,  # Lambda's working directory is the task root
            timeout=120,
            check=False,
        )
        seconds = time.monotonic() - started
        logs = done.stdout + done.stderr
        if done.returncode != 0:
            if check:
                raise AssertionError(f"{function.handler} failed ({done.returncode}):\n{logs}")
            return Invocation(None, {}, logs, seconds, done.returncode)
        payload = json.loads(out.read_text())
    return Invocation(payload["result"], payload["loaded_from"], logs, seconds)
