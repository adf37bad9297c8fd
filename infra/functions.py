"""One helper that gives every s3torrent function the same defaults.

arm64 on the newest Python runtime, the Powertools public layer, JSON logs into an explicit
log group with retention, active tracing, and a role of its own that starts with nothing but
writing to that log group (no AWSLambdaBasicExecutionRole: it grants logs on `*`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import nag
from infra.config import LOG_RETENTION_DAYS
from s3torrent import observability

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
# Who publishes the public Powertools for AWS Lambda (Python) v3 layer, by partition. The
# commercial regions share one account; China publishes from its own (Powertools' docs list
# arn:aws-cn:lambda:cn-north-1:498634801083:layer:AWSLambdaPowertoolsPythonV3-...), and only in
# cn-north-1 as far as those docs say. Elsewhere (GovCloud, cn-northwest-1, ...) the stack
# refuses at synth when it knows the region, and otherwise fails the deploy with the reason.
POWERTOOLS_ACCOUNT = "017000801446"
POWERTOOLS_CHINA_ACCOUNT = "498634801083"
POWERTOOLS_CHINA_REGIONS = ("cn-north-1",)


class PowertoolsLayerUnavailable(ValueError):
    """The public Powertools layer is not published in the region the stack deploys to."""


# The `service` dimension and the namespace of every metric, as the runtime code names them.
SERVICE_NAME = observability.SERVICE
METRICS_NAMESPACE = observability.NAMESPACE
# What ships, as an allow-list in .gitignore syntax (the last matching line wins): ignore
# everything under lambda_src/, take back the s3torrent package's folders and modules, then drop
# what no handler imports, bytecode caches and dotfiles (.env, editor lock files) wherever they
# are. So an editor backup (`x.py~`), the editable install's s3torrent.egg-info/ or any other
# stray file never reaches Lambda.
ASSET_ALLOW_LIST = (
    "*",
    "!/s3torrent/",
    "!/s3torrent/**/",
    "!/s3torrent/**/*.py",
    "/s3torrent/cli/",  # the CLI, local only: it starts s3torrent_local, which Lambda lacks
    "__pycache__/",
    ".*",
)


def powertools_layer_arn(scope: Construct, version: int) -> str:
    """The public Powertools v3 layer for this runtime and architecture, in the stack's region.

    An environment-agnostic stack knows its partition only at deploy time, so the account is
    chosen there (`Fn::If` on `AWS::Partition`); a region without the layer is refused at synth
    when the stack names its region, else by a CloudFormation rule at deploy time.
    """
    python = RUNTIME.name.replace(".", "")  # python3.14 -> python314, the layer's naming
    arch = ARCHITECTURE.name  # "arm64" or "x86_64", as the layer names spell them
    stack = cdk.Stack.of(scope)
    region = stack.region
    if not cdk.Token.is_unresolved(region):
        if region.startswith("cn-") and region not in POWERTOOLS_CHINA_REGIONS:
            raise PowertoolsLayerUnavailable(
                f"the public Powertools layer is not published in {region} (China: "
                f"{', '.join(POWERTOOLS_CHINA_REGIONS)} only); deploy there instead"
            )
        if region.startswith("us-gov-"):
            raise PowertoolsLayerUnavailable(
                f"{region}: this stack does not know the Powertools layer account of AWS "
                "GovCloud (US); it is not supported yet"
            )
    unsupported = "S3TorrentPowertoolsLayerRegion"
    if stack.node.try_find_child(unsupported) is None:
        china = cdk.Fn.condition_equals(cdk.Aws.PARTITION, "aws-cn")
        cdk.CfnRule(
            stack,
            unsupported,
            assertions=[
                cdk.CfnRuleAssertion(
                    assert_=cdk.Fn.condition_or(
                        cdk.Fn.condition_equals(cdk.Aws.PARTITION, "aws"),
                        cdk.Fn.condition_and(
                            china,
                            cdk.Fn.condition_contains(
                                list(POWERTOOLS_CHINA_REGIONS), cdk.Aws.REGION
                            ),
                        ),
                    ),
                    assert_description=(
                        "The public Powertools for AWS Lambda layer is published in the "
                        "commercial regions and in "
                        f"{', '.join(POWERTOOLS_CHINA_REGIONS)} only: not in this region."
                    ),
                )
            ],
        )
        cdk.CfnCondition(stack, "S3TorrentInChina", expression=china)
    account = cdk.Fn.condition_if(
        "S3TorrentInChina", POWERTOOLS_CHINA_ACCOUNT, POWERTOOLS_ACCOUNT
    ).to_string()
    return (
        f"arn:{cdk.Aws.PARTITION}:lambda:{cdk.Aws.REGION}:{account}:layer:"
        f"AWSLambdaPowertoolsPythonV3-{python}-{arch}:{version}"
    )


def retention(days: int) -> logs.RetentionDays:
    """The RetentionDays member for a number of days (the enum lists them in the same order)."""
    members = [member for member in logs.RetentionDays if member.name != "INFINITE"]
    return dict(zip(LOG_RETENTION_DAYS, members, strict=True))[days]


def lambda_code(path: str | None = None) -> lambda_.Code:
    """The one code asset all functions share: lambda_src/'s runtime modules, no bundling."""
    if path is None:
        beside = Path(__file__).resolve().parent.parent / "lambda_src"  # a source checkout
        path = str(beside) if beside.is_dir() else "lambda_src"  # else: the CDK app's folder
    return lambda_.Code.from_asset(
        path, exclude=list(ASSET_ALLOW_LIST), ignore_mode=cdk.IgnoreMode.GIT
    )


class TorrentFunction(Construct):
    """A Lambda function with s3torrent's defaults, its own role and its own log group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        handler: str,
        description: str,
        memory_mb: int,
        timeout_seconds: int,
        environment: Mapping[str, str],
        log_retention_days: int,
        log_level: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=retention(log_retention_days),
            removal_policy=cdk.RemovalPolicy.RETAIN,  # logs are evidence; teardown keeps them
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"s3torrent {construct_id.lower()} function",
        )
        nag.grant(
            self,
            self.role,
            iam.PolicyStatement(
                sid="WriteOwnLogGroup",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            ),
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=code,
            handler=handler,
            description=description,
            memory_size=memory_mb,
            timeout=cdk.Duration.seconds(timeout_seconds),
            role=self.role,
            layers=[layer],
            environment={
                **environment,
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": log_level,
            },
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel[
                log_level.replace("WARNING", "WARN")
            ],
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            log_group=self.log_group,
        )
        nag.acknowledge(
            self,
            "IAM5[Resource::*]",
            "Active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no "
            "resource-level permissions (AWS X-Ray service authorization reference), so AWS "
            "requires Resource '*'; the actions only upload this function's own trace data.",
        )

    @property
    def name(self) -> str:
        """The deployed function name (a token until deploy)."""
        return self.function.function_name
