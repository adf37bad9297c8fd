"""The artefact as Lambda runs it: the synthesized asset, a clean venv with only what the
runtime and the Powertools layer carry, Lambda's environment, moto's server over HTTP.

Each invocation is a cold start in a fresh interpreter (tests.support.lambda_runtime.invoke).
The stack is the `default` one of the session synth (cdk.json as shipped); its bucket, queues
and table are created on moto's server and their names and URLs stand in for the template's
references.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.artefact.deployment import Deployment, check_torrent, run
from tests.support.handlers import load_event
from tests.support.lambda_runtime import (
    LAYER_POWERTOOLS,
    Function,
    functions,
    lambda_venv,
    pinned_version,
)
from tests.support.synth import Synth, cdk_json_context, session_synth

pytestmark = [pytest.mark.integration, pytest.mark.infra]

STACK = "S3TorrentDefault"
BUCKET_ID = "S3TorrentBucket57283589"


@pytest.fixture(scope="module")
def synth() -> Synth:
    return session_synth()


@pytest.fixture(scope="module")
def python() -> Path:
    return lambda_venv()


@pytest.fixture(scope="module")
def lambdas(synth: Synth) -> dict[str, Function]:
    return functions(synth.default, synth.outdir, STACK)


@pytest.fixture(scope="module")
def deployment(moto_endpoint: str, synth: Synth) -> Iterator[Deployment]:
    yield Deployment(moto_endpoint, synth.default, bucket_id=BUCKET_ID)


def drain_worker(
    python: Path,
    lambdas: dict[str, Function],
    deployment: Deployment,
    environment: dict[str, str | None] | None = None,
) -> int:
    """Feed the worker queue to the worker until it is empty; how many records it handled."""
    handled = 0
    for _ in range(5):
        event = deployment.sqs_event(deployment.worker_queue)
        if not event["Records"]:
            return handled
        result = run(python, lambdas["worker"], event, deployment, environment=environment).result
        assert result == {"batchItemFailures": []}, result
        deployment.delete(deployment.worker_queue, event, result)
        handled += len(event["Records"])
    raise AssertionError("the worker queue never emptied")


def api_event(
    method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None
) -> dict[str, Any]:
    """An API Gateway REST proxy event (IAM-authenticated caller) for `method path`."""
    event = copy.deepcopy(load_event("apigw_post_torrents.json"))
    event.update(
        resource="/{proxy+}",
        path=path,
        httpMethod=method,
        pathParameters={"proxy": path.lstrip("/")},
        queryStringParameters=query,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
        body=None if body is None else json.dumps(body),
    )
    event["requestContext"].update(resourcePath="/{proxy+}", httpMethod=method, path=f"/prod{path}")
    return event


# --- the pins -----------------------------------------------------------------------------------


def test_the_venv_holds_the_layers_powertools(synth: Synth, lambdas: dict[str, Function]) -> None:
    layer_version = int(cdk_json_context()["s3torrent:defaults"]["powertools_layer_version"])
    for function in lambdas.values():
        (layer,) = function.layers
        assert json.dumps(layer).endswith(f':{layer_version}"]]}}'), layer
    assert layer_version in LAYER_POWERTOOLS, "map the layer version to its Powertools release"
    assert pinned_version("aws-lambda-powertools") == LAYER_POWERTOOLS[layer_version]


# --- the worker ---------------------------------------------------------------------------------


def test_an_upload_gets_its_torrent_and_a_delete_removes_it(
    python: Path, lambdas: dict[str, Function], deployment: Deployment
) -> None:
    key, data = "uploads/a b+c.bin", bytes(range(256)) * 1200 + b"tail"
    deployment.s3.put_object(Bucket=deployment.bucket, Key=key, Body=data)
    assert drain_worker(python, lambdas, deployment) >= 1
    raw = deployment.s3.get_object(Bucket=deployment.bucket, Key=f"{key}.torrent")["Body"].read()
    check_torrent(raw, data, "a b+c.bin")

    deployment.s3.delete_object(Bucket=deployment.bucket, Key=key)
    drain_worker(python, lambdas, deployment)
    listed = deployment.s3.list_objects_v2(Bucket=deployment.bucket, Prefix="uploads/")
    assert [o["Key"] for o in listed.get("Contents", [])] == []


def test_an_object_over_the_part_size_is_built_in_parts(
    python: Path, lambdas: dict[str, Function], deployment: Deployment
) -> None:
    """Fan-out as Lambda runs it: the upload's invocation queues the parts, the next one
    hashes them and, counting the last, writes the torrent (docs/fanout.md)."""
    key, data = "big/parts.bin", bytes(range(251)) * 2000  # 502,000 bytes: 31 pieces
    small_parts = {"S3TORRENT_FANOUT_PART_BYTES": "65536", "S3TORRENT_PIECE_LENGTH": "16384"}
    deployment.s3.put_object(Bucket=deployment.bucket, Key=key, Body=data)
    # The upload's event, then its 8 parts (31 pieces, 4 a part), and more events.
    assert drain_worker(python, lambdas, deployment, small_parts) >= 9
    raw = deployment.s3.get_object(Bucket=deployment.bucket, Key=f"{key}.torrent")["Body"].read()
    check_torrent(raw, data, "parts.bin")
    (table,) = [
        name
        for lid, name in deployment.fakes.items()
        if lid.startswith("S3TorrentBackfills") and "." not in lid
    ]
    items = deployment.dynamodb.scan(TableName=table)["Items"]
    builds = [item for item in items if item["backfill_id"]["S"].startswith("fanout:")]
    assert [
        (item["key"]["S"], item["status"]["S"], item["parts"]["N"], item["parts_done"]["N"])
        for item in builds
    ] == [(key, "done", "8", "8")]


def test_an_s3_batch_operations_task_succeeds(
    python: Path, lambdas: dict[str, Function], deployment: Deployment
) -> None:
    key, data = "batch/report.pdf", b"%PDF" * 5000
    deployment.s3.put_object(Bucket=deployment.bucket, Key=key, Body=data)
    event = load_event("s3_batch_operations.json", bucket=deployment.bucket)
    event["tasks"][0]["s3Key"] = key
    result = run(python, lambdas["worker"], event, deployment).result
    assert [r["resultCode"] for r in result["results"]] == ["Succeeded"], result
    raw = deployment.s3.get_object(Bucket=deployment.bucket, Key=f"{key}.torrent")["Body"].read()
    check_torrent(raw, data, "report.pdf")
    drain_worker(python, lambdas, deployment)  # the notifications of the two puts


# --- the API ------------------------------------------------------------------------------------


def test_the_api_serves_torrents_backfills_and_its_openapi(
    python: Path, lambdas: dict[str, Function], deployment: Deployment
) -> None:
    api, bucket = lambdas["api"], deployment.bucket
    key, data = "api/movie.mkv", b"\x1a\x45\xdf\xa3" * 40_000
    deployment.s3.put_object(Bucket=bucket, Key=key, Body=data)

    got = run(python, api, api_event("GET", f"/{bucket}/{key}", query={"torrent": ""}), deployment)
    response = got.result
    assert response["statusCode"] == 200, response
    body = response["body"]
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode("latin-1")
    check_torrent(raw, data, "movie.mkv")

    posted = run(
        python, api, api_event("POST", "/torrents", body={"bucket": bucket, "key": key}), deployment
    ).result
    assert posted["statusCode"] in (200, 201), posted

    started = run(
        python, api, api_event("POST", "/backfills", body={"bucket": bucket}), deployment
    ).result
    assert started["statusCode"] == 202, started
    backfill_id = json.loads(started["body"])["id"]
    status = run(python, api, api_event("GET", f"/backfills/{backfill_id}"), deployment).result
    assert status["statusCode"] == 200, status
    assert json.loads(status["body"])["id"] == backfill_id

    spec = run(python, api, api_event("GET", "/openapi.json"), deployment).result
    assert spec["statusCode"] == 200, spec
    assert "/backfills" in json.loads(spec["body"])["paths"]


# --- the backfill -------------------------------------------------------------------------------


def test_the_schedule_walks_the_bucket_into_torrents(
    python: Path, lambdas: dict[str, Function], deployment: Deployment
) -> None:
    drain_worker(python, lambdas, deployment)
    s3, bucket = deployment.s3, deployment.bucket
    objects = {f"walk/{n}.dat": bytes([n]) * (20_000 + n) for n in range(3)}
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    for message in deployment.sqs_event(deployment.worker_queue)["Records"]:
        s3_ack: dict[str, Any] = {"batchItemFailures": []}  # the uploads' notifications
        deployment.delete(deployment.worker_queue, {"Records": [message]}, s3_ack)

    tick = load_event("eventbridge_scheduled.json")
    scheduled = run(python, lambdas["backfill"], tick, deployment)
    assert scheduled.result["started"], scheduled.result
    for _ in range(5):  # starts and continuations on the backfill queue, jobs to the worker
        event = deployment.sqs_event(deployment.backfill_queue)
        if not event["Records"]:
            break
        result = run(python, lambdas["backfill"], event, deployment).result
        assert result == {"batchItemFailures": []}, result
        deployment.delete(deployment.backfill_queue, event, result)
    drain_worker(python, lambdas, deployment)
    for key, data in objects.items():
        raw = s3.get_object(Bucket=bucket, Key=f"{key}.torrent")["Body"].read()
        check_torrent(raw, data, key.rsplit("/", 1)[-1])
