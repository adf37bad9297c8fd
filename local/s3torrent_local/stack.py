"""The local stack: moto's server, the queues and table the stack deploys, and the real handlers.

Order matters: the handlers read their settings from the environment when they are imported,
so the resources are created and the environment is set first, the handlers imported after.
One stack per process (it sets `os.environ`).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3

from s3torrent.publishing.index import table_definition as feed_table_definition
from s3torrent.settings import BucketScope, KeptCollection, Settings
from s3torrent_local.buckets import BucketWiring
from s3torrent_local.gateway import ApiGateway
from s3torrent_local.lambda_context import REGION, Handler
from s3torrent_local.moto_server import EmbeddedMoto
from s3torrent_local.queues import EventSource, QueueConsumer

log = logging.getLogger("s3torrent_local")

# The three functions of the deployed stack and the modules their handlers live in.
HANDLER_MODULES = {
    "api": "s3torrent.handlers.api",
    "worker": "s3torrent.handlers.worker",
    "backfill": "s3torrent.handlers.backfill",
}
WORKER_QUEUE = "s3torrent-worker"
BACKFILL_QUEUE = "s3torrent-backfill"
PROGRESS_TABLE = "s3torrent-backfills"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


def _deployed(field_name: str) -> Any:
    """A default of the deployed stack (infra's DeploySettings), so local runs behave alike."""
    from infra.config import DeploySettings

    return DeploySettings.model_fields[field_name].default


@dataclass(frozen=True)
class StackConfig:
    """What `s3torrent serve` can be told; every other setting comes from `S3TORRENT_*`."""

    host: str = "127.0.0.1"
    s3_port: int = 5000
    api_port: int = 8000
    buckets: tuple[BucketScope, ...] = (BucketScope(name="demo"),)
    collections: tuple[KeptCollection, ...] = ()  # `--collection`, kept current on changes
    stage: str = field(default_factory=lambda: str(_deployed("api_stage_name")))
    workers: int = 4  # concurrent worker invocations (Lambda would scale out)
    # Each function's timeout (its context's time budget), batch sizes, redrive, binary types:
    # the deployed stack's defaults.
    api_timeout: float = field(default_factory=lambda: float(_deployed("api_timeout_seconds")))
    worker_timeout: float = field(
        default_factory=lambda: float(_deployed("worker_timeout_seconds"))
    )
    backfill_timeout: float = field(
        default_factory=lambda: float(_deployed("backfill_timeout_seconds"))
    )
    worker_batch_size: int = field(default_factory=lambda: int(_deployed("worker_batch_size")))
    max_receive_count: int = field(default_factory=lambda: int(_deployed("max_receive_count")))
    binary_media_types: tuple[str, ...] = field(
        default_factory=lambda: tuple(_deployed("api_binary_media_types"))
    )
    handler_log_level: str = "WARNING"  # the handlers' Powertools logger level
    metrics: bool = False  # print the handlers' EMF metrics (noisy)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass(frozen=True)
class Resources:
    """What the stack created in moto, as the deployed stack passes it to the functions."""

    worker_queue_url: str
    worker_queue_arn: str
    backfill_queue_url: str
    backfill_queue_arn: str
    table: str


def parse_collection(text: str) -> KeptCollection:
    """`BUCKET/PREFIX/` as a kept collection (InvalidInput says what is wrong)."""
    bucket, _, prefix = text.removeprefix("s3://").partition("/")
    return Settings.from_mapping(
        {"collections": [{"bucket": bucket, "prefix": prefix}]}
    ).collections[0]


def parse_scope(text: str) -> BucketScope:
    """`NAME` or `NAME/PREFIX` as a bucket scope (InvalidInput if the name is not a bucket's)."""
    name, _, prefix = text.partition("/")
    return Settings.from_mapping({"buckets": [{"name": name, "prefix": prefix}]}).buckets[0]


def local_settings(
    base: Settings,
    scopes: Sequence[BucketScope],
    endpoint: str,
    resources: Resources,
    max_receive_count: int,
    collections: Sequence[KeptCollection] = (),
) -> Settings:
    """The deployed stack's settings, pointed at the embedded endpoint and its resources.

    The allowlist is the configured buckets plus the `--bucket` ones; locally they are all
    public (`?torrent` answers unsigned requests too, as the local API has no IAM in front).
    Kept collections are the configured ones plus `--collection` ones; a bucket of theirs
    that is not allowlisted yet is added (and so created and wired).
    """
    kept = list(dict.fromkeys([*base.collections, *collections]))
    buckets = list(dict.fromkeys([*base.buckets, *scopes]))
    for collection in kept:
        if not any(scope.covers(collection.bucket, collection.prefix) for scope in buckets):
            buckets.append(BucketScope(name=collection.bucket))
    values = base.model_dump(mode="json")
    values.update(
        buckets=[scope.model_dump() for scope in buckets],
        public_prefixes=[
            scope.model_dump() for scope in dict.fromkeys([*base.public_prefixes, *buckets])
        ],
        endpoint_url=endpoint,
        region=REGION,
        queue_url=resources.worker_queue_url,
        backfill_queue_url=resources.backfill_queue_url,
        backfill_table=resources.table,
        job_max_receives=max_receive_count,
        collections=[collection.model_dump(exclude_none=True) for collection in kept],
    )
    return Settings.from_mapping(values)


def function_environment(settings: Settings, endpoint: str, config: StackConfig) -> dict[str, str]:
    """The environment every local function sees: settings, endpoints, fake credentials."""
    return {
        **settings.to_env(),
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        # SQS and DynamoDB clients the handlers build reach moto without code changes.
        "AWS_ENDPOINT_URL_SQS": endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        # Never AWS: no profile, config file or instance metadata to pick other credentials up.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "s3torrent",
        "POWERTOOLS_METRICS_NAMESPACE": "s3torrent",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "false" if config.metrics else "true",
        "POWERTOOLS_LOG_LEVEL": config.handler_log_level,
    }


class LocalStack:
    """Everything `s3torrent serve` runs; `start()` then `stop()`."""

    def __init__(self, config: StackConfig, *, handlers: Mapping[str, Handler] | None = None):
        self.config = config
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self.moto = EmbeddedMoto(config.host, config.s3_port)  # binds now: busy ports fail here
        self.gateway = ApiGateway(
            config.host,
            config.api_port,
            lambda: self._handlers["api"],
            stage=config.stage,
            binary_media_types=config.binary_media_types,
            timeout_seconds=config.api_timeout,
        )
        self.settings: Settings | None = None
        self._consumers: list[QueueConsumer] = []
        self._wiring: BucketWiring | None = None

    @property
    def s3_url(self) -> str:
        return self.moto.url

    @property
    def api_url(self) -> str:
        return self.gateway.url

    def client(self, service: str) -> Any:
        """A boto3 client of the embedded endpoint (fake credentials)."""
        return boto3.session.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        ).client(service, endpoint_url=self.moto.url)

    def start(self) -> Settings:
        """Start moto, create the resources, import the handlers, start the pollers and the API."""
        self.moto.start()
        resources = self._create_resources()
        base = Settings.from_env(self.config.environ)
        self.settings = local_settings(
            base,
            self.config.buckets,
            self.moto.url,
            resources,
            self.config.max_receive_count,
            self.config.collections,
        )
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
            os.environ.pop(name, None)
        os.environ.update(function_environment(self.settings, self.moto.url, self.config))
        # Each invocation without a metric says so (UserWarning); the local console is no place.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        self.gateway.strip_stage = self.config.stage not in {b.name for b in self.settings.buckets}
        for function, module in HANDLER_MODULES.items():
            if function not in self._handlers:
                self._handlers[function] = importlib.import_module(module).lambda_handler
        self._wiring = BucketWiring(
            self.client("s3"), self.settings.buckets, resources.worker_queue_arn
        )
        self._wiring.create_missing()
        sqs = self.client("sqs")
        self._consumers = [
            QueueConsumer(
                sqs,
                EventSource(
                    function_name="s3torrent-worker",
                    queue_url=resources.worker_queue_url,
                    queue_arn=resources.worker_queue_arn,
                    handler=lambda: self._handlers["worker"],
                    timeout_seconds=self.config.worker_timeout,
                    batch_size=self.config.worker_batch_size,
                    max_receive_count=self.config.max_receive_count,
                ),
                concurrency=self.config.workers,
            ),
            QueueConsumer(
                sqs,
                EventSource(
                    function_name="s3torrent-backfill",
                    queue_url=resources.backfill_queue_url,
                    queue_arn=resources.backfill_queue_arn,
                    handler=lambda: self._handlers["backfill"],
                    timeout_seconds=self.config.backfill_timeout,
                    batch_size=1,
                    max_receive_count=self.config.max_receive_count,
                ),
            ),
        ]
        for consumer in self._consumers:
            consumer.start()
        self._wiring.start()
        self.gateway.start()
        return self.settings

    def stop(self) -> None:
        """Stop taking requests, let batches in flight finish, then stop moto."""
        self.gateway.stop()
        for consumer in self._consumers:
            consumer.request_stop()  # all at once: each long poll ends within a second
        if self._wiring is not None:
            self._wiring.stop()
        for consumer in self._consumers:
            if not consumer.stop():
                log.warning("%s: an invocation was still running at shutdown", consumer.name)
        self.moto.stop()

    def _create_resources(self) -> Resources:
        sqs = self.client("sqs")
        urls: dict[str, str] = {}
        arns: dict[str, str] = {}
        timeouts = {
            WORKER_QUEUE: self.config.worker_timeout,
            BACKFILL_QUEUE: self.config.backfill_timeout,
        }
        for name, timeout in timeouts.items():
            dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
            redrive = {
                "deadLetterTargetArn": _queue_arn(sqs, dlq),
                "maxReceiveCount": self.config.max_receive_count,
            }
            urls[name] = sqs.create_queue(
                QueueName=name,
                Attributes={
                    "VisibilityTimeout": str(int(timeout)),
                    "RedrivePolicy": json.dumps(redrive),
                },
            )["QueueUrl"]
            arns[name] = _queue_arn(sqs, urls[name])
        create_progress_table(self.client("dynamodb"), PROGRESS_TABLE)
        return Resources(
            worker_queue_url=urls[WORKER_QUEUE],
            worker_queue_arn=arns[WORKER_QUEUE],
            backfill_queue_url=urls[BACKFILL_QUEUE],
            backfill_queue_arn=arns[BACKFILL_QUEUE],
            table=PROGRESS_TABLE,
        )


def _queue_arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def create_progress_table(dynamodb: Any, name: str) -> None:
    """The backfill progress table with the feed index's GSI, as the CDK stack declares it
    (infra/torrent_service.py): the local stack's, and every test's that needs one."""
    feeds = feed_table_definition()
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "backfill_id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "backfill_id", "AttributeType": "S"},
            *feeds["AttributeDefinitions"],
        ],
        GlobalSecondaryIndexes=feeds["GlobalSecondaryIndexes"],
        BillingMode="PAY_PER_REQUEST",
    )
