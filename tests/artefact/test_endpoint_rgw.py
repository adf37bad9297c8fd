"""Endpoint mode as Lambda runs it, against a real Ceph radosgw.

The stack is synthesized with `endpoint_url` = the radosgw this module starts and
`endpoint_credentials_secret_arn` = a secret on moto's Secrets Manager holding radosgw's key
pair as the docs say (`{"access_key_id": …, "secret_access_key": …}`). The worker's asset runs
in the clean venv with the template's environment; the role's credentials are fake ones that
radosgw does not know, Secrets Manager, SQS and DynamoDB are moto's (their own
`AWS_ENDPOINT_URL_*`), and S3 can only be reached through the settings' `endpoint_url`: the
generic `AWS_ENDPOINT_URL` is unset and `AWS_ENDPOINT_URL_S3` points at a closed port. So a
torrent appears in radosgw only if the worker signed its S3 calls with the secret's keys.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import libtorrent as lt
import pytest
from botocore.exceptions import ClientError

from tests.artefact.deployment import Deployment, check_torrent, run
from tests.support.handlers import load_event
from tests.support.lambda_runtime import Function, functions, lambda_venv
from tests.support.ports import free_port
from tests.support.rgw import ACCESS_KEY, SECRET_KEY, running_rgw
from tests.support.synth import cdk_json_context

pytestmark = [pytest.mark.rgw, pytest.mark.integration, pytest.mark.infra, pytest.mark.slow]

STACK = "S3TorrentRgw"
BUCKET, PREFIX = "media", "pub/"
SECRET_NAME = "s3torrent/rgw"
# The function's role, as Lambda hands it: keys radosgw has never heard of.
ROLE_KEYS = {
    "AWS_ACCESS_KEY_ID": "ASIAROLEKEYNOTINRGW01",
    "AWS_SECRET_ACCESS_KEY": "role-secret-that-radosgw-does-not-know",
    "AWS_SESSION_TOKEN": "role-session-token",
}
GOOD_SECRET = {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}


@pytest.fixture(scope="module")
def rgw_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_rgw(tmp_path_factory.mktemp("rgw")) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def rgw(rgw_endpoint: str) -> Any:
    """radosgw as its owner sees it (its own keys, nothing of the environment's)."""
    client = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
    ).client("s3", endpoint_url=rgw_endpoint)
    client.create_bucket(Bucket=BUCKET)
    # What makes the test mean something: the role's keys are refused by radosgw.
    as_role = boto3.session.Session(
        aws_access_key_id=ROLE_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ROLE_KEYS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=ROLE_KEYS["AWS_SESSION_TOKEN"],
        region_name="us-east-1",
    ).client("s3", endpoint_url=rgw_endpoint)
    with pytest.raises(ClientError) as refused:
        as_role.list_objects_v2(Bucket=BUCKET)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return client


@pytest.fixture(scope="module")
def secret_arn(moto_endpoint: str) -> str:
    """The store's key pair in Secrets Manager (moto's), stored as docs/deploy.md says."""
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")
    arn: str = secrets.create_secret(
        Name=f"{SECRET_NAME}-{os.getpid()}", SecretString=json.dumps(GOOD_SECRET)
    )["ARN"]
    return arn


def synth_endpoint_stack(context: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """`cdk synth -c s3torrent='{...}'` in-process, cdk-nag on, as app.py runs it; the template
    and the cloud assembly folder (with the staged asset)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk
    from aws_cdk.assertions import Template
    from cdk_nag import AwsSolutionsChecks
    from infra.config import from_context
    from infra.stack import S3TorrentStack

    outdir = Path(tempfile.mkdtemp(prefix="s3torrent-rgw-cdk.out-"))
    app = cdk.App(
        outdir=str(outdir), context={**cdk_json_context(), "s3torrent": json.dumps(context)}
    )
    config = from_context(app.node.try_get_context)
    stack = S3TorrentStack(app, config.stack_name, config=config)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()
    return dict(Template.from_stack(stack).to_json()), outdir


@pytest.fixture(scope="module")
def synthesized(rgw_endpoint: str, secret_arn: str) -> tuple[dict[str, Any], Path]:
    return synth_endpoint_stack(
        {
            "stack_name": STACK,
            "buckets": [{"name": BUCKET, "prefix": PREFIX}],
            "endpoint_url": rgw_endpoint,
            "endpoint_credentials_secret_arn": secret_arn,
            "torrent_source": "auto",
            "backfill_schedule": "rate(1 hour)",
        }
    )


@pytest.fixture(scope="module")
def worker(synthesized: tuple[dict[str, Any], Path]) -> Function:
    template, outdir = synthesized
    return functions(template, outdir, STACK)["worker"]


@pytest.fixture(scope="module")
def deployment(moto_endpoint: str, synthesized: tuple[dict[str, Any], Path]) -> Deployment:
    return Deployment(moto_endpoint, synthesized[0], bucket_id=None)


def test_the_template_sends_s3_to_the_store_with_the_secret(
    worker: Function, rgw_endpoint: str, secret_arn: str
) -> None:
    env = worker.environment
    assert env["S3TORRENT_ENDPOINT_URL"] == rgw_endpoint
    assert env["S3TORRENT_ENDPOINT_CREDENTIALS_SECRET"] == secret_arn


def lambda_env(moto_endpoint: str) -> dict[str, str | None]:
    """Lambda's variables as deployed in endpoint mode: the role's keys; AWS services at moto
    one by one; S3 nowhere but through the settings' endpoint_url."""
    return {
        **ROLE_KEYS,
        "AWS_ENDPOINT_URL": None,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint,
        "AWS_ENDPOINT_URL_SQS": moto_endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": moto_endpoint,
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{free_port()}",  # nobody listens there
    }


@contextmanager
def object_created(
    deployment: Deployment, key: str, data: bytes, etag: str
) -> Iterator[dict[str, Any]]:
    """An S3 ObjectCreated notification for `key`, delivered through the worker queue (moto's
    SQS) and received as the SQS event source mapping hands it to the worker; deleted after,
    whatever the worker said, so no other test receives it."""
    event = load_event("sqs_s3_object_created.json")
    body = json.loads(event["Records"][0]["body"])
    record = body["Records"][0]
    record["s3"]["bucket"].update(name=BUCKET, arn=f"arn:aws:s3:::{BUCKET}")
    record["s3"]["object"].update(key=quote_plus(key, safe="/"), size=len(data), eTag=etag)
    sent = deployment.sqs.send_message(
        QueueUrl=deployment.worker_queue, MessageBody=json.dumps(body)
    )["MessageId"]
    received = deployment.sqs_event(deployment.worker_queue)["Records"]
    ours = [r for r in received if r["messageId"] == sent]
    assert len(ours) == 1, received
    try:
        yield {"Records": ours}
    finally:
        deployment.delete(deployment.worker_queue, {"Records": ours}, {})


def put(rgw: Any, key: str, data: bytes) -> str:
    etag: str = rgw.put_object(Bucket=BUCKET, Key=key, Body=data)["ETag"].strip('"')
    return etag


def torrents(rgw: Any) -> list[str]:
    listed = rgw.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents", [])
    return [item["Key"] for item in listed if item["Key"].endswith(".torrent")]


def test_the_worker_makes_a_torrent_in_radosgw_with_the_secrets_keys(
    worker: Function, deployment: Deployment, rgw: Any, rgw_endpoint: str, moto_endpoint: str
) -> None:
    key = f"{PREFIX}clip one+two.bin"
    data = os.urandom(3 * 524288 + 12345)  # several pieces: radosgw's own torrent is wrong
    with object_created(deployment, key, data, put(rgw, key, data)) as event:
        invocation = run(
            lambda_venv(), worker, event, deployment, environment=lambda_env(moto_endpoint)
        )

    assert invocation.result == {"batchItemFailures": []}, invocation.logs
    stored = rgw.get_object(Bucket=BUCKET, Key=f"{key}.torrent")
    raw = stored["Body"].read()
    check_torrent(raw, data, "clip one+two.bin")  # info hashes: libtorrent's, from the bytes
    assert stored["ContentType"] == "application/x-bittorrent"
    assert stored["Metadata"]["torrent-source"] == "computed"  # radosgw's was checked, refused
    metainfo: Any = lt.bdecode(raw)
    seeds = metainfo[b"url-list"]  # BEP 19: one URL may stand alone, not in a list
    assert (seeds if isinstance(seeds, list) else [seeds]) == [
        f"{rgw_endpoint}/{BUCKET}/{PREFIX}".encode()
    ]
    assert SECRET_KEY not in invocation.logs


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param(
            {**GOOD_SECRET, "secret_access_key": "not-radosgws-secret"}, id="wrong-secret"
        ),
        pytest.param(
            {
                "access_key_id": ROLE_KEYS["AWS_ACCESS_KEY_ID"],
                "secret_access_key": ROLE_KEYS["AWS_SECRET_ACCESS_KEY"],
            },
            id="the-roles-keys",
        ),
    ],
)
def test_keys_radosgw_refuses_write_nothing(
    worker: Function,
    deployment: Deployment,
    rgw: Any,
    moto_endpoint: str,
    secret_arn: str,
    keys: dict[str, str],
) -> None:
    key = f"{PREFIX}refused/{uuid.uuid4().hex}.bin"
    data = os.urandom(700_000)
    with (
        object_created(deployment, key, data, put(rgw, key, data)) as event,
        secret_holding(moto_endpoint, secret_arn, json.dumps(keys)),
    ):
        invocation = run(
            lambda_venv(),
            worker,
            event,
            deployment,
            environment=lambda_env(moto_endpoint),
            check=False,
        )

    # radosgw refused the first call (HEAD, 403): a permanent failure to the worker, which
    # acknowledges the message (a retry would meet the same keys), logs the refusal and counts
    # it in TorrentsFailed, the dashboard's "failed" line.
    assert invocation.result == {"batchItemFailures": []}, invocation.logs
    records = json_lines(invocation.logs)
    refusals = [r for r in records if r.get("uri") == f"s3://{BUCKET}/{key}"]
    assert [r.get("error") for r in refusals] == ["AccessDenied"], invocation.logs
    assert "403" in refusals[0]["reason"], refusals
    assert metric(records, "TorrentsFailed") == 1.0, invocation.logs
    assert metric(records, "TorrentsCreated") is None, invocation.logs
    assert keys["secret_access_key"] not in invocation.logs
    assert f"{key}.torrent" not in torrents(rgw)


def test_a_secret_that_is_not_a_key_pair_fails_the_init(
    worker: Function, deployment: Deployment, rgw: Any, moto_endpoint: str, secret_arn: str
) -> None:
    key = f"{PREFIX}init/{uuid.uuid4().hex}.bin"
    data = os.urandom(1000)
    pasted = "AKIAPASTEDBYMISTAKE1:its-secret-part"
    with (
        object_created(deployment, key, data, put(rgw, key, data)) as event,
        secret_holding(moto_endpoint, secret_arn, pasted),
    ):
        invocation = run(
            lambda_venv(),
            worker,
            event,
            deployment,
            environment=lambda_env(moto_endpoint),
            check=False,
        )

    assert invocation.returncode != 0, invocation.logs  # the init failed: Lambda retries it
    assert "EndpointSecretUnusable" in invocation.logs, invocation.logs
    assert secret_arn in invocation.logs, invocation.logs  # named, its content never shown
    assert "its-secret-part" not in invocation.logs
    assert f"{key}.torrent" not in torrents(rgw)


@contextmanager
def secret_holding(moto_endpoint: str, secret_arn: str, value: str) -> Iterator[None]:
    """The secret holds `value` for the duration, radosgw's right keys again after."""
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")
    secrets.put_secret_value(SecretId=secret_arn, SecretString=value)
    try:
        yield
    finally:
        secrets.put_secret_value(SecretId=secret_arn, SecretString=json.dumps(GOOD_SECRET))


def json_lines(logs: str) -> list[dict[str, Any]]:
    """The function's JSON log lines and EMF metric blobs (other output ignored)."""
    found = []
    for line in logs.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def metric(records: list[dict[str, Any]], name: str) -> float | None:
    """The sum of one EMF metric over the invocation's blobs; None if never emitted."""
    values = [v for r in records if "_aws" in r and name in r for v in _as_list(r[name])]
    return float(sum(values)) if values else None


def _as_list(value: Any) -> list[float]:
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]
