"""Exact IAM: every action and resource each role gets, and the write rule of the design."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.synth import (
    Synth,
    actions_on,
    as_list,
    flat,
    grants,
    logical_id,
    one,
    resources,
    role_statements,
    session_synth,
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


KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
READ = {"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTorrent", "s3:GetObjectVersionTorrent"}
FUNCTION_ROLES = ("S3TorrentApiRole", "S3TorrentWorkerRole", "S3TorrentBackfillRole")


def imported(path: str) -> str:
    return f"arn:<AWS::Partition>:s3:::{path}"


def scopes(template: dict[str, Any]) -> list[str]:
    """Object ARN patterns of the full stack's scopes (prefix set minimized: videos/2024/ gone)."""
    created = logical_id(template, "AWS::S3::Bucket", "S3TorrentBucket")
    return [
        imported("media-archive/audio/*"),
        imported("media-archive/videos/*"),
        imported("datasets.example/*"),
        f"<{created}.Arn>/*",
    ]


def buckets(template: dict[str, Any]) -> set[str]:
    created = logical_id(template, "AWS::S3::Bucket", "S3TorrentBucket")
    return {imported("media-archive"), imported("datasets.example"), f"<{created}.Arn>"}


def arn_of(template: dict[str, Any], kind: str, contains: str) -> str:
    return f"<{logical_id(template, kind, contains)}.Arn>"


def pairs(actions: set[str], resources_: set[str] | list[str]) -> set[tuple[str, str]]:
    return {(action, resource) for action in actions for resource in resources_}


def services(granted: set[tuple[str, str]]) -> set[str]:
    return {action.split(":")[0] for action, _ in granted}


def test_worker_role_is_exactly_what_the_worker_needs(full: dict[str, Any]) -> None:
    granted = grants(full, "S3TorrentWorkerRole")
    objects = scopes(full)
    assert actions_on(granted, "s3:") == (
        pairs(READ, objects)
        | pairs({"s3:PutObject", "s3:DeleteObject"}, [f"{o}.torrent" for o in objects])
        | pairs({"s3:ListBucket"}, buckets(full))
    )
    assert actions_on(granted, "kms:") == pairs({"kms:Decrypt", "kms:GenerateDataKey"}, [KMS_KEY])
    table = arn_of(full, "AWS::DynamoDB::Table", "Backfills")
    # UpdateItem: backfill counters, kept collections' rebuild marks and fan-out completion
    # counts; BatchWriteItem: the feed index (publishing/index.py) and fan-out part records;
    # BatchGetItem: fan-out part records; Get/Put/DeleteItem: collections' hash records and
    # fan-out manifests.
    assert actions_on(granted, "dynamodb:") == pairs(
        {
            "dynamodb:UpdateItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:BatchGetItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
        },
        [table],
    )
    queue = arn_of(full, "AWS::SQS::Queue", "S3TorrentWorkerQueue")
    consume = {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:SendMessage",  # kept collections' delayed rebuilds (the context keeps one)
    }
    assert actions_on(granted, "sqs:") == pairs(consume, [queue])
    logs = arn_of(full, "AWS::Logs::LogGroup", "S3TorrentWorkerLogs")
    assert actions_on(granted, "logs:") == pairs(
        {"logs:CreateLogStream", "logs:PutLogEvents"}, [logs]
    )
    assert actions_on(granted, "xray:") == pairs(
        {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, ["*"]
    )
    assert services(granted) == {"s3", "kms", "dynamodb", "sqs", "logs", "xray"}


def test_api_role_writes_torrents_but_never_deletes(full: dict[str, Any]) -> None:
    granted = grants(full, "S3TorrentApiRole")
    objects = scopes(full)
    assert actions_on(granted, "s3:") == (
        pairs(READ, objects)
        | pairs({"s3:PutObject"}, [f"{o}.torrent" for o in objects])
        | pairs({"s3:ListBucket"}, buckets(full))
    )
    assert actions_on(granted, "kms:") == pairs({"kms:Decrypt", "kms:GenerateDataKey"}, [KMS_KEY])
    table = arn_of(full, "AWS::DynamoDB::Table", "Backfills")
    # Feeds: Query on the `feeds` index only; pages: BatchGetItem; inline torrents are listed.
    assert actions_on(granted, "dynamodb:") == pairs(
        {
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:BatchGetItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:DeleteItem",  # collections' hash records: the old chunks
        },
        [table],
    ) | {("dynamodb:Query", f"{table}/index/feeds")}
    send = {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    queues = [
        arn_of(full, "AWS::SQS::Queue", "S3TorrentWorkerQueue"),
        arn_of(full, "AWS::SQS::Queue", "S3TorrentBackfillQueue"),
    ]
    assert actions_on(granted, "sqs:") == pairs(send, queues)
    assert services(granted) == {"s3", "kms", "dynamodb", "sqs", "logs", "xray"}


def test_the_backfill_lists_only_the_configured_prefixes(full: dict[str, Any]) -> None:
    listing = {
        flat(s["Resource"]): s.get("Condition")
        for s in role_statements(full, "S3TorrentBackfillRole")
        if s["Action"] == "s3:ListBucket"
    }
    created = logical_id(full, "AWS::S3::Bucket", "S3TorrentBucket")
    assert listing == {
        imported("media-archive"): {"StringLike": {"s3:prefix": ["audio/*", "videos/*"]}},
        imported("datasets.example"): None,  # the whole bucket is configured
        f"<{created}.Arn>": None,
    }


@pytest.mark.parametrize("role", ["S3TorrentApiRole", "S3TorrentWorkerRole"])
def test_api_and_worker_may_list_whole_buckets_only_to_tell_404_from_403(
    full: dict[str, Any], role: str
) -> None:
    # Refused on purpose (docs/deploy.md): S3's implicit list check for a GET/HEAD of a missing
    # key carries no prefix, so an s3:prefix condition would turn every missing key into 403.
    listing = [s for s in role_statements(full, role) if s["Action"] == "s3:ListBucket"]
    assert [s.get("Condition") for s in listing] == [None]
    assert listing[0]["Sid"] == "ListForNotFound"


def test_backfill_role_only_lists_the_configured_prefixes(full: dict[str, Any]) -> None:
    granted = grants(full, "S3TorrentBackfillRole")
    assert actions_on(granted, "s3:") == pairs({"s3:ListBucket"}, buckets(full))
    assert actions_on(granted, "kms:") == set()
    table = arn_of(full, "AWS::DynamoDB::Table", "Backfills")
    # Get/Put/UpdateItem: its progress; BatchGetItem: are the fresh torrents in the feeds?
    assert actions_on(granted, "dynamodb:") == pairs(
        {
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:BatchGetItem",
        },
        [table],
    )
    send = {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    consume = {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }
    worker_q = arn_of(full, "AWS::SQS::Queue", "S3TorrentWorkerQueue")
    backfill_q = arn_of(full, "AWS::SQS::Queue", "S3TorrentBackfillQueue")
    backfill_dlq = arn_of(full, "AWS::SQS::Queue", "S3TorrentBackfillDeadLetters")
    assert actions_on(granted, "sqs:") == (
        pairs(send, [worker_q, backfill_q, backfill_dlq]) | pairs(consume, [backfill_q])
    )
    assert services(granted) == {"s3", "dynamodb", "sqs", "logs", "xray"}


def test_kms_keys_are_usable_only_through_s3(full: dict[str, Any]) -> None:
    for role in ("S3TorrentApiRole", "S3TorrentWorkerRole"):
        kms = [s for s in role_statements(full, role) if "kms:Decrypt" in as_list(s["Action"])]
        assert len(kms) == 1, role
        assert as_list(kms[0]["Resource"]) == [KMS_KEY]
        via = kms[0]["Condition"]["StringEquals"]["kms:ViaService"]
        assert flat(via) == "s3.<AWS::Region>.amazonaws.com"


@pytest.mark.parametrize("which", ["full", "default"])
def test_no_function_can_write_or_delete_anything_but_torrents(
    which: str, request: pytest.FixtureRequest
) -> None:
    template = request.getfixturevalue(which)
    for role in FUNCTION_ROLES:
        for action, resource in grants(template, role):
            if action in {"s3:PutObject", "s3:DeleteObject", "s3:*", "s3:Put*", "s3:Delete*"}:
                assert resource.endswith("*.torrent"), (role, action, resource)
            assert not action.endswith("*"), (role, action)
            assert not action.startswith(("s3:PutBucket", "s3:DeleteBucket", "s3:PutObjectAcl")), (
                role,
                action,
            )


def test_batch_operations_role_may_only_invoke_the_worker_and_use_its_manifest_bucket(
    full: dict[str, Any],
) -> None:
    role_id, role = one(full, "AWS::IAM::Role", "BatchOperationsRole")
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
            "Effect": "Allow",
            "Principal": {"Service": "batchoperations.s3.amazonaws.com"},
        }
    ]
    worker = arn_of(full, "AWS::Lambda::Function", "S3TorrentWorkerFunction")
    assert grants(full, "BatchOperationsRole") == {
        ("lambda:InvokeFunction", worker),
        ("s3:GetObject", imported("inventory-reports/*")),
        ("s3:GetObjectVersion", imported("inventory-reports/*")),
        ("s3:PutObject", imported("inventory-reports/s3torrent-batch-reports/*")),
        ("s3:GetBucketLocation", imported("inventory-reports")),
    }
    outputs = full["Outputs"]
    assert outputs["BatchOperationsRoleArn"]["Value"] == {"Fn::GetAtt": [role_id, "Arn"]}


def test_no_role_uses_managed_policies_except_documented_ones(full: dict[str, Any]) -> None:
    managed = {
        lid: [flat(arn) for arn in r["Properties"].get("ManagedPolicyArns", [])]
        for lid, r in resources(full, "AWS::IAM::Role").items()
        if r["Properties"].get("ManagedPolicyArns")
    }
    assert sorted(managed.values()) == [
        ["arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
        ["arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"],
    ]
    assert any(lid.startswith("BucketNotificationsHandler") for lid in managed)
