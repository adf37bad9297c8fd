"""No one in: IAM on the deployed API, no way out of a configured prefix, no write outside
`*.torrent`, no secret in a log line, no endpoint taken from a request."""

from __future__ import annotations

import base64
import copy
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from s3torrent import cli
from s3torrent.handlers import api as api_module
from s3torrent.handlers import worker as worker_handler
from s3torrent.handlers.api import s3_compatible
from s3torrent.handlers.runtime import Runtime
from s3torrent.settings import Settings
from s3torrent.torrent import read_torrent
from s3torrent_local.lambda_context import FakeLambdaContext
from tests.support.faults.events import load, sqs_event
from tests.support.faults.helpers import reference_hashes, torrent_keys
from tests.support.faults.proxy import FaultPolicy, FaultProxy

ROOT = Path(__file__).resolve().parents[2]

# --- the deployed template -------------------------------------------------------------------


@pytest.fixture(scope="session")
def templates() -> dict[str, dict[str, Any]]:
    """The stacks tests/infra synthesizes, from its once-per-process synth (shared, not redone)."""
    from tests.support.synth import session_synth

    synth = session_synth()
    return {
        "S3TorrentDefault": synth.default,
        "S3TorrentFull": synth.full,
        "endpoint": synth.endpoint,
    }


def api_methods(template: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """'<HTTP method> <path>' -> (AuthorizationType, logical id) for every API method."""
    resources = template["Resources"]

    def path_of(ref: Any) -> str:
        if isinstance(ref, dict) and "Fn::GetAtt" in ref:
            return ""  # the API's root resource
        node = resources[ref["Ref"]]["Properties"]
        return f"{path_of(node['ParentId'])}/{node['PathPart']}"

    methods = {}
    for lid, resource in resources.items():
        if resource["Type"] != "AWS::ApiGateway::Method":
            continue
        props = resource["Properties"]
        where = path_of(props["ResourceId"]) or "/"
        methods[f"{props['HttpMethod']} {where}"] = (props.get("AuthorizationType", "NONE"), lid)
    return methods


@pytest.mark.infra
def test_the_deployed_api_refuses_unsigned_calls(templates: dict[str, dict[str, Any]]) -> None:
    """Every method is AWS_IAM; the exceptions are the reads anonymous users may make on
    public prefixes, `GET /{bucket}/{key+}` (?torrent) and the feeds and pages, and only in a
    stack that configures public prefixes (the handler then serves only those)."""
    default = api_methods(templates["S3TorrentDefault"])
    assert len(default) >= 6, default
    assert {m: a for m, (a, _) in default.items() if a != "AWS_IAM"} == {}
    full = api_methods(templates["S3TorrentFull"])
    assert {m: a for m, (a, _) in full.items() if a != "AWS_IAM"} == {
        "GET /{bucket}/{key+}": "NONE",
        "GET /feeds/{bucket}": "NONE",
        "GET /feeds/{bucket}/{prefix+}": "NONE",
        "GET /browse/{bucket}": "NONE",
        "GET /browse/{bucket}/{prefix+}": "NONE",
    }
    assert set(full) == set(default)


def _statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for lid, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            out += [(lid, s) for s in props["PolicyDocument"]["Statement"]]
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                out += [(lid, s) for s in policy["PolicyDocument"]["Statement"]]
    return out


def _function_roles(template: dict[str, Any]) -> set[str]:
    """Logical ids of the roles the Lambda functions run as."""
    roles = set()
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            role = resource["Properties"]["Role"]
            roles.add(role["Fn::GetAtt"][0])
    return roles


def _attached(template: dict[str, Any], owner: str) -> set[str]:
    """The roles a policy (or the role itself) applies to."""
    resource = template["Resources"][owner]
    if resource["Type"] == "AWS::IAM::Role":
        return {owner}
    return {ref["Ref"] for ref in resource["Properties"].get("Roles", []) if "Ref" in ref}


WRITES = ("s3:putobject", "s3:deleteobject", "s3:put*", "s3:delete*")


@pytest.mark.infra
@pytest.mark.parametrize("stack", ["S3TorrentDefault", "S3TorrentFull", "endpoint"])
def test_no_function_can_write_or_delete_a_non_torrent_key(
    templates: dict[str, dict[str, Any]], stack: str
) -> None:
    """Every s3:PutObject/DeleteObject the functions (worker, API, backfill) hold is on
    `*.torrent`; no s3:* or * anywhere. The one other S3 writer is S3 Batch Operations' own
    role, which writes its completion report under the configured report prefix only. The
    `endpoint` stack (buckets on an S3-compatible store) holds no AWS S3 write at all."""
    from infra.nag import flatten_reference

    template = templates[stack]
    functions = _function_roles(template)
    assert len(functions) >= 3, functions
    checked = 0
    for owner, statement in _statements(template):
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        lowered = [a.lower() for a in actions]
        assert "s3:*" not in lowered and "*" not in lowered, (stack, owner, actions)
        risky = [a for a in lowered if a.startswith(WRITES)]
        if not risky:
            continue
        targets = statement["Resource"]
        for target in targets if isinstance(targets, list) else [targets]:
            flat = flatten_reference(target)
            checked += 1
            if _attached(template, owner) & functions:
                assert flat.endswith(".torrent"), f"{stack} {owner} {risky} on {flat}"
            else:
                assert flat.endswith(".torrent") or "/s3torrent-batch-reports/" in flat, (
                    f"{stack} {owner} {risky} on {flat}"
                )
    if stack == "endpoint":
        # Buckets on an S3-compatible store: the functions hold no AWS S3 write at all.
        assert checked == 0
    else:
        assert checked > 0, "no s3:PutObject/DeleteObject grant found: is the worker there?"


# --- a configured prefix cannot be escaped -------------------------------------------------------


@pytest.fixture
def scoped(local_api: Any, s3_client: Any, bucket: str) -> Any:
    for key, body in {
        "pub/a.bin": b"public data",
        "secret.bin": b"outside the prefix",
        "pub/../secret.bin": b"literal dot-dot key",
    }.items():
        s3_client.put_object(Bucket=bucket, Key=key, Body=body)
    return local_api(buckets=[{"name": bucket, "prefix": "pub/"}])


@pytest.mark.integration
def test_a_configured_prefix_cannot_be_escaped(scoped: Any, bucket: str, s3_client: Any) -> None:
    post = scoped.post_json
    # The JSON API.
    assert post("/prod/torrents", {"bucket": bucket, "key": "secret.bin"})[0] == 403
    assert post("/prod/torrents", {"bucket": bucket.upper(), "key": "pub/a.bin"})[0] in (403, 422)
    assert post("/prod/torrents", {"bucket": f"{bucket}/pub", "key": "a.bin"})[0] in (403, 422)
    status, body = post("/prod/torrents", {"bucket": bucket, "key": "pub/../secret.bin"})
    assert status == 201, body  # a literal key inside pub/: its own bytes, not secret.bin's
    assert body["info_hash_v1"] == reference_hashes(b"literal dot-dot key", "pub/../secret.bin")[0]
    for path in (
        f"/prod/torrents/{bucket}/secret.bin",
        f"/prod/torrents/{bucket}/%2E%2E/secret.bin",
        f"/prod/torrents/{bucket}%2Fpub/a.bin",
        f"/prod/{bucket}/secret.bin?torrent",
        f"/prod/{bucket}//pub/a.bin?torrent",
        f"/prod/{bucket.upper()}/pub/a.bin?torrent",
    ):
        status, _, answer = scoped.request("GET", path)
        assert status == 403, (path, status, answer[:300])
    # Backfills: a prefix outside the scope is refused, a wider one is narrowed to it.
    assert post("/prod/backfills", {"bucket": bucket, "prefix": "other/"})[0] == 403
    status, body = post("/prod/backfills", {"bucket": bucket, "prefix": ""})
    assert status == 403 or body.get("prefix") == "pub/", body
    assert "secret.bin.torrent" not in torrent_keys(s3_client, bucket)


@pytest.mark.integration
def test_anonymous_calls_are_served_only_under_public_prefixes(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, s3_client: Any, bucket: str
) -> None:
    """As deployed with public prefixes: API Gateway lets unsigned `?torrent` through, the
    handler refuses every key outside the public prefixes (requests from the internet)."""
    s3_client.put_object(Bucket=bucket, Key="public/a.bin", Body=b"for everyone")
    s3_client.put_object(Bucket=bucket, Key="private/b.bin", Body=b"for IAM callers")
    settings = Settings.from_mapping(
        {
            "buckets": [{"name": bucket}],
            "public_prefixes": [{"name": bucket, "prefix": "public/"}],
            "endpoint_url": moto_endpoint,
        }
    )
    monkeypatch.setattr(api_module, "runtime", Runtime(settings))
    template = load("apigw_get_object_torrent_anonymous.json")
    signed = load("apigw_get_object_torrent.json")

    def call(event_template: dict[str, Any], key: str) -> int:
        event = copy.deepcopy(event_template)
        event["path"] = f"/{bucket}/{quote(key)}"
        event["pathParameters"] = {"proxy": f"{bucket}/{quote(key)}"}
        event["requestContext"]["path"] = f"/prod{event['path']}"
        response = api_module.lambda_handler(event, FakeLambdaContext("s3torrent-api", 29))
        return int(response["statusCode"])

    assert call(template, "public/a.bin") == 200
    assert call(template, "private/b.bin") == 403
    assert call(template, "public/../private/b.bin") == 404  # a literal key; it does not exist
    assert call(signed, "private/b.bin") == 200


def _from_the_internet(event: dict[str, Any], *, signed: bool) -> dict[str, Any]:
    """The event as API Gateway passes it, from a public address, with or without IAM."""
    event = copy.deepcopy(event)
    identity = event["requestContext"]["identity"]
    identity["sourceIp"] = "198.51.100.7"
    for name in ("userArn", "caller", "accessKey", "cognitoIdentityId", "user"):
        identity[name] = identity.get(name) if signed else None
    return event


@pytest.mark.integration
def test_every_route_checks_the_caller_not_only_api_gateway(
    local_api: Any, s3_client: Any, bucket: str
) -> None:
    """Were a method left open at API Gateway (a console edit, a bad deploy), the handler
    itself still serves anonymous callers nothing but reads under the public prefixes."""
    s3_client.put_object(Bucket=bucket, Key="public/a.bin", Body=b"for everyone" * 100)
    s3_client.put_object(Bucket=bucket, Key="private/b.bin", Body=b"for IAM callers" * 100)
    local_api(buckets=[{"name": bucket}], public_prefixes=[{"name": bucket, "prefix": "public/"}])

    def call(name: str, *, signed: bool, path: str | None = None, body: Any = None) -> int:
        event = _from_the_internet(load(name), signed=signed)
        if path is not None:
            event["path"] = path
        if body is not None:
            event["body"], event["isBase64Encoded"] = json.dumps(body), False
        response = api_module.lambda_handler(event, FakeLambdaContext("s3torrent-api", 29))
        return int(response["statusCode"])

    public = {"bucket": bucket, "key": "public/a.bin"}
    post = "apigw_post_torrents.json"
    assert call(post, signed=False, body=public) == 403  # not even on a public prefix
    assert torrent_keys(s3_client, bucket) == []
    assert call(post, signed=True, body=public) == 201
    status = "apigw_get_torrent_status.json"
    assert call(status, signed=False, path=f"/torrents/{bucket}/public/a.bin") == 200
    assert call(status, signed=False, path=f"/torrents/{bucket}/private/b.bin") == 403
    backfill = {"bucket": bucket, "prefix": "public/"}
    assert call("apigw_post_backfills.json", signed=False, body=backfill) == 403
    assert call("apigw_get_backfill.json", signed=False) == 403  # before any lookup
    assert call("apigw_get_backfill.json", signed=True) == 404
    assert call("apigw_post_backfills.json", signed=True, body=backfill) == 202


@pytest.mark.integration
def test_callers_cannot_rewrite_the_torrent_everyone_is_served(
    local_api: Any, s3_client: Any, bucket: str
) -> None:
    """A signed caller's own trackers, web seeds or comment come back to that caller; the
    stored `<key>.torrent`, which anonymous users on public prefixes get, keeps the
    deployment's. Unless the operator lets callers replace it."""
    s3_client.put_object(Bucket=bucket, Key="public/a.bin", Body=b"for everyone" * 1000)
    api = local_api(
        buckets=[{"name": bucket}],
        public_prefixes=[{"name": bucket, "prefix": "public/"}],
        trackers=["udp://tracker.example.org:1337/announce"],
    )
    made = api.post_json("/prod/torrents", {"bucket": bucket, "key": "public/a.bin"})
    assert made[0] == 201, made
    stored = s3_client.get_object(Bucket=bucket, Key="public/a.bin.torrent")["Body"].read()

    hostile = {
        "trackers": ["udp://tracker.attacker.example:6969/announce"],
        "web_seeds": ["https://attacker.example/{key}"],
        "comment": "download the codec from attacker.example",
        "private": True,
    }
    for options in (hostile, {"comment": "x"}, {"trackers": []}, {"web_seeds": []}):
        status, body = api.post_json(
            "/prod/torrents", {"bucket": bucket, "key": "public/a.bin", "options": options}
        )
        assert status == 200 and body["status"] == "custom", body
        after = s3_client.get_object(Bucket=bucket, Key="public/a.bin.torrent")["Body"].read()
        assert after == stored, options
    anonymous = load("apigw_get_object_torrent_anonymous.json")
    anonymous["path"] = f"/{bucket}/public/a.bin"
    served = api_module.lambda_handler(anonymous, FakeLambdaContext("s3torrent-api", 29))
    assert served["statusCode"] == 200
    assert b"attacker" not in base64_body(served)

    # Allowed by the settings: the caller's options become the stored torrent.
    replacing = local_api(
        buckets=[{"name": bucket}],
        public_prefixes=[{"name": bucket, "prefix": "public/"}],
        api_callers_may_replace=True,
    )
    status, body = replacing.post_json(
        "/prod/torrents", {"bucket": bucket, "key": "public/a.bin", "options": {"comment": "ok"}}
    )
    assert status == 201, body
    after = s3_client.get_object(Bucket=bucket, Key="public/a.bin.torrent")["Body"].read()
    assert read_torrent(after).comment == "ok"


def base64_body(response: dict[str, Any]) -> bytes:
    body = response["body"]
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


# --- logs -----------------------------------------------------------------------------------------

ACCESS_KEY = "AKIAS3TORRENTLEAKTEST"
SECRET_KEY = "s3cr3t/NEVER+in+a+log+line/0123456789abcdef"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEKLEAKTESTsessiontoken0123456789"


@pytest.mark.integration
def test_logs_never_hold_credentials_or_signatures(
    monkeypatch: pytest.MonkeyPatch,
    local_api: Any,
    fault_proxy: FaultProxy,
    s3_client: Any,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    caplog.set_level(logging.DEBUG, logger="s3torrent")
    caplog.set_level(logging.DEBUG, logger="s3torrent_local")
    caplog.set_level(logging.INFO)
    for key in ("a.bin", "b.bin", "c.bin", "d.bin"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=key.encode() * 5000)
    api = local_api(buckets=[{"name": bucket}], endpoint_url=fault_proxy.url)

    # 1. ?torrent answered inline; 2. over the inline limit: 307 to a presigned GET.
    status, _, _ = api.request("GET", f"/prod/{bucket}/a.bin?torrent")
    assert status == 200
    monkeypatch.setattr(s3_compatible, "MAX_INLINE_TORRENT_BYTES", 10)
    status, headers, _ = api.request("GET", f"/prod/{bucket}/b.bin?torrent")
    assert status == 307, headers
    location = headers["location"]
    # SigV4 query auth (X-Amz-Signature) on AWS; botocore presigns SigV2 (Signature=) for a
    # custom endpoint unless told s3v4: either way the signature must stay out of the logs.
    marker = "X-Amz-Signature=" if "X-Amz-Signature=" in location else "Signature="
    signature = location.split(marker, 1)[1].split("&", 1)[0]
    assert len(signature) > 20, location
    # 3. POST /torrents, 4. an S3 refusal (403 from the store), 5. the worker, 6. the CLI.
    assert api.post_json("/prod/torrents", {"bucket": bucket, "key": "c.bin"})[0] == 201
    fault_proxy.policy = FaultPolicy()
    fault_proxy.policy.emulations.append(_deny("denied", lambda info: info.key == "d.bin"))
    status, _, _ = api.request("GET", f"/prod/{bucket}/d.bin?torrent")
    assert status == 403
    monkeypatch.setattr(worker_handler, "runtime", Runtime(api.settings))
    body = json.dumps({"type": "s3torrent.job", "bucket": bucket, "key": "d.bin"})
    worker_handler.lambda_handler(sqs_event(body), FakeLambdaContext("s3torrent-worker", 60))
    cli.main(["create", f"s3://{bucket}/d.bin", "--endpoint-url", fault_proxy.url, "--json"])
    cli.main(["create", f"s3://{bucket}/a.bin", "--endpoint-url", fault_proxy.url, "--json"])

    captured = capfd.readouterr()
    # moto's server runs in this process and its werkzeug access log is the *store's* log:
    # it holds every request line, and a presigned ranged GET (s3/direct.py) carries its
    # signature in the URL, as S3's own server access logs would. What must stay clean is
    # what s3torrent writes.
    ours = [r for r in caplog.records if not r.name.startswith("werkzeug")]
    store_lines = re.compile(r'^\S+ - - \[[^]]+\] "')
    streams = [
        line
        for line in (captured.out + "\n" + captured.err).splitlines()
        if not store_lines.match(line) and "werkzeug" not in line
    ]
    text = "\n".join(
        streams + [f"{r.getMessage()} {json.dumps(r.__dict__, default=str)}" for r in ours]
    )
    assert len(ours) > 5 and text.strip()
    for secret in (
        SECRET_KEY,
        SESSION_TOKEN,
        ACCESS_KEY,
        signature,
        "X-Amz-Signature",
        "Signature=",
    ):
        assert secret not in text, f"{secret!r} appears in the logs"
    # The credentials were really used (signed requests reached the store).
    assert any(
        ACCESS_KEY in e.info.headers.get("authorization", "") for e in fault_proxy.policy.log
    )


def _deny(name: str, when: Any) -> Any:
    from tests.support.faults.proxy import Emulation

    return Emulation(name, when, 403, "AccessDenied", "Access Denied")


# --- endpoint_url is deploy-time only -------------------------------------------------------


@pytest.mark.integration
def test_endpoint_url_is_never_taken_from_a_request(
    monkeypatch: pytest.MonkeyPatch,
    local_api: Any,
    moto_endpoint: str,
    s3_client: Any,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A trap endpoint (another proxy to moto, counting requests) is offered in every place a
    caller controls; the service keeps using its configured endpoint and the trap sees nothing."""
    s3_client.put_object(Bucket=bucket, Key="k.bin", Body=b"data" * 100)
    trap = FaultProxy(moto_endpoint).start()
    try:
        api = local_api(buckets=[{"name": bucket}])
        post = api.post_json
        assert (
            post("/prod/torrents", {"bucket": bucket, "key": "k.bin", "endpoint_url": trap.url})[0]
            == 422
        )
        for name in ("endpoint_url", "endpoint", "endpointUrl"):
            options = {name: trap.url}
            status, body = post(
                "/prod/torrents", {"bucket": bucket, "key": "k.bin", "options": options}
            )
            assert status == 422, body
        query = f"torrent&endpoint_url={quote(trap.url)}&endpoint={quote(trap.url)}"
        headers = {
            "x-amz-endpoint-url": trap.url,
            "endpoint-url": trap.url,
            "X-Forwarded-Host": trap.url.removeprefix("http://"),
        }
        status, _, body = api.request("GET", f"/prod/{bucket}/k.bin?{query}", headers=headers)
        assert status == 200, body
        assert read_torrent(body).web_seeds == (f"{moto_endpoint}/{bucket}/",)
        status, body = post(
            "/prod/torrents", {"bucket": bucket, "key": "k.bin"}, **{"x-amz-endpoint-url": trap.url}
        )
        assert status in (200, 201), body
        # The worker: job overrides cannot carry it either.
        monkeypatch.setattr(worker_handler, "runtime", Runtime(api.settings))
        for job in (
            {
                "type": "s3torrent.job",
                "bucket": bucket,
                "key": "k.bin",
                "overrides": {"endpoint_url": trap.url},
            },
            {"type": "s3torrent.job", "bucket": bucket, "key": "k.bin", "endpoint_url": trap.url},
        ):
            response = worker_handler.lambda_handler(
                sqs_event(json.dumps(job)), FakeLambdaContext("s3torrent-worker", 60)
            )
            assert response == {"batchItemFailures": []}
        assert trap.policy.log == [], [e.info.path for e in trap.policy.log]
    finally:
        trap.stop()
