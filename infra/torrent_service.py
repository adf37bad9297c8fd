"""`S3TorrentService`: the whole service as one reusable construct, driven by `DeploySettings`.

S3 ObjectCreated/ObjectRemoved ──► worker queue (+DLQ) ──► worker
HTTPS (API Gateway, IAM) ───────────────────────────────► api ──► worker queue / backfill queue
EventBridge schedule ──► backfill ◄── backfill queue (+DLQ) (starts and continuations)
S3 Batch Operations (role output) ──────────────────────► worker
"""

from __future__ import annotations

import re
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk.interfaces import aws_s3 as s3_refs
from constructs import Construct

from infra import nag
from infra.access import BucketAccess, S3Grants
from infra.api import TorrentApi
from infra.config import DeploySettings
from infra.functions import TorrentFunction, lambda_code, powertools_layer_arn
from infra.monitoring import Monitored, TorrentMonitoring
from infra.web_seeds import WebSeedDistribution
from s3torrent.publishing import index as feed_index
from s3torrent.settings import BucketScope

HANDLERS = "s3torrent.handlers"
# AWS: set the source queue's visibility timeout to at least six times the function timeout.
VISIBILITY_FACTOR = 6
CREATED_BUCKET_LABEL = "<bucket created by this stack>"


@jsii.implements(s3.IBucketNotificationDestination)
class QueueDestination:
    """S3 notifications into an SQS queue, allowed from the bucket *and* its owner's account.

    `aws_s3_notifications.SqsDestination` conditions the queue policy on `aws:SourceArn`
    only; a bucket ARN carries no account, so a bucket of that name in another account (after
    this one's is deleted) could send. `aws:SourceAccount` closes that (AWS's confused-deputy
    advice for S3 event notifications). The queue is SSE-SQS: no KMS key policy to add.
    """

    def __init__(self, queue: sqs.IQueue) -> None:
        self.queue = queue

    def bind(
        self, scope: Construct, bucket: s3_refs.IBucketRef
    ) -> s3.BucketNotificationDestinationConfig:
        self.queue.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
                resources=[self.queue.queue_arn],
                conditions={
                    "ArnLike": {"aws:SourceArn": bucket.bucket_ref.bucket_arn},
                    "StringEquals": {"aws:SourceAccount": cdk.Stack.of(scope).account},
                },
            )
        )
        return s3.BucketNotificationDestinationConfig(
            arn=self.queue.queue_arn,
            type=s3.BucketNotificationDestinationType.QUEUE,
            dependencies=[self.queue],
        )


class S3TorrentService(Construct):
    """Functions, queues, table, API, notifications, schedule, IAM and monitoring of s3torrent."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploySettings,
        code: lambda_.Code | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.access_logs = self._access_log_bucket() if self._needs_access_logs() else None
        self.created_bucket = self._create_bucket() if config.creates_bucket else None
        self.scopes = self._bucket_scopes()
        self.web_seed_distribution = self._web_seed_distribution()

        self.worker_dlq, self.worker_queue = self._queue_pair(
            "Worker", visibility_seconds=VISIBILITY_FACTOR * config.worker_timeout_seconds
        )
        self.backfill_dlq, self.backfill_queue = self._queue_pair(
            "Backfill", visibility_seconds=VISIBILITY_FACTOR * config.backfill_timeout_seconds
        )
        self.table = dynamodb.Table(
            self,
            "Backfills",
            partition_key=dynamodb.Attribute(
                name="backfill_id", type=dynamodb.AttributeType.STRING
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute="expires_at",
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            # Progress records only (they expire by TTL); nothing to keep after teardown.
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        # The feed index (s3torrent/publishing/index.py): one item per torrent and folder above
        # it; this index orders each folder's newest first, so a feed is one Query.
        self.table.add_global_secondary_index(
            index_name=feed_index.INDEX_NAME,
            partition_key=dynamodb.Attribute(
                name=feed_index.SCOPE_ATTRIBUTE, type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(
                name=feed_index.ORDER_ATTRIBUTE, type=dynamodb.AttributeType.STRING
            ),
            projection_type=dynamodb.ProjectionType.ALL,
        )

        environment = self._environment()
        shared: dict[str, Any] = {
            "code": code or lambda_code(),
            "layer": lambda_.LayerVersion.from_layer_version_arn(
                self, "Powertools", powertools_layer_arn(self, config.powertools_layer_version)
            ),
            "environment": environment,
            "log_retention_days": config.log_retention_days,
            "log_level": config.log_level,
        }
        self.api_function = TorrentFunction(
            self,
            "Api",
            handler=f"{HANDLERS}.api.lambda_handler",
            description="s3torrent API: ?torrent, /torrents, /backfills, /openapi.json",
            memory_mb=config.api_memory_mb,
            timeout_seconds=config.api_timeout_seconds,
            **shared,
        )
        self.worker = TorrentFunction(
            self,
            "Worker",
            handler=f"{HANDLERS}.worker.lambda_handler",
            description="s3torrent worker: S3 events, jobs and S3 Batch Operations tasks",
            memory_mb=config.worker_memory_mb,
            timeout_seconds=config.worker_timeout_seconds,
            **shared,
        )
        self.backfill = TorrentFunction(
            self,
            "Backfill",
            handler=f"{HANDLERS}.backfill.lambda_handler",
            description="s3torrent backfill: walks buckets/prefixes and queues missing torrents",
            memory_mb=config.backfill_memory_mb,
            timeout_seconds=config.backfill_timeout_seconds,
            **shared,
        )
        self._grant()
        self._wire_events()
        self.api = TorrentApi(self, "Http", config=config, handler=self.api_function)
        self.batch_role = self._batch_operations_role()
        self.monitoring = TorrentMonitoring(
            self,
            "Monitoring",
            watched=Monitored(
                api=self.api_function,
                worker=self.worker,
                backfill=self.backfill,
                worker_queue=self.worker_queue,
                worker_dlq=self.worker_dlq,
                backfill_queue=self.backfill_queue,
                backfill_dlq=self.backfill_dlq,
                rest_api=self.api.rest_api,
            ),
            alarm_email=config.alarm_email,
            queue_age_alarm_seconds=config.queue_age_alarm_seconds,
        )
        self._acknowledge_cdk_internals()

    # --- buckets -----------------------------------------------------------------------------

    def _needs_access_logs(self) -> bool:
        return self.config.creates_bucket or bool(self.config.cloudfront_buckets())

    def _access_log_bucket(self) -> s3.Bucket:
        """S3 server access logs of the created bucket and the web seed distribution's logs."""
        bucket = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(365))],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        if not self.config.creates_bucket:
            nag.acknowledge(
                bucket,
                "S1",
                "This bucket is the log destination (the web seed distribution's access logs); "
                "logging its own accesses would need yet another bucket and so on. Objects "
                "expire after 365 days; TLS only, encrypted, no public access.",
            )
        return bucket

    def _create_bucket(self) -> s3.Bucket:
        return s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="s3torrent-bucket/",
            removal_policy=cdk.RemovalPolicy.RETAIN,  # user data: never deleted by a teardown
        )

    def _bucket_scopes(self) -> list[BucketAccess]:
        if not self.config.on_aws_s3:
            return []  # buckets on another store: no AWS ARNs to grant or notify
        scopes = [
            BucketAccess(
                bucket=s3.Bucket.from_bucket_name(self, f"Imported-{name}", name),
                prefixes=prefixes,
                label=name,
            )
            for name, prefixes in self.config.scopes_by_bucket().items()
        ]
        if self.created_bucket is not None:
            scopes.append(
                BucketAccess(bucket=self.created_bucket, prefixes=("",), label=CREATED_BUCKET_LABEL)
            )
        return scopes

    def _web_seed_distribution(self) -> WebSeedDistribution | None:
        """CloudFront with OAC in front of the one bucket whose web seed origin is cloudfront."""
        if not self.config.cloudfront_buckets():
            return None
        created = self.created_bucket is not None and (
            self.config.web_seed_origin_for(created=True) == "cloudfront"
        )
        scope = next(s for s in self.scopes if (s.bucket is self.created_bucket) == created)
        assert self.access_logs is not None  # _needs_access_logs() made it
        return WebSeedDistribution(
            self,
            "WebSeed",
            bucket=scope.bucket,
            prefixes=scope.prefixes,
            label=scope.label,
            log_bucket=self.access_logs,
            owns_bucket_policy=created,
        )

    def web_seed_templates(self) -> tuple[str, ...]:
        """The runtime web_seeds: one template per origin in use (created and existing buckets)."""
        settings = self.config.settings
        if not self.config.manages_web_seeds:
            return settings.web_seeds
        origins_in_use = []
        if self.created_bucket is not None:
            origins_in_use.append(self.config.web_seed_origin_for(created=True))
        if settings.buckets:
            origins_in_use.append(self.config.web_seed_origin_for(created=False))
        templates: list[str] = []
        for origin in origins_in_use:
            if origin == "none":
                continue
            if origin == "cloudfront":
                assert self.web_seed_distribution is not None
                template = self.web_seed_distribution.web_seed
            elif origin == "bucket":
                template = "{bucket_url}/{folder}"
            else:
                template = origin
            if template not in templates:
                templates.append(template)
        if len(templates) > 1:
            cdk.Annotations.of(self).add_warning_v2(
                "s3torrent:mixedWebSeeds",
                "The runtime's web_seeds apply to every bucket, and the created bucket and the "
                f"existing ones use different origins: every torrent lists {len(templates)} web "
                "seeds, of which one answers 403/404 for objects of the other buckets (clients "
                "skip a failing web seed). Set web_seed_origin to use one origin everywhere.",
            )
        return tuple(templates)

    # --- queues, environment -------------------------------------------------------------------

    def _queue_pair(self, label: str, *, visibility_seconds: int) -> tuple[sqs.Queue, sqs.Queue]:
        dlq = sqs.Queue(
            self,
            f"{label}DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        queue = sqs.Queue(
            self,
            f"{label}Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,  # S3 notifications can use SSE-SQS
            enforce_ssl=True,
            visibility_timeout=cdk.Duration.seconds(visibility_seconds),
            retention_period=cdk.Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=dlq, max_receive_count=self.config.max_receive_count
            ),
        )
        return dlq, queue

    def _environment(self) -> dict[str, str]:
        settings = self.config.settings
        buckets = settings.buckets
        if self.created_bucket is not None:
            # The generated name is a deploy-time token: bypass the name pattern on purpose.
            created = BucketScope.model_construct(name=self.created_bucket.bucket_name, prefix="")
            buckets = (*buckets, created)
        runtime = settings.model_copy(
            update={
                "buckets": buckets,
                "web_seeds": self.web_seed_templates(),
                "region": cdk.Stack.of(self).region,
                "queue_url": self.worker_queue.queue_url,
                "backfill_queue_url": self.backfill_queue.queue_url,
                "backfill_table": self.table.table_name,
                "job_max_receives": self.config.max_receive_count,
                "job_visibility_seconds": VISIBILITY_FACTOR * self.config.worker_timeout_seconds,
                # An endpoint_url store's key pair: the functions may read this secret only.
                "endpoint_credentials_secret": self.config.endpoint_credentials_secret_arn,
            }
        )
        return runtime.to_env()

    # --- IAM ----------------------------------------------------------------------------------

    def _grant(self) -> None:
        grants = S3Grants(
            self.scopes,
            kms_key_arns=self.config.kms_key_arns,
            native_torrents=self.config.settings.torrent_source != "compute",
        )
        # api: answers ?torrent and POST /torrents inline (may write the torrent), queues work.
        grants.read_sources(self.api_function)
        grants.write_torrents(self.api_function, delete=False)
        grants.list_for_not_found(self.api_function)
        grants.kms(self.api_function)
        self.worker_queue.grant_send_messages(self.api_function.role)
        self.backfill_queue.grant_send_messages(self.api_function.role)
        self._table_access(self.api_function, "GetItem", "PutItem", "UpdateItem")
        # Feeds query the index, pages look entries up; torrents made inline are listed.
        self._feed_access(self.api_function, "BatchGetItem", "BatchWriteItem", query=True)
        self._record_access(self.api_function)  # collections made inline reuse their records
        secret = self.config.endpoint_credentials_secret_arn
        if secret:
            for fn in (self.api_function, self.worker, self.backfill):
                nag.grant(
                    fn,
                    fn.role,
                    iam.PolicyStatement(
                        sid="ReadEndpointCredentials",
                        actions=["secretsmanager:GetSecretValue"],
                        resources=[secret],
                    ),
                )
        # worker: hashes, writes and (on ObjectRemoved) deletes torrents; counts backfill jobs.
        grants.read_sources(self.worker)
        grants.write_torrents(self.worker, delete=True)
        grants.list_for_not_found(self.worker)
        grants.kms(self.worker)
        self._table_access(self.worker, "UpdateItem")
        self._feed_access(self.worker, "BatchWriteItem")  # lists and unlists torrents in feeds
        fans_out = self.config.settings.fanout_part_bytes > 0
        if self.config.settings.collections or fans_out:
            # Kept collections: a change sends a delayed rebuild to this very queue (debounced
            # by a mark: UpdateItem, above), which reads and saves the collection's records.
            # Fan-out: a big build sends its parts to this very queue (docs/fanout.md).
            self.worker_queue.grant_send_messages(self.worker.role)
            self._record_access(self.worker)
        if fans_out:
            self._fanout_access(self.worker)
        # backfill: decides from the listing alone (planner.py), so ListBucket is all it reads.
        grants.list_prefixes(self.backfill)
        self.worker_queue.grant_send_messages(self.backfill.role)
        self.backfill_queue.grant_send_messages(self.backfill.role)
        self._table_access(self.backfill, "GetItem", "PutItem", "UpdateItem")
        self._feed_access(self.backfill, "BatchGetItem")  # fresh torrents: are they listed?

    def _table_access(self, fn: TorrentFunction, *actions: str) -> None:
        nag.grant(
            fn,
            fn.role,
            iam.PolicyStatement(
                sid="BackfillProgress",
                actions=[f"dynamodb:{action}" for action in actions],
                resources=[self.table.table_arn],
            ),
        )

    def _record_access(self, fn: TorrentFunction) -> None:
        # Collections' hash records (s3torrent/collections/record_store.py): an item, or
        # chunk items of which the previous generation's are deleted.
        nag.grant(
            fn,
            fn.role,
            iam.PolicyStatement(
                sid="CollectionRecords",
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
                resources=[self.table.table_arn],
            ),
        )

    def _fanout_access(self, fn: TorrentFunction) -> None:
        # Fan-out builds (s3torrent/fanout/store.py): a status item counted with UpdateItem,
        # the manifest (GetItem, PutItem, DeleteItem, as collection records), part records
        # read back in batches of 100 and deleted in batches of 25.
        nag.grant(
            fn,
            fn.role,
            iam.PolicyStatement(
                sid="FanoutBuilds",
                actions=["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"],
                resources=[self.table.table_arn],
            ),
        )

    def _feed_access(self, fn: TorrentFunction, *actions: str, query: bool = False) -> None:
        nag.grant(
            fn,
            fn.role,
            iam.PolicyStatement(
                sid="FeedIndexItems",
                actions=[f"dynamodb:{action}" for action in actions],
                resources=[self.table.table_arn],
            ),
        )
        if query:
            nag.grant(
                fn,
                fn.role,
                iam.PolicyStatement(
                    sid="FeedIndexQuery",
                    actions=["dynamodb:Query"],
                    resources=[f"{self.table.table_arn}/index/{feed_index.INDEX_NAME}"],
                ),
            )

    # --- event wiring ------------------------------------------------------------------------

    def _wire_events(self) -> None:
        destination = QueueDestination(self.worker_queue)
        for scope in self.scopes:
            for prefix in scope.prefixes:
                # S3 filters can only include a prefix/suffix, never exclude `.torrent`: the
                # worker's own writes come back as events and the worker skips them in code.
                filters = [s3.NotificationKeyFilter(prefix=prefix)] if prefix else []
                for event in (s3.EventType.OBJECT_CREATED, s3.EventType.OBJECT_REMOVED):
                    scope.bucket.add_event_notification(event, destination, *filters)
        self.worker.function.add_event_source(
            sources.SqsEventSource(
                self.worker_queue,
                batch_size=self.config.worker_batch_size,
                report_batch_item_failures=True,
                max_concurrency=self.config.worker_max_concurrency,
            )
        )
        self.backfill.function.add_event_source(
            sources.SqsEventSource(
                self.backfill_queue, batch_size=1, report_batch_item_failures=True
            )
        )
        # A scheduled start that keeps failing ends in the backfill DLQ (and its alarm).
        self.backfill.function.configure_async_invoke(
            retry_attempts=2,
            max_event_age=cdk.Duration.hours(1),
            on_failure=destinations.SqsDestination(self.backfill_dlq),
        )
        if self.config.backfill_schedule:
            self.schedule: events.Rule | None = events.Rule(
                self,
                "BackfillSchedule",
                description="s3torrent: backfill every configured bucket/prefix",
                schedule=events.Schedule.expression(self.config.backfill_schedule),
                targets=[
                    targets.LambdaFunction(
                        self.backfill.function,
                        retry_attempts=2,
                        max_event_age=cdk.Duration.hours(1),
                        dead_letter_queue=self.backfill_dlq,
                    )
                ],
            )
        else:
            self.schedule = None

    def _batch_operations_role(self) -> iam.Role:
        """The role S3 Batch Operations assumes to invoke the worker (LambdaInvoke, schema 2.0)."""
        role = iam.Role(
            self,
            "BatchOperationsRole",
            description="S3 Batch Operations: invoke the s3torrent worker per inventory entry",
            assumed_by=iam.ServicePrincipal("batchoperations.s3.amazonaws.com").with_conditions(
                {"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}}
            ),
        )
        nag.grant(
            role,
            role,
            iam.PolicyStatement(
                sid="InvokeWorker",
                actions=["lambda:InvokeFunction"],
                resources=[self.worker.function.function_arn],
            ),
        )
        bucket = self.config.batch_manifest_bucket
        if bucket:
            manifests = s3.Bucket.from_bucket_name(self, "BatchManifestBucket", bucket)
            nag.grant(
                role,
                role,
                iam.PolicyStatement(
                    sid="ReadManifests",
                    actions=["s3:GetObject", "s3:GetObjectVersion"],
                    resources=[manifests.arn_for_objects("*")],
                ),
                reason=(
                    "S3 Batch Operations reads the job manifest (an S3 Inventory manifest.json "
                    f"and the inventory files it lists) from s3://{bucket}, the bucket the "
                    "operator named for manifests; inventory file keys are dated and generated "
                    "by S3, so they are not known at deploy time. Read-only."
                ),
            )
            report_prefix = self.config.batch_report_prefix
            nag.grant(
                role,
                role,
                iam.PolicyStatement(
                    sid="WriteReports",
                    actions=["s3:PutObject"],
                    resources=[manifests.arn_for_objects(f"{report_prefix}*")],
                ),
                reason=(
                    f"S3 Batch Operations writes its completion report under "
                    f"s3://{bucket}/{report_prefix} (job-id keys chosen by S3); only that prefix."
                ),
            )
            nag.grant(
                role,
                role,
                iam.PolicyStatement(
                    sid="ReportBucketLocation",
                    actions=["s3:GetBucketLocation"],
                    resources=[manifests.bucket_arn],
                ),
            )
        return role

    def _acknowledge_cdk_internals(self) -> None:
        """Findings on resources CDK itself adds (the bucket-notifications custom resource)."""
        stack = cdk.Stack.of(self)
        for child in stack.node.children:
            if re.match(r"^BucketNotificationsHandler[0-9a-f]{32}$", child.node.id):
                nag.acknowledge(
                    child,
                    "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AWSLambdaBasicExecutionRole]",
                    "CDK's own bucket-notifications custom resource (runs only during deploys): "
                    "CDK attaches AWSLambdaBasicExecutionRole to it, which allows writing its "
                    "CloudWatch logs only; its S3 rights are Get/PutBucketNotification on the "
                    "configured buckets' ARNs.",
                )
