"""The HTTPS API: API Gateway REST (REGIONAL), IAM auth on every method, one Lambda behind it.

Routes: the S3-compatible `GET /{bucket}/{key+}?torrent`, `POST /torrents`,
`GET /torrents/{bucket}/{key+}`, `POST /backfills`, `GET /backfills/{id}`,
`GET /feeds/{bucket}[/{prefix+}]`, `GET /browse/{bucket}[/{prefix+}]`, `GET /openapi.json`.
The S3-compatible route is anonymous (auth NONE) only when public prefixes are configured: the
AWS CLI signs for `s3`, which API Gateway's IAM auth (SigV4 for `execute-api`) rejects, and
S3 itself once served `?torrent` anonymously on publicly readable objects. The handler then
answers only keys inside `public_prefixes`; everything else stays behind IAM on `/torrents/...`.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra import nag
from infra.config import DeploySettings
from infra.functions import TorrentFunction, retention

# One JSON line per request: who called (IAM identity), what, how it ended, where it went wrong.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "caller": "$context.identity.caller",
    "user": "$context.identity.user",
    "userArn": "$context.identity.userArn",
    "userAgent": "$context.identity.userAgent",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "path": "$context.path",
    "protocol": "$context.protocol",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationStatus": "$context.integrationStatus",
    "errorMessage": "$context.error.message",
    "integrationErrorMessage": "$context.integrationErrorMessage",
    "xrayTraceId": "$context.xrayTraceId",
}


class TorrentApi(Construct):
    """The REST API in front of the api function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploySettings,
        handler: TorrentFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        auth = (
            apigw.AuthorizationType.IAM
            if config.api_auth == "iam"
            else apigw.AuthorizationType.NONE
        )
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=retention(config.log_retention_days),
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.rest_api = apigw.RestApi(
            self,
            "Api",
            # Named after the stack: the 5XX alarm and the dashboard select API Gateway metrics
            # by ApiName, so two stacks' APIs (or any other API called "Api") never mix.
            rest_api_name=f"{cdk.Stack.of(self).stack_name}-api",
            description="s3torrent: GetObjectTorrent, torrents, backfills (IAM auth)",
            endpoint_configuration=apigw.EndpointConfiguration(types=[apigw.EndpointType.REGIONAL]),
            binary_media_types=list(config.api_binary_media_types),
            cloud_watch_role=config.api_account_cloudwatch_role,
            default_method_options=apigw.MethodOptions(authorization_type=auth),
            deploy_options=apigw.StageOptions(
                stage_name=config.api_stage_name,
                throttling_rate_limit=config.api_throttle_rate_limit,
                throttling_burst_limit=config.api_throttle_burst_limit,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # full bodies/headers in logs would leak signatures
                metrics_enabled=True,
                tracing_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
            ),
        )
        # The stack exports the URL as `ApiUrl`; drop RestApi's own auto-named duplicate output.
        self.rest_api.node.try_remove_child("Endpoint")
        # API Gateway writes execution logs to this group and creates it itself, without
        # retention, if it does not exist when the stage first logs: create it first, with the
        # configured retention, and make the stage wait for it.
        self.execution_logs = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=(
                f"API-Gateway-Execution-Logs_{self.rest_api.rest_api_id}/{config.api_stage_name}"
            ),
            retention=retention(config.log_retention_days),
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.rest_api.deployment_stage.node.add_dependency(self.execution_logs)
        # Required path parameters are checked at the gateway; bodies are validated by the
        # handler (Powertools + pydantic), the one schema, which also sees them decoded (with
        # `*/*` binary media types API Gateway hands bodies over base64-encoded).
        self.validator = self.rest_api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        integration = apigw.LambdaIntegration(
            handler.function, proxy=True, allow_test_invoke=False, timeout=cdk.Duration.seconds(29)
        )
        self.methods: dict[str, apigw.Method] = {}
        root = self.rest_api.root

        def add(
            resource: apigw.IResource,
            verb: str,
            path_params: list[str],
            *,
            optional: dict[str, bool] | None = None,
            authorization: apigw.AuthorizationType | None = None,
        ) -> None:
            params = {f"method.request.path.{name}": True for name in path_params}
            method = resource.add_method(
                verb,
                integration,
                request_validator=self.validator,
                request_parameters={**params, **(optional or {})},
                authorization_type=authorization,
            )
            self.methods[f"{verb} {resource.path}"] = method

        add(root.add_resource("openapi.json"), "GET", [])
        torrents = root.add_resource("torrents")
        add(torrents, "POST", [])
        add(torrents.add_resource("{bucket}").add_resource("{key+}"), "GET", ["bucket", "key"])
        backfills = root.add_resource("backfills")
        add(backfills, "POST", [])
        add(backfills.add_resource("{id}"), "GET", ["id"])

        # Feeds and pages: anonymous exactly when `?torrent` is (feed readers and browsers
        # cannot sign for execute-api); the handler serves public prefixes only to them.
        # Literal first segments win over `{bucket}` in API Gateway, so these shadow buckets
        # named `feeds` and `browse` on the S3-compatible route except with `?torrent`, which
        # the handler turns back into GetObjectTorrent (docs/publishing.md).
        anonymous_reads = config.public_route and config.api_auth == "iam"
        read_auth = apigw.AuthorizationType.NONE if anonymous_reads else None
        for name in ("feeds", "browse"):
            top = root.add_resource(name).add_resource("{bucket}")
            add(top, "GET", ["bucket"], authorization=read_auth)
            add(top.add_resource("{prefix+}"), "GET", ["bucket", "prefix"], authorization=read_auth)
        if anonymous_reads:
            for path in (
                "/feeds/{bucket}",
                "/feeds/{bucket}/{prefix+}",
                "/browse/{bucket}",
                "/browse/{bucket}/{prefix+}",
            ):
                nag.acknowledge(
                    self.methods[f"GET {path}"],
                    "APIG4",
                    "Anonymous by configuration, as GET /{bucket}/{key+}?torrent: public_prefixes "
                    "is set, and feed readers and browsers cannot sign for execute-api. The "
                    "handler answers anonymous callers only inside the public prefixes (403 "
                    "AccessDenied elsewhere) and never outside the allowlist; stage throttling "
                    "bounds abuse.",
                )

        s3_route = root.add_resource("{bucket}").add_resource("{key+}")
        s3_optional = {
            "method.request.querystring.torrent": False,
            "method.request.header.x-amz-request-payer": False,
            "method.request.header.x-amz-expected-bucket-owner": False,
        }
        if config.public_route and config.api_auth == "iam":
            add(
                s3_route,
                "GET",
                ["bucket", "key"],
                optional=s3_optional,
                authorization=apigw.AuthorizationType.NONE,
            )
            nag.acknowledge(
                self.methods["GET /{bucket}/{key+}"],
                "APIG4",
                "Anonymous by configuration: public_prefixes is set, so "
                "GET /{bucket}/{key+}?torrent answers unsigned requests the way S3 once served "
                "?torrent for public objects (the AWS CLI signs for 's3', which execute-api IAM "
                "auth rejects). The handler serves only keys inside the configured public "
                "prefixes and answers 403 AccessDenied for every other key; stage throttling "
                "bounds abuse. All other methods use AWS_IAM.",
            )
        else:
            add(s3_route, "GET", ["bucket", "key"], optional=s3_optional)

        if config.api_auth == "none":
            reason = (
                f"api_auth is 'none' by explicit operator choice: {config.api_auth_none_reason}"
            )
            cdk.Annotations.of(self).add_warning_v2(
                "s3torrent:apiAuthNone", f"Every API method is open to the internet. {reason}"
            )
            for method in self.methods.values():
                nag.acknowledge(method, "APIG4", reason)

        nag.acknowledge(
            self.rest_api,
            "COG4",
            "Callers are AWS principals, authorized by AWS_IAM (SigV4 for execute-api) with the "
            "account's own IAM policies; there is no end-user population that a Cognito user "
            "pool would manage.",
        )
        if config.api_waf_web_acl_arn:
            wafv2.CfnWebACLAssociation(
                self,
                "WebAcl",
                resource_arn=self.rest_api.deployment_stage.stage_arn,
                web_acl_arn=config.api_waf_web_acl_arn,
            )
        else:
            nag.acknowledge(
                self.rest_api,
                "APIG3",
                "No WAF web ACL by default (api_waf_web_acl_arn associates one): every method "
                "requires AWS_IAM SigV4 authentication, so unauthenticated floods are rejected by "
                "API Gateway before any integration runs, and the stage throttles requests. A WAF "
                "adds cost that an IAM-only API for an account's own principals rarely needs.",
            )
        if config.api_account_cloudwatch_role:
            cdk.Annotations.of(self).add_warning_v2(
                "s3torrent:apiAccountCloudWatchRole",
                "This stack sets API Gateway's account-wide CloudWatch Logs role "
                "(AWS::ApiGateway::Account) for the whole region: it REPLACES any role the account "
                "already uses, for every API there. If the account has one, deploy with "
                "api_account_cloudwatch_role=false (docs/deploy.md).",
            )
            nag.acknowledge(
                self.rest_api,
                "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                "API Gateway's account-level CloudWatch Logs role, needed for execution and access "
                "logging; the AWS-managed policy is the one AWS documents for it and only allows "
                "writing to CloudWatch Logs (set api_account_cloudwatch_role=false if the account "
                "already has one).",
            )

    @property
    def url(self) -> str:
        """The stage's invoke URL, ending in `/`."""
        return self.rest_api.url
