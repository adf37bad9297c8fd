"""Stores outside AWS authenticate with keys from a Secrets Manager secret (deploy setting)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from s3torrent.errors import InvalidInput
from s3torrent.settings import Settings
from s3torrent.wiring import endpoint_session


@mock_aws
def test_the_store_keys_come_from_the_named_secret() -> None:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    arn = secrets.create_secret(
        Name="ceph-keys",
        SecretString=json.dumps({"access_key_id": "AKCEPH", "secret_access_key": "sk-ceph"}),
    )["ARN"]
    settings = Settings(endpoint_url="http://ceph.internal:7480", endpoint_credentials_secret=arn)

    credentials = endpoint_session(settings).get_credentials()

    assert (credentials.access_key, credentials.secret_key) == ("AKCEPH", "sk-ceph")


@mock_aws
def test_a_malformed_secret_is_refused_without_echoing_it() -> None:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    secrets.create_secret(Name="bad", SecretString="hunter2-not-json")
    settings = Settings(endpoint_url="http://ceph:7480", endpoint_credentials_secret="bad")

    with pytest.raises(InvalidInput) as raised:
        endpoint_session(settings)

    assert "hunter2" not in str(raised.value)
    assert "access_key_id" in str(raised.value)


def test_without_a_secret_the_default_chain_is_used() -> None:
    credentials = endpoint_session(Settings()).get_credentials()
    assert credentials.access_key == "testing"  # from the test environment (conftest)
