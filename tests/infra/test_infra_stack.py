"""The stack's wiring: queues and DLQs, event sources, schedule, notifications, functions, API,
table, alarms, dashboard, outputs and the cdk-nag report (the Lambda asset: test_infra_asset)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from tests.support.synth import (
    ENDPOINT_SECRET,
    Synth,
    as_list,
    flat,
    grants,
    logical_id,
    one,
    resources,
    session_synth,
    text,
)

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def synth() -> Synth:
    return session_synth()


@pytest.fixture(scope="module")
def full(synth: Synth) -> dict[str, Any]:
    return synth.full


@pytest.fixture(scope="module")
def default(synth: Synth) -> dict[str, Any]:
    return synth.default


@pytest.fixture(scope="module")
def endpoint(synth: Synth) -> dict[str, Any]:
    return synth.endpoint


WORKER_TIMEOUT = 900
BACKFILL_TIMEOUT = 900


# --- queues -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label,timeout", [("Worker", WORKER_TIMEOUT), ("Backfill", BACKFILL_TIMEOUT)]
)
def test_queue_has_dlq_redrive_and_six_times_the_function_timeout(
    full: dict[str, Any], label: str, timeout: int
) -> None:
    _, queue = one(full, "AWS::SQS::Queue", f"S3Torrent{label}Queue")
    dlq_id, dlq = one(full, "AWS::SQS::Queue", f"S3Torrent{label}DeadLetters")
    props = queue["Properties"]
    assert props["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": 5,
    }
    assert props["VisibilityTimeout"] >= 6 * timeout
    function = one(full, "AWS::Lambda::Function", f"S3Torrent{label}Function")[1]
    assert function["Properties"]["Timeout"] == timeout
    # The worker knows when a delivery is the last before the DLQ (see s3torrent.worker).
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["S3TORRENT_JOB_MAX_RECEIVES"] == str(props["RedrivePolicy"]["maxReceiveCount"])
    assert props["VisibilityTimeout"] == 6 * function["Properties"]["Timeout"]
    assert props["SqsManagedSseEnabled"] is True
    assert dlq["Properties"]["SqsManagedSseEnabled"] is True
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_every_queue_refuses_requests_without_tls(full: dict[str, Any]) -> None:
    queues = set(resources(full, "AWS::SQS::Queue"))
    enforced = set()
    for policy in resources(full, "AWS::SQS::QueuePolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}:
                assert statement["Effect"] == "Deny"
                enforced.update(q["Ref"] for q in policy["Properties"]["Queues"])
    assert enforced == queues


def test_worker_consumes_with_partial_batch_responses(full: dict[str, Any], synth: Synth) -> None:
    worker = logical_id(full, "AWS::Lambda::Function", "S3TorrentWorkerFunction")
    queue = logical_id(full, "AWS::SQS::Queue", "S3TorrentWorkerQueue")
    synth.full_template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": {"Ref": worker},
            "EventSourceArn": {"Fn::GetAtt": [queue, "Arn"]},
            "BatchSize": 5,  # <= maxReceiveCount: a timed-out batch still converges
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": 20},
        },
    )
    backfill = logical_id(full, "AWS::Lambda::Function", "S3TorrentBackfillFunction")
    backfill_queue = logical_id(full, "AWS::SQS::Queue", "S3TorrentBackfillQueue")
    synth.full_template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": {"Ref": backfill},
            "EventSourceArn": {"Fn::GetAtt": [backfill_queue, "Arn"]},
            "BatchSize": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )
    assert len(resources(full, "AWS::Lambda::EventSourceMapping")) == 2


# --- schedule ---------------------------------------------------------------------------------


def test_schedule_starts_the_backfill_with_retries_and_a_dlq(full: dict[str, Any]) -> None:
    _, rule = one(full, "AWS::Events::Rule", "BackfillSchedule")
    props = rule["Properties"]
    assert props["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert props["State"] == "ENABLED"
    (target,) = props["Targets"]
    backfill = logical_id(full, "AWS::Lambda::Function", "S3TorrentBackfillFunction")
    dlq = logical_id(full, "AWS::SQS::Queue", "S3TorrentBackfillDeadLetters")
    assert target["Arn"] == {"Fn::GetAtt": [backfill, "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq, "Arn"]}}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 2}
    _, invoke_config = one(full, "AWS::Lambda::EventInvokeConfig", "Backfill")
    assert invoke_config["Properties"]["MaximumRetryAttempts"] == 2
    destination = invoke_config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == {"Fn::GetAtt": [dlq, "Arn"]}


def test_a_bare_deploy_backfills_daily(default: dict[str, Any]) -> None:
    _, rule = one(default, "AWS::Events::Rule", "BackfillSchedule")
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 day)"


# --- bucket notifications ---------------------------------------------------------------------


def notification_configs(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        flat(r["Properties"]["BucketName"]): r["Properties"]
        for r in resources(template, "Custom::S3BucketNotifications").values()
    }


def test_notifications_per_configured_prefix_into_the_worker_queue(full: dict[str, Any]) -> None:
    queue = logical_id(full, "AWS::SQS::Queue", "S3TorrentWorkerQueue")
    created = logical_id(full, "AWS::S3::Bucket", "S3TorrentBucket")
    configs = notification_configs(full)
    assert set(configs) == {"media-archive", "datasets.example", f"<{created}>"}

    def summary(bucket: str) -> set[tuple[str, str | None]]:
        entries = configs[bucket]["NotificationConfiguration"]["QueueConfigurations"]
        out = set()
        for entry in entries:
            assert entry["QueueArn"] == {"Fn::GetAtt": [queue, "Arn"]}
            (event,) = entry["Events"]
            rules = entry.get("Filter", {}).get("Key", {}).get("FilterRules", [])
            assert all(rule["Name"] == "prefix" for rule in rules)  # never a suffix filter
            out.add((event, rules[0]["Value"] if rules else None))
        return out

    both = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
    assert summary("media-archive") == {(e, p) for e in both for p in ("audio/", "videos/")}
    assert summary("datasets.example") == {(e, None) for e in both}
    assert summary(f"<{created}>") == {(e, None) for e in both}


def test_imported_buckets_keep_other_consumers_notifications(full: dict[str, Any]) -> None:
    # Managed=false makes CDK's handler read the bucket's configuration and merge: it keeps every
    # notification it did not create (aws-s3 notifications-resource-handler, handle_unmanaged).
    configs = notification_configs(full)
    assert configs["media-archive"]["Managed"] is False
    assert configs["datasets.example"]["Managed"] is False
    handler = next(
        r
        for lid, r in resources(full, "AWS::Lambda::Function").items()
        if lid.startswith("BucketNotificationsHandler")
    )
    code = handler["Properties"]["Code"]["ZipFile"]
    assert "def handle_unmanaged" in code and "get_bucket_notification_configuration" in code


def test_s3_may_send_to_the_worker_queue_only_from_the_configured_buckets(
    full: dict[str, Any],
) -> None:
    queue = logical_id(full, "AWS::SQS::Queue", "S3TorrentWorkerQueue")
    sources = set()
    for policy in resources(full, "AWS::SQS::QueuePolicy").values():
        if {"Ref": queue} not in policy["Properties"]["Queues"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Principal") == {"Service": "s3.amazonaws.com"}:
                assert statement["Effect"] == "Allow"
                assert "sqs:SendMessage" in as_list(statement["Action"])
                assert statement["Condition"]["StringEquals"] == {
                    "aws:SourceAccount": {"Ref": "AWS::AccountId"}
                }
                sources.add(flat(statement["Condition"]["ArnLike"]["aws:SourceArn"]))
    created = logical_id(full, "AWS::S3::Bucket", "S3TorrentBucket")
    assert sources == {
        "arn:<AWS::Partition>:s3:::media-archive",
        "arn:<AWS::Partition>:s3:::datasets.example",
        f"<{created}.Arn>",
    }


# --- functions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label,handler,memory,timeout",
    [
        ("Api", "s3torrent.handlers.api.lambda_handler", 1769, 29),
        ("Worker", "s3torrent.handlers.worker.lambda_handler", 3008, 900),
        ("Backfill", "s3torrent.handlers.backfill.lambda_handler", 512, 900),
    ],
)
def test_function_defaults(
    full: dict[str, Any], label: str, handler: str, memory: int, timeout: int
) -> None:
    _, fn = one(full, "AWS::Lambda::Function", f"S3Torrent{label}Function")
    props = fn["Properties"]
    assert props["Handler"] == handler
    assert props["Runtime"] == "python3.14"
    assert props["Architectures"] == ["arm64"]
    assert props["MemorySize"] == memory
    assert props["Timeout"] == timeout
    assert props["TracingConfig"] == {"Mode": "Active"}
    log_group = logical_id(full, "AWS::Logs::LogGroup", f"S3Torrent{label}Logs")
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": log_group}
    (layer,) = props["Layers"]
    assert flat(layer) == (
        'arn:<AWS::Partition>:lambda:<AWS::Region>:{"Fn::If":["S3TorrentInChina",'
        '"498634801083","017000801446"]}:layer:AWSLambdaPowertoolsPythonV3-python314-arm64:38'
    )
    assert full["Conditions"]["S3TorrentInChina"] == {
        "Fn::Equals": [{"Ref": "AWS::Partition"}, "aws-cn"]
    }
    assert "S3TorrentPowertoolsLayerRegion" in full["Rules"]  # elsewhere: the deploy says why
    role = logical_id(full, "AWS::IAM::Role", f"S3Torrent{label}Role")
    assert props["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    env = props["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "s3torrent"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "s3torrent"
    assert env["S3TORRENT_TORRENT_SOURCE"] == "auto"
    assert json.loads(env["S3TORRENT_TRACKERS"]) == ["udp://tracker.example:1337/announce"]
    assert env["S3TORRENT_QUEUE_URL"] == {
        "Ref": logical_id(full, "AWS::SQS::Queue", "S3TorrentWorkerQueue")
    }
    assert env["S3TORRENT_BACKFILL_QUEUE_URL"] == {
        "Ref": logical_id(full, "AWS::SQS::Queue", "S3TorrentBackfillQueue")
    }
    assert env["S3TORRENT_BACKFILL_TABLE"] == {
        "Ref": logical_id(full, "AWS::DynamoDB::Table", "Backfills")
    }
    assert env["S3TORRENT_REGION"] == {"Ref": "AWS::Region"}
    _, group = one(full, "AWS::Logs::LogGroup", f"S3Torrent{label}Logs")
    assert group["Properties"]["RetentionInDays"] == 30


def test_functions_receive_the_allowlist_including_the_created_bucket(full: dict[str, Any]) -> None:
    _, fn = one(full, "AWS::Lambda::Function", "S3TorrentWorkerFunction")
    created = logical_id(full, "AWS::S3::Bucket", "S3TorrentBucket")
    buckets = json.loads(text(fn["Properties"]["Environment"]["Variables"]["S3TORRENT_BUCKETS"]))
    assert {(b["name"], b["prefix"]) for b in buckets} == {
        ("media-archive", "videos/"),
        ("media-archive", "videos/2024/"),
        ("media-archive", "audio/"),
        ("datasets.example", ""),
        (f"<{created}>", ""),
    }
    public = json.loads(fn["Properties"]["Environment"]["Variables"]["S3TORRENT_PUBLIC_PREFIXES"])
    assert public == [{"name": "media-archive", "prefix": "videos/public/"}]


def test_runtime_settings_round_trip_through_the_environment(full: dict[str, Any]) -> None:
    from s3torrent.settings import Settings

    _, fn = one(full, "AWS::Lambda::Function", "S3TorrentApiFunction")
    env = {
        k: v for k, v in fn["Properties"]["Environment"]["Variables"].items() if isinstance(v, str)
    }
    settings = Settings.from_env(env)
    assert settings.torrent_source == "auto"
    assert settings.is_public("media-archive", "videos/public/a.mp4")
    assert not settings.is_public("media-archive", "videos/private/a.mp4")


# --- API --------------------------------------------------------------------------------------


def methods(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(verb, path) -> method properties, paths rebuilt from the resource tree."""
    api_resources = resources(template, "AWS::ApiGateway::Resource")

    def path(ref: Any) -> str:
        if "Fn::GetAtt" in ref:
            return ""
        node = api_resources[ref["Ref"]]["Properties"]
        return f"{path(node['ParentId'])}/{node['PathPart']}"

    return {
        (m["Properties"]["HttpMethod"], path(m["Properties"]["ResourceId"]) or "/"): m["Properties"]
        for m in resources(template, "AWS::ApiGateway::Method").values()
    }


ROUTES = {
    ("GET", "/{bucket}/{key+}"),
    ("POST", "/torrents"),
    ("GET", "/torrents/{bucket}/{key+}"),
    ("POST", "/backfills"),
    ("GET", "/backfills/{id}"),
    ("GET", "/openapi.json"),
    ("GET", "/feeds/{bucket}"),
    ("GET", "/feeds/{bucket}/{prefix+}"),
    ("GET", "/browse/{bucket}"),
    ("GET", "/browse/{bucket}/{prefix+}"),
}
# Feeds and pages are anonymous exactly when `?torrent` is (docs/publishing.md).
PUBLISHING = {route for route in ROUTES if route[1].startswith(("/feeds/", "/browse/"))}


def test_default_api_requires_iam_on_every_method(default: dict[str, Any]) -> None:
    found = methods(default)
    assert set(found) == ROUTES
    for route, props in found.items():
        assert props["AuthorizationType"] == "AWS_IAM", route
        assert props["Integration"]["Type"] == "AWS_PROXY", route
        assert "RequestValidatorId" in props, route


def test_public_prefixes_open_only_the_s3_compatible_route(full: dict[str, Any]) -> None:
    found = methods(full)
    assert set(found) == ROUTES
    auth = {route: props["AuthorizationType"] for route, props in found.items()}
    assert auth.pop(("GET", "/{bucket}/{key+}")) == "NONE"
    for route in PUBLISHING:
        assert auth.pop(route) == "NONE", route
    assert set(auth.values()) == {"AWS_IAM"}
    s3_route = found[("GET", "/{bucket}/{key+}")]
    assert s3_route["RequestParameters"] == {
        "method.request.path.bucket": True,
        "method.request.path.key": True,
        "method.request.querystring.torrent": False,
        "method.request.header.x-amz-request-payer": False,
        "method.request.header.x-amz-expected-bucket-owner": False,
    }


def test_api_is_regional_binary_throttled_logged_traced(full: dict[str, Any], synth: Synth) -> None:
    _, api = one(full, "AWS::ApiGateway::RestApi", "Api")
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert api["Properties"]["BinaryMediaTypes"] == ["application/x-bittorrent", "*/*"]
    _, stage = one(full, "AWS::ApiGateway::Stage", "Stage")
    props = stage["Properties"]
    assert props["StageName"] == "prod"
    assert props["TracingEnabled"] is True
    (settings,) = props["MethodSettings"]
    assert settings == {
        "DataTraceEnabled": False,
        "HttpMethod": "*",
        "LoggingLevel": "ERROR",
        "MetricsEnabled": True,
        "ResourcePath": "/*",
        "ThrottlingBurstLimit": 100,
        "ThrottlingRateLimit": 50,
    }
    access = props["AccessLogSetting"]
    access_group = logical_id(full, "AWS::Logs::LogGroup", "AccessLogs")
    assert text(access["DestinationArn"]).endswith(f":log-group:<{access_group}>")
    assert json.loads(access["Format"])["userArn"] == "$context.identity.userArn"
    synth.full_template.has_resource_properties(
        "AWS::ApiGateway::RequestValidator",
        {"ValidateRequestBody": True, "ValidateRequestParameters": True},
    )
    synth.full_template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Action": "lambda:InvokeFunction", "Principal": "apigateway.amazonaws.com"},
    )


# --- table ------------------------------------------------------------------------------------


def test_backfill_table(synth: Synth) -> None:
    synth.full_template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "backfill_id", "KeyType": "HASH"}],
            "AttributeDefinitions": [
                {"AttributeName": "backfill_id", "AttributeType": "S"},
                {"AttributeName": "feed_scope", "AttributeType": "S"},
                {"AttributeName": "feed_order", "AttributeType": "S"},
            ],
            # The feed index (docs/publishing.md): newest first per bucket/folder scope.
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "feeds",
                    "KeySchema": [
                        {"AttributeName": "feed_scope", "KeyType": "HASH"},
                        {"AttributeName": "feed_order", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
    )


# --- monitoring -------------------------------------------------------------------------------


def alarm_metrics(template: dict[str, Any]) -> dict[str, tuple[str, str, float]]:
    """Alarm logical id -> (namespace, metric, threshold)."""
    return {
        lid: (
            r["Properties"]["Namespace"],
            r["Properties"]["MetricName"],
            r["Properties"]["Threshold"],
        )
        for lid, r in resources(template, "AWS::CloudWatch::Alarm").items()
    }


def test_alarms(full: dict[str, Any]) -> None:
    alarms = alarm_metrics(full)
    by_name = {
        lid.split("Monitoring")[1].rstrip("0123456789ABCDEF"): v for lid, v in alarms.items()
    }
    assert by_name == {
        "WorkerDeadLetters": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", 1),
        "BackfillDeadLetters": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", 1),
        "WorkerErrors": ("AWS/Lambda", "Errors", 1),
        "BackfillErrors": ("AWS/Lambda", "Errors", 1),
        "ApiErrors": ("AWS/Lambda", "Errors", 1),
        "WorkerThrottles": ("AWS/Lambda", "Throttles", 1),
        "BackfillThrottles": ("AWS/Lambda", "Throttles", 1),
        "ApiThrottles": ("AWS/Lambda", "Throttles", 1),
        "WorkerQueueAge": ("AWS/SQS", "ApproximateAgeOfOldestMessage", 3600),
        "ApiServerErrors": ("AWS/ApiGateway", "5XXError", 1),
        "TorrentsFailed": ("s3torrent", "TorrentsFailed", 1),
    }
    topic = logical_id(full, "AWS::SNS::Topic", "AlarmTopic")
    for lid, alarm in resources(full, "AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold", lid
        assert props["TreatMissingData"] == "notBreaching", lid
        assert props["AlarmActions"] == [{"Ref": topic}], lid


def test_dlq_alarm_watches_the_dlq(full: dict[str, Any]) -> None:
    dlq = logical_id(full, "AWS::SQS::Queue", "S3TorrentWorkerDeadLetters")
    _, alarm = one(full, "AWS::CloudWatch::Alarm", "WorkerDeadLetters")
    assert alarm["Properties"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}
    ]


def test_alarm_topic_is_encrypted_tls_only_and_mailed(full: dict[str, Any], synth: Synth) -> None:
    key = logical_id(full, "AWS::KMS::Key", "AlarmTopicKey")
    synth.full_template.has_resource_properties(
        "AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key, "Arn"]}}
    )
    synth.full_template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
    synth.full_template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    key_policy = one(full, "AWS::KMS::Key", "AlarmTopicKey")[1]["Properties"]["KeyPolicy"]
    principals = [s.get("Principal") for s in key_policy["Statement"]]
    assert {"Service": "cloudwatch.amazonaws.com"} in principals
    synth.full_template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": Match.object_like(
                {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                }
            )
        },
    )


def test_no_alarm_actions_without_email(default: dict[str, Any]) -> None:
    assert resources(default, "AWS::SNS::Topic") == {}
    for alarm in resources(default, "AWS::CloudWatch::Alarm").values():
        assert "AlarmActions" not in alarm["Properties"]


def dashboard_metrics(template: dict[str, Any]) -> list[list[Any]]:
    """Every metric line of every dashboard widget: [namespace, name, dim, value, ..., options]."""
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = json.loads(text(dashboard["Properties"]["DashboardBody"]))
    return [
        line
        for widget in body["widgets"]
        for line in widget["properties"].get("metrics", [])
        if isinstance(line[0], str)  # not a math expression
    ]


def test_dashboard_shows_every_metric_the_code_publishes(full: dict[str, Any]) -> None:
    from s3torrent.observability import Metric

    lines = dashboard_metrics(full)
    ours = [line for line in lines if line[0] == "s3torrent"]
    assert {line[1] for line in ours} == {metric.value for metric in Metric}
    assert all(line[2:4] == ["service", "s3torrent"] for line in ours)  # the Powertools dimension
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage") in {(line[0], line[1]) for line in lines}
    (dashboard,) = resources(full, "AWS::CloudWatch::Dashboard").values()
    assert "bytes / seconds / 1000000" in text(dashboard["Properties"]["DashboardBody"])


# --- outputs, cdk-nag -------------------------------------------------------------------------


def test_outputs(full: dict[str, Any], default: dict[str, Any]) -> None:
    common = {
        "ApiUrl",
        "WorkerQueueUrl",
        "WorkerDeadLetterQueueUrl",
        "BackfillQueueUrl",
        "BackfillDeadLetterQueueUrl",
        "BackfillTableName",
        "WorkerFunctionArn",
        "BatchOperationsRoleArn",
        "DashboardName",
        "BucketName",
        "WebSeedDomainName",
        "WebSeedDistributionId",
    }
    assert set(full["Outputs"]) == common | {"AlarmTopicArn"}
    assert set(default["Outputs"]) == common | {"AlarmNotifications"}
    assert "notify nobody" in default["Outputs"]["AlarmNotifications"]["Value"]


def test_cdk_nag_report_has_no_unacknowledged_finding(synth: Synth) -> None:
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    violations = [
        (v["ruleName"], c["constructPath"])
        for plugin in report["pluginReports"]
        for v in plugin.get("violations", [])
        for c in v["violatingConstructs"]
    ]
    assert violations == []


def test_every_acknowledgement_is_narrow_and_says_why(synth: Synth) -> None:
    import aws_cdk as cdk

    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledged: list[tuple[str, str, str]] = []  # (construct path, rule id, reason)
    for construct in synth.app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == key:
                for rule, reason in dict(entry.data).items():
                    rule_id = rule.split("::", 1)[1]  # "Annotation::AwsSolutions-IAM5[...]"
                    acknowledged.append((construct.node.path, rule_id, str(reason)))
    assert acknowledged, "expected the documented acknowledgements"
    for path, rule_id, reason in acknowledged:
        assert rule_id.startswith("AwsSolutions-"), (path, rule_id)
        assert len(reason) >= 80, (path, rule_id)  # a sentence a reviewer can check
        # IAM4/IAM5 only per finding (never the whole rule), and never on a stack.
        if rule_id.startswith(("AwsSolutions-IAM4", "AwsSolutions-IAM5")):
            assert rule_id.endswith("]") and "[" in rule_id, (path, rule_id)
        assert path.count("/") >= 1, (path, rule_id)
    # Wildcards over S3 objects are acknowledged only for the configured scopes.
    s3_wildcards = {
        rule_id for _, rule_id, _ in acknowledged if ":s3:::" in rule_id or ".Arn>/" in rule_id
    }
    allowed = ("media-archive/videos/", "media-archive/audio/", "datasets.example/")
    allowed += ("inventory-reports/", ".Arn>/")
    for rule_id in s3_wildcards:
        assert any(scope in rule_id for scope in allowed), rule_id


# --- S3-compatible endpoint (Ceph, MinIO) -----------------------------------------------------


def test_endpoint_stack_grants_nothing_on_aws_s3_and_reads_its_credentials(
    endpoint: dict[str, Any],
) -> None:

    for role in ("S3TorrentApiRole", "S3TorrentWorkerRole", "S3TorrentBackfillRole"):
        granted = grants(endpoint, role)
        assert not [pair for pair in granted if pair[0].startswith(("s3:", "kms:"))], role
        assert ("secretsmanager:GetSecretValue", ENDPOINT_SECRET) in granted, role
        assert {p for p in granted if p[0].startswith("secretsmanager:")} == {
            ("secretsmanager:GetSecretValue", ENDPOINT_SECRET)
        }
    assert resources(endpoint, "Custom::S3BucketNotifications") == {}
    assert resources(endpoint, "AWS::S3::Bucket") == {}
    _, fn = one(endpoint, "AWS::Lambda::Function", "S3TorrentWorkerFunction")
    env = fn["Properties"]["Environment"]["Variables"]
    assert env["S3TORRENT_ENDPOINT_URL"] == "https://rgw.example.net"
    assert env["S3TORRENT_ENDPOINT_CREDENTIALS_SECRET"] == ENDPOINT_SECRET
    assert "BucketName" not in endpoint["Outputs"]


def test_cfn_lint_is_clean_on_every_synthesized_template(synth: Synth) -> None:
    import subprocess
    import sys
    from pathlib import Path

    templates = sorted(str(p) for p in synth.outdir.glob("*.template.json"))
    assert len(templates) == 3
    cfn_lint = Path(sys.executable).parent / "cfn-lint"  # the venv's, as `make synth` runs it
    result = subprocess.run(
        [str(cfn_lint), "--ignore-checks", "W3005", "--", *templates],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- web seeds: CloudFront with origin access control ----------------------------------------


def test_default_web_seed_is_a_cloudfront_distribution_with_oac(default: dict[str, Any]) -> None:
    _, dist = one(default, "AWS::CloudFront::Distribution", "WebSeedDistribution")
    config = dist["Properties"]["DistributionConfig"]
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert behavior["AllowedMethods"] == ["GET", "HEAD", "OPTIONS"]
    assert behavior["Compress"] is False
    (origin,) = config["Origins"]
    oac = logical_id(default, "AWS::CloudFront::OriginAccessControl", "WebSeed")
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac, "Id"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    bucket = logical_id(default, "AWS::S3::Bucket", "S3TorrentBucket")
    assert origin["DomainName"] == {"Fn::GetAtt": [bucket, "RegionalDomainName"]}
    assert config["Logging"]["Prefix"] == "s3torrent-web-seed/"
    # The cache key is the path only: Range never splits the cache, and is forwarded on a miss.
    cache_id = behavior["CachePolicyId"]["Ref"]
    params = default["Resources"][cache_id]["Properties"]["CachePolicyConfig"][
        "ParametersInCacheKeyAndForwardedToOrigin"
    ]
    assert params["HeadersConfig"] == {"HeaderBehavior": "none"}
    assert params["QueryStringsConfig"] == {"QueryStringBehavior": "none"}
    # Only this distribution may read the created bucket, through the bucket policy.
    (policy,) = [
        p
        for p in resources(default, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    reads = [
        st
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
        if st.get("Principal") == {"Service": "cloudfront.amazonaws.com"}
    ]
    (read,) = reads
    assert read["Action"] == "s3:GetObject"
    assert flat(read["Resource"]) == f"<{bucket}.Arn>/*"
    source = flat(read["Condition"]["StringEquals"]["AWS:SourceArn"])
    distribution = logical_id(default, "AWS::CloudFront::Distribution", "WebSeed")
    assert source.endswith(f":distribution/<{distribution}>")


def test_web_seed_sends_the_cors_headers_browser_clients_need(default: dict[str, Any]) -> None:
    _, policy = one(default, "AWS::CloudFront::ResponseHeadersPolicy", "WebSeedCors")
    cors = policy["Properties"]["ResponseHeadersPolicyConfig"]["CorsConfig"]
    assert cors["AccessControlAllowOrigins"] == {"Items": ["*"]}
    assert "Range" in cors["AccessControlAllowHeaders"]["Items"]
    assert set(cors["AccessControlExposeHeaders"]["Items"]) >= {
        "Content-Range",
        "Content-Length",
        "Accept-Ranges",
        "ETag",
    }
    assert cors["AccessControlAllowCredentials"] is False
    _, dist = one(default, "AWS::CloudFront::Distribution", "WebSeedDistribution")
    behavior = dist["Properties"]["DistributionConfig"]["DefaultCacheBehavior"]
    assert behavior["ResponseHeadersPolicyId"] == {
        "Ref": logical_id(default, "AWS::CloudFront::ResponseHeadersPolicy", "WebSeedCors")
    }
    (association,) = behavior["FunctionAssociations"]
    assert association["EventType"] == "viewer-request"


def test_functions_web_seed_names_the_distribution(default: dict[str, Any]) -> None:
    dist = logical_id(default, "AWS::CloudFront::Distribution", "WebSeedDistribution")
    for label in ("Api", "Worker", "Backfill"):
        _, fn = one(default, "AWS::Lambda::Function", f"S3Torrent{label}Function")
        seeds = fn["Properties"]["Environment"]["Variables"]["S3TORRENT_WEB_SEEDS"]
        assert text(seeds) == f'["https://<{dist}.DomainName>/{{folder}}"]', label


def test_mixed_origins_list_each_template(full: dict[str, Any]) -> None:
    # full: a created bucket (CloudFront) and existing buckets (their own URL, the default).
    dist = logical_id(full, "AWS::CloudFront::Distribution", "WebSeedDistribution")
    _, fn = one(full, "AWS::Lambda::Function", "S3TorrentWorkerFunction")
    seeds = fn["Properties"]["Environment"]["Variables"]["S3TORRENT_WEB_SEEDS"]
    assert json.loads(text(seeds)) == [
        f"https://<{dist}.DomainName>/{{folder}}",
        "{bucket_url}/{folder}",
    ]


def test_viewer_request_function_keeps_to_the_prefixes() -> None:
    from infra.web_seeds import viewer_request_code

    assert "var PREFIXES = [];" in viewer_request_code(("",))
    code = viewer_request_code(("videos/", "audio/"))
    assert 'var PREFIXES = ["videos/", "audio/"];' in code
    assert "statusCode: 204" in code and "statusCode: 403" in code


# --- API naming and logs ------------------------------------------------------------------------


def test_api_is_named_after_the_stack(default: dict[str, Any], full: dict[str, Any]) -> None:
    _, api = one(default, "AWS::ApiGateway::RestApi", "Http")
    assert api["Properties"]["Name"] == "S3TorrentDefault-api"
    _, api = one(full, "AWS::ApiGateway::RestApi", "Http")
    assert api["Properties"]["Name"] == "S3TorrentFull-api"
    _, alarm = one(full, "AWS::CloudWatch::Alarm", "ApiServerErrors")
    assert {"Name": "ApiName", "Value": "S3TorrentFull-api"} in alarm["Properties"]["Dimensions"]


def test_execution_log_group_exists_first_with_retention(default: dict[str, Any]) -> None:
    group_id, group = one(default, "AWS::Logs::LogGroup", "HttpExecutionLogs")
    api = logical_id(default, "AWS::ApiGateway::RestApi", "Http")
    assert text(group["Properties"]["LogGroupName"]) == f"API-Gateway-Execution-Logs_<{api}>/prod"
    assert group["Properties"]["RetentionInDays"] == 30
    _, stage = one(default, "AWS::ApiGateway::Stage", "Http")
    assert group_id in stage["DependsOn"]
