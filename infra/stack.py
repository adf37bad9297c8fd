"""The stack: one `S3TorrentService` from the deploy settings, and what an operator needs out."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra.config import DeploySettings
from infra.torrent_service import S3TorrentService


class S3TorrentStack(cdk.Stack):
    """s3torrent in one account/region: composes the service and exports its endpoints."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploySettings, **kwargs: Any
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description="s3torrent: a BitTorrent .torrent next to every S3 object",
            **kwargs,
        )
        self.service = service = S3TorrentService(self, "S3Torrent", config=config)
        cdk.Tags.of(self).add("project", "s3torrent")
        outputs = {
            "ApiUrl": (service.api.url, "Invoke URL of the API (IAM auth: SigV4 for execute-api)"),
            "WorkerQueueUrl": (service.worker_queue.queue_url, "S3 events and torrent jobs"),
            "WorkerDeadLetterQueueUrl": (service.worker_dlq.queue_url, "Failed worker messages"),
            "BackfillQueueUrl": (service.backfill_queue.queue_url, "Backfill starts/continuations"),
            "BackfillDeadLetterQueueUrl": (service.backfill_dlq.queue_url, "Failed backfills"),
            "BackfillTableName": (service.table.table_name, "Backfill progress (DynamoDB)"),
            "WorkerFunctionArn": (
                service.worker.function.function_arn,
                "FunctionArn for an S3 Batch Operations LambdaInvoke job",
            ),
            "BatchOperationsRoleArn": (
                service.batch_role.role_arn,
                "RoleArn for s3control create-job (may invoke the worker)",
            ),
            "DashboardName": (service.monitoring.dashboard.dashboard_name, "CloudWatch dashboard"),
        }
        if service.created_bucket is not None:
            outputs["BucketName"] = (service.created_bucket.bucket_name, "The bucket created here")
        if service.monitoring.topic is not None:
            outputs["AlarmTopicArn"] = (service.monitoring.topic.topic_arn, "Alarm notifications")
        else:
            outputs["AlarmNotifications"] = (
                "none: alarm_email is not set, so the alarms notify nobody",
                "Deploy with -c alarm_email=you@example.com to be mailed when an alarm fires",
            )
        seed = service.web_seed_distribution
        if seed is not None:
            outputs["WebSeedDomainName"] = (
                seed.distribution.distribution_domain_name,
                "CloudFront domain serving the bucket's objects as the torrents' web seed",
            )
            outputs["WebSeedDistributionId"] = (
                seed.distribution.distribution_id,
                "For create-invalidation after replacing an object under the same key",
            )
            if seed.bucket is not service.created_bucket:
                outputs["WebSeedBucketPolicyStatement"] = (
                    seed.policy_statement_json(),
                    "Add this statement to the existing bucket's policy (the stack never "
                    "replaces it): it lets only this distribution read the configured prefixes",
                )
        for name, (value, description) in outputs.items():
            cdk.CfnOutput(self, name, value=value, description=description)
