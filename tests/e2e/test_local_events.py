"""The events the local stack hands the handlers have the shapes Lambda's own have: checked
against Powertools' parser models of API Gateway (REST) and SQS events (no sockets)."""

from __future__ import annotations

import base64
import json

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventModel, SqsModel

from s3torrent_local.gateway import build_event, response_parts
from s3torrent_local.queues import lambda_record

pytestmark = pytest.mark.e2e


def event(method: str, target: str, body: bytes = b"", **headers: str) -> dict[str, object]:
    raw_path, _, raw_query = target.partition("?")
    return build_event(
        method=method,
        raw_path=raw_path,
        raw_query=raw_query,
        headers=[("Host", "127.0.0.1:8000"), *headers.items()],
        body=body,
        stage="prod",
        source_ip="127.0.0.1",
        request_id="r-1",
        binary_media_types=("application/x-bittorrent", "*/*"),
    )


def test_get_object_torrent_event_is_an_api_gateway_rest_event() -> None:
    signed = "AWS4-HMAC-SHA256 Credential=test/20261125/us-east-1/s3/aws4_request"
    raw = event("GET", "/demo/dir/a%20b%2Bc.bin?torrent", Authorization=signed)
    APIGatewayProxyEventModel.model_validate(raw)
    parsed = APIGatewayProxyEvent(raw)
    assert parsed.path == "/demo/dir/a%20b%2Bc.bin"  # REST keeps the encoding; no stage
    assert parsed.request_context.path == "/prod/demo/dir/a%20b%2Bc.bin"
    assert parsed.query_string_parameters == {"torrent": ""}
    assert parsed.path_parameters == {"bucket": "demo", "key": "dir/a b+c.bin"}
    assert parsed.resource == "/{bucket}/{key+}"
    assert parsed.request_context.identity.access_key == "test"


def test_json_bodies_arrive_base64_as_with_the_deployed_binary_media_types() -> None:
    payload = json.dumps({"bucket": "demo", "key": "k"}).encode()
    raw = event("POST", "/torrents", payload, **{"Content-Type": "application/json"})
    APIGatewayProxyEventModel.model_validate(raw)
    parsed = APIGatewayProxyEvent(raw)
    assert parsed.is_base64_encoded
    assert parsed.json_body == {"bucket": "demo", "key": "k"}
    assert parsed.resource == "/torrents"
    assert parsed.request_context.identity.access_key is None  # unsigned


def test_binary_responses_are_decoded_and_headers_merged() -> None:
    status, headers, body = response_parts(
        {
            "statusCode": 200,
            "headers": {"Content-Type": "application/x-bittorrent"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": base64.b64encode(b"d4:infod6:lengthi1eee").decode(),
            "isBase64Encoded": True,
        }
    )
    assert status == 200
    assert body == b"d4:infod6:lengthi1eee"
    assert ("Set-Cookie", "a=1") in headers and ("Set-Cookie", "b=2") in headers


def test_sqs_records_are_lambda_sqs_records() -> None:
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "rh",
        "MD5OfBody": "0" * 32,
        "Body": '{"type": "s3torrent.job", "bucket": "demo", "key": "k"}',
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDA",
            "ApproximateFirstReceiveTimestamp": "1700000000001",
        },
        "MessageAttributes": {"kind": {"StringValue": "job", "DataType": "String"}},
    }
    record = lambda_record(message, "arn:aws:sqs:us-east-1:123456789012:s3torrent-worker")
    SqsModel.model_validate({"Records": [record]})
    assert record["eventSource"] == "aws:sqs"
    assert record["messageAttributes"]["kind"]["stringValue"] == "job"
