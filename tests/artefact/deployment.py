"""A synthesized stack's resources on moto's server, and one invocation of its functions.

`Deployment` creates what the template declares (buckets, queues, the table, a stand-in
CloudFront name) on moto's server; `fakes` maps the template's logical ids (and `Id.Attr`) to
what was created, for `tests.support.lambda_runtime.resolve`. The test modules of this folder
share it: the default stack (test_artefact.py) and the endpoint-mode stack against a real
radosgw (test_endpoint_rgw.py), which declares no bucket.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import libtorrent as lt

from tests.support.lambda_runtime import ACCOUNT, REGION, VENVS, Function, Invocation, invoke
from tests.support.references import libtorrent_hashes
from tests.support.synth import resources


class Deployment:
    """A stack's resources, created on moto's server; `fakes` maps the template's logical ids
    (and `Id.Arn`) to what was created. A bucket the stack creates notifies the worker queue,
    as the stack wires it; `bucket` is None for a stack that creates none (endpoint mode)."""

    def __init__(self, endpoint: str, template: dict[str, Any], *, bucket_id: str | None) -> None:
        self.endpoint = endpoint
        session = boto3.session.Session(region_name=REGION)
        self.s3 = session.client("s3", endpoint_url=endpoint)
        self.sqs = session.client("sqs", endpoint_url=endpoint)
        dynamodb = session.client("dynamodb", endpoint_url=endpoint)
        self.dynamodb = dynamodb
        suffix = uuid.uuid4().hex[:8]
        self.fakes: dict[str, str] = {}
        for lid in resources(template, "AWS::S3::Bucket"):
            name = f"{lid.lower()[:40]}-{suffix}"
            self.s3.create_bucket(Bucket=name)
            self.fakes[lid] = name
            self.fakes[f"{lid}.Arn"] = f"arn:aws:s3:::{name}"
        for lid in resources(template, "AWS::SQS::Queue"):
            url = self.sqs.create_queue(QueueName=f"{lid}-{suffix}")["QueueUrl"]
            self.fakes[lid] = url
            self.fakes[f"{lid}.Arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{lid}-{suffix}"
            self.fakes[f"{lid}.QueueName"] = f"{lid}-{suffix}"
        for lid, table in resources(template, "AWS::DynamoDB::Table").items():
            props = table["Properties"]
            name = f"{lid}-{suffix}"
            # The table as declared: its keys, and any index (the feeds' GSI) with its own.
            indexes = {
                key: props[key]
                for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes")
                if props.get(key)
            }
            dynamodb.create_table(
                TableName=name,
                KeySchema=props["KeySchema"],
                AttributeDefinitions=props["AttributeDefinitions"],
                BillingMode="PAY_PER_REQUEST",
                **indexes,
            )
            self.fakes[lid] = name
            self.fakes[f"{lid}.Arn"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
        for lid in resources(template, "AWS::CloudFront::Distribution"):
            # A web seed CDN in front of the bucket: only its name reaches the functions.
            self.fakes[lid] = f"E{suffix.upper()}"
            self.fakes[f"{lid}.DomainName"] = f"d{suffix}.cloudfront.net"
        self.worker_queue = self.fakes[queue_id(template, "WorkerQueue")]
        self.backfill_queue = self.fakes[queue_id(template, "BackfillQueue")]
        self.bucket = self.fakes[bucket_id] if bucket_id else None
        if self.bucket:
            # S3 notifications into the worker queue, as the stack wires them.
            self.s3.put_bucket_notification_configuration(
                Bucket=self.bucket,
                NotificationConfiguration={
                    "QueueConfigurations": [
                        {
                            "QueueArn": self.fakes[f"{queue_id(template, 'WorkerQueue')}.Arn"],
                            "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                        }
                    ]
                },
            )

    def sqs_event(self, queue_url: str) -> dict[str, Any]:
        """Everything waiting in a queue, as the SQS event source mapping hands it to Lambda
        (the messages stay in flight; `delete` acknowledges them)."""
        records: list[dict[str, Any]] = []
        for _ in range(10):
            got = self.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                VisibilityTimeout=60,
            ).get("Messages", [])
            if not got:
                break
            arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_url.rsplit('/', 1)[-1]}"
            records += [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": m.get("MessageAttributes", {}),
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": REGION,
                }
                for m in got
            ]
        return {"Records": records}

    def delete(self, queue_url: str, event: dict[str, Any], result: dict[str, Any]) -> None:
        failed = {item["itemIdentifier"] for item in result.get("batchItemFailures", [])}
        for record in event["Records"]:
            if record["messageId"] not in failed:
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"])


def queue_id(template: dict[str, Any], contains: str) -> str:
    (lid,) = [lid for lid in resources(template, "AWS::SQS::Queue") if contains in lid]
    return lid


def run(
    python: Path, function: Function, event: dict[str, Any], deployment: Deployment, **kw: Any
) -> Invocation:
    """One cold invocation against the deployment; checks that what ran came from the asset
    and the clean venv, nowhere else (when it got as far as returning)."""
    invocation = invoke(
        python, function, event, fakes=deployment.fakes, endpoint=deployment.endpoint, **kw
    )
    if invocation.returncode == 0:
        loaded = invocation.loaded_from
        assert str(loaded["s3torrent"]).startswith(str(function.asset)), loaded
        for package in ("aws_lambda_powertools", "boto3", "pydantic"):
            assert str(loaded[package]).startswith(str(VENVS)), loaded
    return invocation


def check_torrent(raw: bytes, data: bytes, name: str) -> None:
    """The torrent decodes, and its info hashes are those libtorrent computes for the bytes."""
    info = lt.torrent_info(raw)
    assert info.name() == name
    expected = libtorrent_hashes(data, name, info.piece_length())
    hashes = info.info_hashes()
    assert (str(hashes.v1), str(hashes.v2)) == expected
