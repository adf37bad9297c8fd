"""Stores outside AWS authenticate with keys from a Secrets Manager secret (deploy setting).

S3 calls to the store are signed with the secret's keys; SQS, DynamoDB and Secrets Manager
itself with the function's role. A secret that is missing, unreadable or malformed fails the
Runtime as it is built (a Lambda's init), naming the secret, never showing its content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from s3torrent.errors import EndpointSecretUnusable
from s3torrent.handlers.runtime import Runtime
from s3torrent.model import ObjectRef, Outcome
from s3torrent.settings import Settings
from s3torrent.wiring import endpoint_session

STORE_KEY, STORE_SECRET = "AKSTOREKEY0000000001", "store-secret-hunter2"
BUCKET = "ceph-media"
CREDENTIAL = re.compile(r"Credential=([^/]+)/")


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def put_secret(value: str, name: str = "ceph-keys") -> str:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    arn: str = secrets.create_secret(Name=name, SecretString=value)["ARN"]
    return arn


def signed_with(log: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Service name -> the access key ids its requests were signed with."""
    keys: dict[str, set[str]] = {}
    for service, authorization in log:
        match = CREDENTIAL.search(authorization)
        keys.setdefault(service, set()).add(match.group(1) if match else "<unsigned>")
    return keys


def recorder(log: list[tuple[str, str]]) -> Any:
    """A `request-created` hook: it runs after botocore's signer, so Authorization is set."""

    def record(request: Any, event_name: str, **_: Any) -> None:
        service = event_name.split(".")[1]
        authorization = request.headers.get("Authorization") or ""
        if isinstance(authorization, bytes):
            authorization = authorization.decode()
        log.append((service, authorization))

    return record


@pytest.mark.parametrize(
    "keys",
    [
        {"access_key_id": STORE_KEY, "secret_access_key": STORE_SECRET},
        {"aws_access_key_id": STORE_KEY, "aws_secret_access_key": STORE_SECRET},
    ],
    ids=["documented", "aws-names"],
)
def test_the_store_keys_come_from_the_named_secret(aws: None, keys: dict[str, str]) -> None:
    arn = put_secret(json.dumps(keys))
    settings = Settings(endpoint_url="http://ceph.internal:7480", endpoint_credentials_secret=arn)

    credentials = endpoint_session(settings).get_credentials()

    assert (credentials.access_key, credentials.secret_key) == (STORE_KEY, STORE_SECRET)
    assert credentials.token is None  # not the role's session token


def test_a_session_token_is_taken_too(aws: None) -> None:
    arn = put_secret(
        json.dumps(
            {"access_key_id": STORE_KEY, "secret_access_key": STORE_SECRET, "session_token": "t0"}
        )
    )
    credentials = endpoint_session(Settings(endpoint_credentials_secret=arn)).get_credentials()
    assert credentials.token == "t0"


def test_a_runtime_signs_s3_with_the_store_keys_and_the_rest_with_the_role(aws: None) -> None:
    arn = put_secret(json.dumps({"access_key_id": STORE_KEY, "secret_access_key": STORE_SECRET}))
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="worker")["QueueUrl"]
    boto3.client("dynamodb", region_name="us-east-1").create_table(
        TableName="progress",
        KeySchema=[{"AttributeName": "backfill_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "backfill_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="clip.bin", Body=b"x" * 100_000)
    # No endpoint_url: moto's in-process mock only answers AWS host names; the signing is the
    # same whatever the endpoint.
    settings = Settings(
        buckets=({"name": BUCKET},),  # type: ignore[arg-type]
        endpoint_credentials_secret=arn,
        queue_url=queue_url,
        backfill_table="progress",
        read_transport="sdk",
    )
    log: list[tuple[str, str]] = []
    role = boto3.session.Session()
    role_key = role.get_credentials().access_key
    role.events.register("request-created", recorder(log))  # every client of the role

    runtime = Runtime(settings, session=role)  # reads the secret, with the role's keys
    for client in (runtime.objects.client, runtime.objects.data_client):
        client.meta.events.register("request-created", recorder(log))
    result = runtime.service.make_torrent(ObjectRef(BUCKET, "clip.bin"))
    runtime.worker_queue.send('{"type": "s3torrent.job", "bucket": "b", "key": "k"}')
    assert runtime.progress.get("nothing") is None

    assert result.outcome is Outcome.CREATED
    assert role_key != STORE_KEY
    assert signed_with(log) == {
        "secrets-manager": {role_key},
        "s3": {STORE_KEY},
        "sqs": {role_key},
        "dynamodb": {role_key},
    }
    # Never the secret key itself, in any request header.
    assert not any(STORE_SECRET in authorization for _, authorization in log)


def test_without_a_secret_the_role_signs_everything() -> None:
    credentials = endpoint_session(Settings()).get_credentials()
    assert credentials.access_key == "testing"  # from the test environment (conftest)
    role = boto3.session.Session()
    assert Runtime(Settings(), session=role).store_session is role


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("hunter2-not-json", "not a JSON object"),
        ('["hunter2"]', "not a JSON object"),
        ('{"access_key_id": "hunter2"}', "access_key_id and secret_access_key"),
        ('{"AKIAhunter2": "hunter2"}', "access_key_id and secret_access_key"),
        ('{"access_key_id": "", "secret_access_key": "hunter2"}', "non-empty"),
        ('{"access_key_id": 7, "secret_access_key": "hunter2"}', "non-empty strings"),
    ],
)
def test_a_malformed_secret_fails_the_runtime_without_echoing_it(
    aws: None, value: str, says: str
) -> None:
    put_secret(value, name="bad")
    settings = Settings(endpoint_url="http://ceph:7480", endpoint_credentials_secret="bad")

    with pytest.raises(EndpointSecretUnusable) as raised:
        Runtime(settings)

    message = str(raised.value)
    assert "hunter2" not in message and "AKIA" not in message
    assert message.startswith("endpoint credentials secret bad: ")
    assert says in message


def test_a_missing_secret_fails_the_runtime_naming_it(aws: None) -> None:
    settings = Settings(endpoint_credentials_secret="s3torrent/rgw")
    with pytest.raises(EndpointSecretUnusable, match=r"s3torrent/rgw: no such secret"):
        Runtime(settings)


def test_an_unreadable_secret_fails_the_runtime_naming_it(aws: None) -> None:
    put_secret(json.dumps({"access_key_id": STORE_KEY, "secret_access_key": STORE_SECRET}))
    role = boto3.session.Session()

    def deny(**_: Any) -> None:
        from botocore.exceptions import ClientError

        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}},
            "GetSecretValue",
        )

    # moto grants every call: refuse GetSecretValue as IAM would for a role without it.
    role.events.register("before-call.secrets-manager.GetSecretValue", deny)
    settings = Settings(endpoint_credentials_secret="ceph-keys")
    with pytest.raises(EndpointSecretUnusable) as raised:
        Runtime(settings, session=role)
    assert "ceph-keys" in str(raised.value) and "may not read it" in str(raised.value)
    assert STORE_SECRET not in str(raised.value)


def test_a_lambda_with_a_bad_secret_fails_at_init(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handlers build their Runtime at import: the init fails, saying what is wrong."""
    import importlib
    import sys

    monkeypatch.setenv("S3TORRENT_ENDPOINT_CREDENTIALS_SECRET", "s3torrent/missing")
    monkeypatch.delitem(sys.modules, "s3torrent.handlers.worker", raising=False)
    with pytest.raises(EndpointSecretUnusable, match="s3torrent/missing: no such secret"):
        importlib.import_module("s3torrent.handlers.worker")
    monkeypatch.delitem(sys.modules, "s3torrent.handlers.worker", raising=False)
