"""The deploy-settings model: read once from CDK context, handed to the constructs typed.

Context is layered, later wins, field by field:

1. the defaults of this model,
2. `s3torrent:defaults` in cdk.json (project-wide pins such as the Powertools layer version),
3. `s3torrent` (a JSON object in cdk.json, a one-line JSON string from `-c s3torrent='{...}'`,
   or `-c s3torrent=@file.json`),
4. flat convenience keys: `-c bucket=NAME -c prefix=PATH/ -c create_bucket=true ...`.

`-c s3torrent=...` replaces the whole `s3torrent` value of cdk.json (that is how the CDK CLI
merges context), which is why the pins live under their own key.

Keys are the flat union of the runtime `Settings` fields (what the functions receive as
`S3TORRENT_*` environment) and the deploy-only fields below; an unknown key is an error, so a
typo never deploys silently with a default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from s3torrent.errors import InvalidInput
from s3torrent.settings import Settings

CONTEXT_KEY = "s3torrent"
DEFAULTS_CONTEXT_KEY = "s3torrent:defaults"
# Flat `-c key=value` shortcuts; `bucket` and `prefix` add one scope to `buckets`.
FLAT_KEYS = (
    "bucket",
    "prefix",
    "create_bucket",
    "endpoint_url",
    "backfill_schedule",
    "web_seed_origin",
    "alarm_email",
    "api_auth",
    "stack_name",
)
# Runtime fields the stack fills in itself (resource names, the region it deploys to, the
# secret it grants the functions to read).
STACK_OWNED_FIELDS = frozenset(
    {
        "region",
        "queue_url",
        "backfill_queue_url",
        "backfill_table",
        "job_max_receives",
        "job_visibility_seconds",
        "endpoint_credentials_secret",
    }
)

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
_SCHEDULE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(\S+( \S+){5}\))$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/(mrk-)?[0-9a-f-]{32,36}$")
_SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$"
)
DEFAULT_BACKFILL_SCHEDULE = "rate(1 day)"
SCHEDULE_OFF = "off"
WEB_SEED_ORIGINS = ("cloudfront", "bucket", "none")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class InvalidDeploySettings(ValueError):
    """CDK context that cannot describe a deployment; the message says which key and why."""


class DeploySettings(BaseModel):
    """Everything `cdk deploy` needs: the runtime `Settings` plus what only the stack uses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    settings: Settings = Settings()
    stack_name: str = Field(default="S3Torrent", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$")

    # A new bucket (CloudFormation names it) added to the allowlist, whole bucket.
    # Unset: created exactly when no bucket is configured, so a bare `cdk deploy` works.
    create_bucket: bool | None = None
    # SSE-KMS keys of the configured buckets: the only keys the functions may use, via S3 only.
    kms_key_arns: tuple[str, ...] = ()
    # S3-compatible store (settings.endpoint_url): a Secrets Manager secret holding its access
    # key pair as JSON {"access_key_id": ..., "secret_access_key": ...}; the functions receive
    # its ARN as the runtime setting endpoint_credentials_secret, and may read it.
    endpoint_credentials_secret_arn: str | None = None

    # API Gateway.
    api_auth: Literal["iam", "none"] = "iam"
    api_auth_none_reason: str | None = None
    api_stage_name: str = Field(default="prod", pattern=r"^[A-Za-z0-9_]{1,64}$")
    api_throttle_rate_limit: float = Field(default=50.0, gt=0)
    api_throttle_burst_limit: int = Field(default=100, ge=1)
    # API Gateway decides "binary" from the request's first Accept value; the AWS CLI sends
    # none, so `*/*` is what makes `aws s3api get-object-torrent` receive raw bytes.
    api_binary_media_types: tuple[str, ...] = ("application/x-bittorrent", "*/*")
    api_waf_web_acl_arn: str | None = None
    # API Gateway's account-wide role for pushing logs; false if the account already has one.
    api_account_cloudwatch_role: bool = True

    # EventBridge expression that starts a backfill of every configured bucket/prefix; daily
    # unless switched off with "off" (or JSON null), so objects whose event was lost still get
    # their torrent within a day.
    backfill_schedule: str | None = DEFAULT_BACKFILL_SCHEDULE

    # Where the torrents' BEP 19 web seed points (unset: see `web_seed_origin_for`):
    # "cloudfront" (a distribution with origin access control in front of the bucket),
    # "bucket" (the bucket's own URL: its objects must be public), "none" (no web seed), or a
    # URL template of your own CDN or mirror (the runtime web_seeds placeholders).
    web_seed_origin: str | None = None

    # Function sizes. Lambda gives CPU in proportion to memory: 1769 MB is one vCPU.
    api_memory_mb: int = Field(default=1769, ge=128, le=10240)
    api_timeout_seconds: int = Field(default=29, ge=3, le=29)
    worker_memory_mb: int = Field(default=3008, ge=128, le=10240)
    worker_timeout_seconds: int = Field(default=900, ge=30, le=900)
    backfill_memory_mb: int = Field(default=512, ge=128, le=10240)
    backfill_timeout_seconds: int = Field(default=900, ge=60, le=900)
    worker_batch_size: int = Field(default=5, ge=1, le=10)
    worker_max_concurrency: int | None = Field(default=None, ge=2, le=1000)
    max_receive_count: int = Field(default=5, ge=1, le=100)

    powertools_layer_version: int = Field(ge=1)
    log_retention_days: int = 30
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Monitoring.
    alarm_email: str | None = None
    queue_age_alarm_seconds: int = Field(default=3600, ge=60)

    # S3 Batch Operations: the bucket holding inventory manifests (read) and job reports.
    batch_manifest_bucket: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$"
    )
    batch_report_prefix: str = "s3torrent-batch-reports/"

    @field_validator("kms_key_arns")
    @classmethod
    def _kms_arns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arn in value:
            if not _KMS_KEY_ARN.match(arn):
                raise ValueError(f"not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID): {arn!r}")
        return value

    @field_validator("endpoint_credentials_secret_arn")
    @classmethod
    def _secret_arn(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET_ARN.match(value):
            raise ValueError(
                "not a full Secrets Manager secret ARN (…:secret:NAME-AbCdEf): " + repr(value)
            )
        return value

    @field_validator("backfill_schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() == SCHEDULE_OFF:
            return None  # the documented way to switch the daily backfill off
        if not _SCHEDULE.match(value):
            raise ValueError(
                f"not an EventBridge rate(...) or 6-field cron(...) expression: {value!r}"
            )
        return value

    @field_validator("web_seed_origin")
    @classmethod
    def _web_seed_origin(cls, value: str | None) -> str | None:
        if value is None or value in WEB_SEED_ORIGINS:
            return value
        if not value.startswith(("https://", "http://")):
            raise ValueError(
                f"web_seed_origin must be one of {', '.join(WEB_SEED_ORIGINS)} or an http(s) URL "
                f"template: {value!r}"
            )
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"CloudWatch Logs retention must be one of {LOG_RETENTION_DAYS}: {value}"
            )
        return value

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError(f"not an email address: {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DeploySettings:
        if self.api_auth == "none" and len((self.api_auth_none_reason or "").strip()) < 20:
            raise ValueError(
                "api_auth 'none' leaves every route open to the internet: set "
                "api_auth_none_reason to why that is acceptable (20 characters at least)"
            )
        if self.settings.endpoint_url:
            self._check_endpoint()
        if not self.settings.buckets and self.create_bucket is False:
            raise ValueError(
                "no bucket to serve: set buckets (e.g. -c bucket=NAME [-c prefix=PATH/]) "
                "or leave create_bucket unset"
            )
        for scope in (*self.settings.buckets, *self.settings.public_prefixes):
            if any(char in scope.prefix for char in "*?$"):
                raise ValueError(
                    f"prefix {scope.prefix!r} of {scope.name}: '*', '?' and '$' are IAM wildcards "
                    "or policy variables and cannot be escaped in a resource ARN"
                )
        reports = self.batch_manifest_bucket
        if reports and self.settings.allows(reports, self.batch_report_prefix):
            raise ValueError(
                f"batch reports s3://{reports}/{self.batch_report_prefix} would land inside a "
                "configured source scope: S3 Batch Operations could then overwrite source objects; "
                "choose another batch_manifest_bucket or batch_report_prefix"
            )
        self._check_web_seeds()
        for scope in self.settings.public_prefixes:
            if not self.settings.allows(scope.name, scope.prefix):
                raise ValueError(
                    f"public prefix s3://{scope.name}/{scope.prefix} is not inside a configured "
                    "bucket scope (public prefixes narrow the allowlist, never widen it)"
                )
        return self

    def _check_web_seeds(self) -> None:
        """One way to say where web seeds point, and a CloudFront origin the stack can build."""
        if self.web_seed_origin is not None and "web_seeds" in self.settings.model_fields_set:
            raise ValueError(
                "set web_seed_origin or web_seeds, not both (web_seed_origin writes web_seeds)"
            )
        if self.web_seed_origin is not None and self.settings.endpoint_url:
            raise ValueError(
                f"web_seed_origin applies to AWS S3 buckets; with endpoint_url "
                f"{self.settings.endpoint_url} set web_seeds to the store's public URL template"
            )
        fronted = self.cloudfront_buckets()
        if len(fronted) > 1:
            raise ValueError(
                "web_seed_origin 'cloudfront' fronts one bucket per stack (the web seed URL has "
                f"no bucket in its path), but it would front {len(fronted)}: "
                f"{', '.join(fronted)}; deploy one stack per bucket, or use 'bucket' or a URL "
                "template for the others"
            )

    def _check_endpoint(self) -> None:
        """An S3-compatible store: none of the AWS-S3-only features apply, credentials do."""
        where = f"endpoint_url {self.settings.endpoint_url}"
        if not self.settings.buckets:
            raise ValueError(f"{where}: name its buckets (the stack cannot create them there)")
        if self.create_bucket:
            raise ValueError(f"{where}: create_bucket makes an AWS S3 bucket; not with an endpoint")
        for key in ("kms_key_arns", "batch_manifest_bucket"):
            if getattr(self, key):
                raise ValueError(f"{where}: {key} applies to AWS S3 only")
        if not self.endpoint_credentials_secret_arn:
            raise ValueError(
                f"{where}: set endpoint_credentials_secret_arn (the store's access key pair in "
                "Secrets Manager); a Lambda role's credentials mean nothing to another store"
            )

    # --- derived values the constructs use -------------------------------------------------

    @property
    def on_aws_s3(self) -> bool:
        """True when the buckets are AWS S3 buckets (no endpoint_url): IAM, notifications apply."""
        return not self.settings.endpoint_url

    @property
    def creates_bucket(self) -> bool:
        """True when the stack creates a bucket of its own (explicitly, or because none is set)."""
        if self.create_bucket is None:
            return not self.settings.buckets and self.on_aws_s3
        return self.create_bucket

    @property
    def public_route(self) -> bool:
        """True when the S3-compatible route answers anonymous `?torrent` (public prefixes set)."""
        return bool(self.settings.public_prefixes)

    def web_seed_origin_for(self, *, created: bool) -> str:
        """Where web seeds point for the created bucket or for the configured (existing) ones.

        Unset: CloudFront for the bucket the stack creates (it blocks public access, so its own
        URL answers 403), the bucket URL for existing buckets (the web_seeds default of old).
        """
        if self.web_seed_origin is not None:
            return self.web_seed_origin
        return "cloudfront" if created else "bucket"

    @property
    def manages_web_seeds(self) -> bool:
        """False when context sets `web_seeds` itself (or an endpoint serves the buckets)."""
        return self.on_aws_s3 and "web_seeds" not in self.settings.model_fields_set

    def cloudfront_buckets(self) -> list[str]:
        """Names (or "<created>") of the buckets the stack puts behind its distribution."""
        if not self.manages_web_seeds:
            return []
        fronted = []
        if self.creates_bucket and self.web_seed_origin_for(created=True) == "cloudfront":
            fronted.append("<the bucket this stack creates>")
        if self.web_seed_origin_for(created=False) == "cloudfront":
            fronted.extend(self.scopes_by_bucket())
        return fronted

    def scopes_by_bucket(self) -> dict[str, tuple[str, ...]]:
        """Each configured bucket with its minimal prefix set (a prefix inside another is dropped).

        S3 rejects two notification configurations whose prefixes overlap for one event type,
        and a covered prefix adds nothing to an IAM grant either.
        """
        grouped: dict[str, list[str]] = {}
        for scope in self.settings.buckets:
            grouped.setdefault(scope.name, []).append(scope.prefix)
        return {name: minimal_prefixes(prefixes) for name, prefixes in grouped.items()}


def minimal_prefixes(prefixes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Sorted prefixes with every prefix that another one already covers removed."""
    kept: list[str] = []
    for prefix in sorted(set(prefixes)):
        if not any(prefix.startswith(other) for other in kept):
            kept.append(prefix)
    return tuple(kept)


# --- reading the context ----------------------------------------------------------------------


def from_context(lookup: Callable[[str], Any]) -> DeploySettings:
    """Build the deploy settings from CDK context (`app.node.try_get_context`, or `dict.get`)."""
    layers: list[Mapping[str, Any]] = []
    for key in (DEFAULTS_CONTEXT_KEY, CONTEXT_KEY):
        value = lookup(key)
        if value is not None:
            layers.append(_as_object(key, value))
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    flat = _flat_layer(lookup)
    # `-c bucket=...` adds a scope to the configured ones rather than replacing them.
    if "buckets" in flat:
        flat["buckets"] = [*merged.get("buckets", []), *flat["buckets"]]
    merged.update(flat)
    return from_mapping(merged)


def from_mapping(values: Mapping[str, Any]) -> DeploySettings:
    """Validate one flat mapping of runtime and deploy fields; errors name every bad key."""
    runtime_fields = set(Settings.model_fields)
    deploy_fields = set(DeploySettings.model_fields) - {"settings"}
    owned = sorted(STACK_OWNED_FIELDS & set(values))
    if owned:
        raise InvalidDeploySettings(f"set by the stack, not by context: {', '.join(owned)}")
    unknown = sorted(set(values) - runtime_fields - deploy_fields)
    if unknown:
        raise InvalidDeploySettings(
            f"unknown s3torrent context keys: {', '.join(unknown)} (docs/deploy.md lists every key)"
        )
    runtime = {k: v for k, v in values.items() if k in runtime_fields}
    deploy = {k: v for k, v in values.items() if k in deploy_fields}
    try:
        settings = Settings.from_mapping(runtime)
    except InvalidInput as error:
        raise InvalidDeploySettings(str(error)) from error
    try:
        return DeploySettings.model_validate({**deploy, "settings": settings})
    except ValidationError as error:
        details = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'settings'}: {item['msg']}"
            for item in error.errors()
        )
        raise InvalidDeploySettings(f"invalid s3torrent context: {details}") from error


def _as_object(key: str, value: Any) -> Mapping[str, Any]:
    if isinstance(value, str) and value.startswith("@"):
        # `-c s3torrent=@deploy.json`: the CDK CLI cuts a -c value at its first newline, so
        # anything longer than one line is easier kept in a file.
        path = Path(value[1:])
        try:
            value = path.read_text(encoding="utf-8")
        except OSError as error:
            raise InvalidDeploySettings(f"context {key!r}: cannot read {path}: {error}") from error
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise InvalidDeploySettings(f"context {key!r} is not JSON: {error}") from error
    if not isinstance(value, Mapping):
        raise InvalidDeploySettings(f"context {key!r} must be a JSON object, got {value!r}")
    return value


def _flat_layer(lookup: Callable[[str], Any]) -> dict[str, Any]:
    flat = {key: lookup(key) for key in FLAT_KEYS if lookup(key) is not None}
    layer: dict[str, Any] = {}
    bucket = flat.pop("bucket", None)
    prefix = flat.pop("prefix", None)
    if prefix is not None and bucket is None:
        raise InvalidDeploySettings("-c prefix=... needs -c bucket=...")
    if bucket is not None:
        layer["buckets"] = [{"name": str(bucket), "prefix": str(prefix or "")}]
    for key, value in flat.items():
        layer[key] = _flat_value(value) if key == "create_bucket" else value
    return layer


def _flat_value(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value
