"""Alarms an operator acts on, and one dashboard that shows the service working.

Alarms: anything in a dead-letter queue (an operator must look), worker/backfill errors,
throttles on any function, the worker queue falling behind, API 5XX. With `alarm_email` they
notify an SNS topic encrypted with a customer-managed key CloudWatch is allowed to use.
The dashboard reads the metrics the handlers publish with Powertools (namespace `s3torrent`,
dimension `service`), named by `s3torrent.observability.Metric`, the one list of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.functions import METRICS_NAMESPACE, SERVICE_NAME, TorrentFunction
from s3torrent.observability import Metric

FIVE_MINUTES = cdk.Duration.minutes(5)


@dataclass(frozen=True)
class Monitored:
    """What the monitoring watches."""

    api: TorrentFunction
    worker: TorrentFunction
    backfill: TorrentFunction
    worker_queue: sqs.IQueue
    worker_dlq: sqs.IQueue
    backfill_queue: sqs.IQueue
    backfill_dlq: sqs.IQueue
    rest_api: apigw.RestApi


def service_metric(
    metric: Metric, statistic: str = "Sum", label: str | None = None, *, for_alarm: bool = False
) -> cw.Metric:
    """One of the handlers' Powertools metrics; `for_alarm` leaves the label out (a labelled
    metric renders as metric math, which an alarm on one metric need not be)."""
    return cw.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=metric.value,
        dimensions_map={"service": SERVICE_NAME},
        statistic=statistic,
        period=FIVE_MINUTES,
        label=None if for_alarm else label or metric.value,
    )


class TorrentMonitoring(Construct):
    """Alarms (+ optional email topic) and the CloudWatch dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        watched: Monitored,
        alarm_email: str | None,
        queue_age_alarm_seconds: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = self._topic(alarm_email) if alarm_email else None
        if self.topic is None:
            cdk.Annotations.of(self).add_warning_v2(
                "s3torrent:alarmsNotifyNobody",
                "No alarm_email: the alarms change state on the dashboard but notify nobody "
                "(set alarm_email, or subscribe to the alarms yourself).",
            )
        self.alarms: list[cw.Alarm] = []
        w = watched

        for label, dlq in (("Worker", w.worker_dlq), ("Backfill", w.backfill_dlq)):
            self._alarm(
                f"{label}DeadLetters",
                dlq.metric_approximate_number_of_messages_visible(
                    period=FIVE_MINUTES, statistic="Maximum"
                ),
                threshold=1,
                description=f"Messages in the {label.lower()} dead-letter queue: an operator "
                "must look (they failed max_receive_count times).",
            )
        for label, fn in (("Worker", w.worker), ("Backfill", w.backfill), ("Api", w.api)):
            self._alarm(
                f"{label}Errors",
                fn.function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                threshold=1,
                description=f"The {label.lower()} function raised or timed out.",
            )
            self._alarm(
                f"{label}Throttles",
                fn.function.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
                threshold=1,
                description=f"The {label.lower()} function was throttled (account or reserved "
                "concurrency).",
            )
        self._alarm(
            "WorkerQueueAge",
            w.worker_queue.metric_approximate_age_of_oldest_message(
                period=FIVE_MINUTES, statistic="Maximum"
            ),
            threshold=queue_age_alarm_seconds,
            description=f"The oldest worker message waited over {queue_age_alarm_seconds} s: "
            "the worker is falling behind.",
        )
        self._alarm(
            "TorrentsFailed",
            service_metric(Metric.TORRENTS_FAILED, for_alarm=True),
            threshold=1,
            description="A message or task was acknowledged without a torrent because it can "
            "never succeed (a poison message, access denied: the worker's log says why). Wrong "
            "keys for an endpoint or a missing grant show here, not in the dead-letter queue.",
        )
        self._alarm(
            "ApiServerErrors",
            w.rest_api.metric_server_error(period=FIVE_MINUTES, statistic="Sum"),
            threshold=1,
            description="API Gateway answered 5XX (integration failure or timeout).",
        )
        self.dashboard = self._dashboard(w)

    def _topic(self, email: str) -> sns.Topic:
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="s3torrent alarm topic (CloudWatch alarms publish through it)",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            pending_window=cdk.Duration.days(7),
        )
        # CloudWatch cannot publish to a topic under the AWS-managed SNS key: it needs these.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}},
            )
        )
        topic = sns.Topic(
            self, "AlarmTopic", display_name="s3torrent alarms", master_key=key, enforce_ssl=True
        )
        topic.add_subscription(subs.EmailSubscription(email))
        return topic

    def _alarm(self, name: str, metric: cw.IMetric, *, threshold: float, description: str) -> None:
        alarm = cw.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        if self.topic is not None:
            alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
            alarm.add_ok_action(cw_actions.SnsAction(self.topic))
        self.alarms.append(alarm)

    def _dashboard(self, w: Monitored) -> cw.Dashboard:
        dashboard = cw.Dashboard(self, "Dashboard", default_interval=cdk.Duration.hours(3))
        throughput = cw.MathExpression(
            expression="IF(seconds > 0, bytes / seconds / 1000000, 0)",
            using_metrics={
                "bytes": service_metric(Metric.BYTES_HASHED),
                "seconds": service_metric(Metric.HASH_SECONDS),
            },
            label="Hashing throughput (MB/s)",
            period=FIVE_MINUTES,
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Torrents",
                left=[
                    service_metric(Metric.TORRENTS_CREATED, label="created"),
                    service_metric(Metric.TORRENTS_FRESH, label="already fresh"),
                    service_metric(Metric.TORRENTS_SKIPPED, label="skipped"),
                    service_metric(Metric.TORRENTS_DELETED, label="deleted"),
                    service_metric(Metric.TORRENTS_FAILED, label="failed"),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Bytes hashed",
                left=[service_metric(Metric.BYTES_HASHED, label="bytes hashed")],
                width=8,
            ),
            cw.GraphWidget(title="Hashing throughput (MB/s)", left=[throughput], width=8),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Failures",
                left=[
                    service_metric(Metric.TORRENTS_FAILED, label="torrents failed"),
                    w.worker.function.metric_errors(period=FIVE_MINUTES, label="worker errors"),
                    w.backfill.function.metric_errors(period=FIVE_MINUTES, label="backfill errors"),
                ],
                right=[
                    w.worker_dlq.metric_approximate_number_of_messages_visible(
                        period=FIVE_MINUTES, statistic="Maximum", label="worker DLQ"
                    ),
                    w.backfill_dlq.metric_approximate_number_of_messages_visible(
                        period=FIVE_MINUTES, statistic="Maximum", label="backfill DLQ"
                    ),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Queue age (s)",
                left=[
                    w.worker_queue.metric_approximate_age_of_oldest_message(
                        period=FIVE_MINUTES, statistic="Maximum", label="worker queue"
                    ),
                    w.backfill_queue.metric_approximate_age_of_oldest_message(
                        period=FIVE_MINUTES, statistic="Maximum", label="backfill queue"
                    ),
                ],
                right=[
                    w.worker_queue.metric_approximate_number_of_messages_visible(
                        period=FIVE_MINUTES, statistic="Maximum", label="worker backlog"
                    )
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="S3 reads",
                left=[service_metric(Metric.GET_REQUESTS, label="ranged GETs")],
                right=[service_metric(Metric.RANGE_RETRIES, label="range retries")],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Function duration p90 (ms)",
                left=[
                    fn.function.metric_duration(period=FIVE_MINUTES, statistic="p90", label=label)
                    for label, fn in (
                        ("api", w.api),
                        ("worker", w.worker),
                        ("backfill", w.backfill),
                    )
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="API requests",
                left=[w.rest_api.metric_count(period=FIVE_MINUTES, label="requests")],
                right=[
                    w.rest_api.metric_client_error(period=FIVE_MINUTES, label="4XX"),
                    w.rest_api.metric_server_error(period=FIVE_MINUTES, label="5XX"),
                ],
                width=8,
            ),
            cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=8),
        )
        return dashboard
