"""What the infra tests share: ONE synth per test session, and readers over a template.

The synth (jsii starts in ~5 s, the app takes ~10 s more) happens once per process, on first
use, cached by `session_synth()`: three stacks in one app, cdk-nag on, exactly as app.py runs.

- `full`: everything switched on: imported buckets with prefixes (one covered by another), a
  whole imported bucket, a created bucket, public prefixes (anonymous ?torrent), the native
  torrent path, a KMS key, a schedule, an alarm email, an S3 Batch Operations manifest bucket.
- `default`: cdk.json as shipped (a bare `cdk deploy`): a created bucket, IAM auth everywhere.
- `endpoint`: buckets on an S3-compatible store (Ceph/MinIO): no AWS S3 grants or notifications.

Not a conftest.py on purpose: pytest imports every conftest.py as the module `conftest`, and
a conftest here would be imported as `conftest` too and shadow the top one.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.nag import flatten_reference

ROOT = Path(__file__).resolve().parents[2]

FULL_CONTEXT: dict[str, Any] = {
    "stack_name": "S3TorrentFull",
    "buckets": [
        {"name": "media-archive", "prefix": "videos/"},
        {"name": "media-archive", "prefix": "videos/2024/"},  # covered by videos/: dropped
        {"name": "media-archive", "prefix": "audio/"},
        {"name": "datasets.example", "prefix": ""},
    ],
    "public_prefixes": [{"name": "media-archive", "prefix": "videos/public/"}],
    "torrent_source": "auto",
    "create_bucket": True,
    "kms_key_arns": ["arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"],
    "backfill_schedule": "cron(0 3 * * ? *)",
    "alarm_email": "ops@example.com",
    "batch_manifest_bucket": "inventory-reports",
    "worker_max_concurrency": 20,
    "trackers": ["udp://tracker.example:1337/announce"],
    "collections": [{"bucket": "media-archive", "prefix": "audio/albums/"}],
}

ENDPOINT_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s3torrent/rgw-AbCdEf"
ENDPOINT_CONTEXT: dict[str, Any] = {
    "stack_name": "S3TorrentEndpoint",
    "buckets": [{"name": "media", "prefix": "pub/"}],
    "endpoint_url": "https://rgw.example.net",
    "torrent_source": "auto",
    "endpoint_credentials_secret_arn": ENDPOINT_SECRET,
    "backfill_schedule": "rate(1 hour)",
}


@dataclass(frozen=True)
class Synth:
    """What the session synth produced: templates as dicts, and as assertion Templates."""

    full: dict[str, Any]
    default: dict[str, Any]
    endpoint: dict[str, Any]
    full_template: Any  # aws_cdk.assertions.Template
    default_template: Any
    outdir: Path
    app: Any  # aws_cdk.App


def cdk_json_context() -> dict[str, Any]:
    """The context `cdk synth` would see from cdk.json."""
    return dict(json.loads((ROOT / "cdk.json").read_text())["context"])


@functools.cache
def session_synth() -> Synth:
    """Synthesize the three stacks once; cdk-nag raises on any unacknowledged finding."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk
    from aws_cdk.assertions import Template
    from cdk_nag import AwsSolutionsChecks
    from infra.config import from_context
    from infra.stack import S3TorrentStack

    outdir = Path(tempfile.mkdtemp(prefix="s3torrent-cdk.out-"))
    atexit.register(shutil.rmtree, outdir, ignore_errors=True)
    context = cdk_json_context()
    app = cdk.App(outdir=str(outdir), context=context)
    stacks = {}
    for name, overrides in (
        ("default", None),
        ("full", json.dumps(FULL_CONTEXT)),  # as `-c s3torrent='{...}'` passes it: a string
        ("endpoint", ENDPOINT_CONTEXT),
    ):
        lookup = {**context, "s3torrent": overrides} if overrides else context
        config = from_context(lookup.get)
        stack_name = config.stack_name if overrides else "S3TorrentDefault"
        stacks[name] = S3TorrentStack(app, stack_name, config=config)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()  # raises ValidationFailed on any unacknowledged cdk-nag finding
    templates = {name: Template.from_stack(stack) for name, stack in stacks.items()}
    return Synth(
        full=dict(templates["full"].to_json()),
        default=dict(templates["default"].to_json()),
        endpoint=dict(templates["endpoint"].to_json()),
        full_template=templates["full"],
        default_template=templates["default"],
        outdir=outdir,
        app=app,
    )


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of one CloudFormation type."""
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


def one(template: dict[str, Any], kind: str, contains: str) -> tuple[str, dict[str, Any]]:
    """The single resource of `kind` whose logical id contains `contains`."""
    found = [(lid, r) for lid, r in resources(template, kind).items() if contains in lid]
    assert len(found) == 1, f"{kind} with {contains!r}: {[lid for lid, _ in found]}"
    return found[0]


def logical_id(template: dict[str, Any], kind: str, contains: str) -> str:
    return one(template, kind, contains)[0]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def flat(value: Any) -> str:
    """A CloudFormation value as one readable string (cdk-nag's flattening)."""
    return flatten_reference(value)


def text(value: Any) -> str:
    """An Fn::Join of strings and references as text, references as `<LogicalId>` (JSON-safe)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        delimiter, items = value["Fn::Join"]
        return str(delimiter).join(text(item) for item in items)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{value['Fn::GetAtt'][0]}.{value['Fn::GetAtt'][1]}>"
    raise AssertionError(f"unexpected CloudFormation value: {value!r}")


def role_statements(template: dict[str, Any], role_contains: str) -> list[dict[str, Any]]:
    """Every statement of the inline policies attached to the role whose id contains the text."""
    role_id = logical_id(template, "AWS::IAM::Role", role_contains)
    statements: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        roles = [ref.get("Ref") for ref in policy["Properties"].get("Roles", [])]
        if role_id in roles:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def grants(template: dict[str, Any], role_contains: str) -> set[tuple[str, str]]:
    """(action, flattened resource) pairs a role is allowed, conditions aside."""
    pairs: set[tuple[str, str]] = set()
    for statement in role_statements(template, role_contains):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                pairs.add((action, flat(resource)))
    return pairs


def actions_on(pairs: set[tuple[str, str]], prefix: str) -> set[tuple[str, str]]:
    """The pairs whose action starts with `prefix` (e.g. 's3:')."""
    return {pair for pair in pairs if pair[0].startswith(prefix)}


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
