"""The deploy-settings model: context layering, validation, and the docs table (no synth)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from infra.config import (
    FLAT_KEYS,
    DeploySettings,
    InvalidDeploySettings,
    from_context,
    from_mapping,
    minimal_prefixes,
)

from s3torrent.settings import Settings
from tests.support.synth import cdk_json_context

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DOC = ROOT / "docs" / "deploy.md"  # the deployment guide, with the table of every key
PINS = {"powertools_layer_version": 38}


def load(**context: Any) -> DeploySettings:
    return from_context({"s3torrent:defaults": PINS, **context}.get)


def test_cdk_json_as_shipped_is_a_working_deployment() -> None:
    config = from_context(cdk_json_context().get)
    assert config.creates_bucket  # no bucket configured: the stack makes one
    assert config.settings.buckets == ()
    assert config.api_auth == "iam"
    assert config.powertools_layer_version == 38
    assert config.worker_timeout_seconds == 900
    assert config.worker_memory_mb == 3008


def test_json_context_string_overrides_field_by_field_over_defaults() -> None:
    config = load(s3torrent=json.dumps({"buckets": [{"name": "photos", "prefix": "raw/"}]}))
    assert [(b.name, b.prefix) for b in config.settings.buckets] == [("photos", "raw/")]
    assert not config.creates_bucket  # a bucket is configured: nothing created unless asked
    assert config.powertools_layer_version == 38  # the pin survives -c s3torrent=...


def test_flat_keys_add_a_bucket_and_parse_booleans() -> None:
    config = load(
        s3torrent={"buckets": [{"name": "first"}]},
        bucket="second",
        prefix="in/",
        create_bucket="true",
        backfill_schedule="rate(12 hours)",
    )
    assert [(b.name, b.prefix) for b in config.settings.buckets] == [
        ("first", ""),
        ("second", "in/"),
    ]
    assert config.creates_bucket is True
    assert config.backfill_schedule == "rate(12 hours)"
    assert set(FLAT_KEYS) >= {"bucket", "prefix", "create_bucket"}


def test_prefix_without_bucket_is_refused() -> None:
    with pytest.raises(InvalidDeploySettings, match="needs -c bucket"):
        load(prefix="x/")


@pytest.mark.parametrize(
    "values,message",
    [
        ({"bucketz": []}, "unknown s3torrent context keys: bucketz"),
        ({"queue_url": "https://x"}, "set by the stack"),
        ({"endpoint_credentials_secret": "s3torrent/rgw"}, "set by the stack"),
        ({"piece_length": 1000}, "piece_length"),
        ({"api_auth": "none"}, "api_auth_none_reason"),
        ({"backfill_schedule": "every day"}, "rate"),
        ({"backfill_schedule": "cron(0 3 * * *)"}, "6-field cron"),
        ({"kms_key_arns": ["alias/aws/s3"]}, "not a KMS key ARN"),
        ({"log_retention_days": 31}, "retention"),
        ({"alarm_email": "nobody"}, "not an email"),
        ({"worker_timeout_seconds": 901}, "worker_timeout_seconds"),
        ({"api_timeout_seconds": 30}, "api_timeout_seconds"),
        ({"create_bucket": False}, "no bucket to serve"),
        ({"buckets": [{"name": "bkt", "prefix": "a*"}]}, "IAM wildcards"),
        (
            {"buckets": [{"name": "bkt", "prefix": "in/"}], "public_prefixes": [{"name": "bkt"}]},
            "not inside a configured bucket scope",
        ),
        (
            {"buckets": [{"name": "bkt"}], "batch_manifest_bucket": "bkt"},
            "could then overwrite source objects",
        ),
    ],
)
def test_invalid_settings_are_refused_with_the_reason(values: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidDeploySettings, match=re.escape(message)):
        from_mapping({**PINS, **values})


def test_anonymous_api_needs_a_loud_reason() -> None:
    config = from_mapping(
        {**PINS, "api_auth": "none", "api_auth_none_reason": "isolated lab account, no data"}
    )
    assert config.api_auth == "none"


def test_public_prefix_inside_the_scope_turns_on_the_anonymous_route() -> None:
    config = from_mapping(
        {
            **PINS,
            "buckets": [{"name": "bkt", "prefix": "pub/"}],
            "public_prefixes": [{"name": "bkt", "prefix": "pub/open/"}],
        }
    )
    assert config.public_route


def test_minimal_prefixes_drop_covered_ones() -> None:
    assert minimal_prefixes(["a/b/", "a/", "c/", "a/", "cd/"]) == ("a/", "c/", "cd/")
    assert minimal_prefixes(["", "x/"]) == ("",)
    config = from_mapping(
        {**PINS, "buckets": [{"name": "bkt", "prefix": "v/2024/"}, {"name": "bkt", "prefix": "v/"}]}
    )
    assert config.scopes_by_bucket() == {"bkt": ("v/",)}


def test_every_context_key_is_documented_once_in_the_deploy_table() -> None:
    guide = DEPLOY_DOC.read_text(encoding="utf-8")
    doc = guide.split("## Every context key", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `([a-z_:]+)` \|", doc, flags=re.MULTILINE)
    documented = [row for row in rows if row not in ("s3torrent", "s3torrent:defaults")]
    keys = (set(Settings.model_fields) | set(DeploySettings.model_fields)) - {
        "settings",
        "region",
        "queue_url",
        "backfill_queue_url",
        "backfill_table",
        "job_max_receives",  # set by the stack from max_receive_count
        "job_visibility_seconds",  # set by the stack from worker_timeout_seconds
        "endpoint_credentials_secret",  # set by the stack from endpoint_credentials_secret_arn
    }
    keys |= set(FLAT_KEYS)
    assert sorted(set(documented)) == sorted(keys)
    assert len(documented) == len(set(documented)), "a key documented twice"


def test_context_from_a_json_file(tmp_path: Path) -> None:
    # The CDK CLI cuts a -c value at its first newline: multi-line JSON goes in a file.
    path = tmp_path / "deploy.json"
    path.write_text(
        '{\n  "buckets": [{"name": "photos", "prefix": "raw/"}],\n  "log_level": "DEBUG"\n}\n'
    )
    config = load(s3torrent=f"@{path}")
    assert config.settings.buckets[0].name == "photos"
    assert config.log_level == "DEBUG"
    with pytest.raises(InvalidDeploySettings, match="cannot read"):
        load(s3torrent=f"@{tmp_path / 'missing.json'}")


def test_the_deploy_docs_examples_are_valid_settings() -> None:
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"<<'JSON'\n(.*?)\nJSON\n", doc, flags=re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        from_context({**cdk_json_context(), "s3torrent": json.loads(block)}.get)


BASE: dict[str, Any] = dict(PINS)


def test_backfill_schedule_is_daily_unless_switched_off() -> None:
    assert from_mapping(BASE).backfill_schedule == "rate(1 day)"
    assert from_mapping({**BASE, "backfill_schedule": "off"}).backfill_schedule is None
    assert from_mapping({**BASE, "backfill_schedule": None}).backfill_schedule is None
    assert load(backfill_schedule="off").backfill_schedule is None  # -c backfill_schedule=off


def test_web_seed_origin_defaults_and_refusals() -> None:
    created = from_mapping(BASE)
    assert created.cloudfront_buckets() == ["<the bucket this stack creates>"]
    existing = from_mapping({**BASE, "buckets": [{"name": "media-archive", "prefix": "v/"}]})
    assert existing.web_seed_origin_for(created=False) == "bucket"
    assert existing.cloudfront_buckets() == []
    fronted = from_mapping(
        {**BASE, "buckets": [{"name": "media-archive"}], "web_seed_origin": "cloudfront"}
    )
    assert fronted.cloudfront_buckets() == ["media-archive"]
    own = from_mapping({**BASE, "web_seeds": ["https://cdn.example/{key}"]})
    assert own.cloudfront_buckets() == [] and not own.manages_web_seeds
    refused = [
        ({"web_seed_origin": "ftp://x/{key}"}, "web_seed_origin must be"),
        (
            {"web_seed_origin": "bucket", "web_seeds": ["https://x/{key}"]},
            "web_seed_origin or web_seeds, not both",
        ),
        (
            {
                "buckets": [{"name": "media-archive"}],
                "create_bucket": True,
                "web_seed_origin": "cloudfront",
            },
            "fronts one bucket per stack",
        ),
    ]
    for values, message in refused:
        with pytest.raises(InvalidDeploySettings, match=message):
            from_mapping({**BASE, **values})


def test_a_bucket_region_reaches_the_runtime_settings() -> None:
    config = from_mapping(
        {**BASE, "buckets": [{"name": "media-archive", "prefix": "v/", "region": "eu-west-3"}]}
    )
    assert config.settings.bucket_region("media-archive") == "eu-west-3"
    assert '"region": "eu-west-3"' in config.settings.to_env()["S3TORRENT_BUCKETS"]
