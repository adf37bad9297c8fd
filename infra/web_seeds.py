"""Web seeds from a private bucket: a CloudFront distribution with origin access control (OAC).

A bucket that blocks public access answers an anonymous GET with 403, so its own URL is no
web seed. CloudFront signs its origin requests (OAC, SigV4) and the bucket policy lets exactly
this distribution GetObject under the configured prefixes: the objects there become publicly
readable through the distribution (which is what a web seed is), and nothing else does.

- HTTPS only for viewers (HTTP redirects), GET/HEAD/OPTIONS.
- Range requests: CloudFront serves byte ranges itself and forwards Range to S3 on a miss; the
  cache key holds no header, so one cached object answers every range.
- CORS for browser clients (WebTorrent): a response headers policy (`*`, Range allowed,
  Content-Range/Length, Accept-Ranges and ETag exposed); preflights are answered at the edge by a
  CloudFront Function, since S3 without a CORS configuration refuses OPTIONS.
- The same function refuses keys outside the configured prefixes before S3 is asked.
- One bucket per distribution, so the web seed has no bucket in its path:
  `https://<domain>/{folder}` (clients append the torrent's name, BEP 19).
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import nag

# Objects replaced under the same key are served from the edge cache at most this long
# (unless the object's own Cache-Control says otherwise, within the bounds below).
DEFAULT_TTL = cdk.Duration.hours(1)
MAX_TTL = cdk.Duration.days(1)
CORS_ALLOW_HEADERS = ("Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since")
CORS_EXPOSE_HEADERS = ("Content-Range", "Content-Length", "Accept-Ranges", "ETag")
CORS_METHODS = ("GET", "HEAD", "OPTIONS")
PREFLIGHT_MAX_AGE_SECONDS = 86400
UPDATE_IMPORTED_POLICY_WARNING = "@aws-cdk/aws-cloudfront-origins:updateImportedBucketPolicyOac"


def viewer_request_code(prefixes: tuple[str, ...]) -> str:
    """The CloudFront Function (JS 2.0): answer CORS preflights, refuse keys outside prefixes."""
    allowed = [p for p in prefixes if p]  # "" = the whole bucket: nothing to check
    preflight = {
        "access-control-allow-origin": {"value": "*"},
        "access-control-allow-methods": {"value": ", ".join(CORS_METHODS)},
        "access-control-allow-headers": {"value": ", ".join(CORS_ALLOW_HEADERS)},
        "access-control-max-age": {"value": str(PREFLIGHT_MAX_AGE_SECONDS)},
    }
    return f"""\
var PREFIXES = {json.dumps(allowed)};
var PREFLIGHT = {json.dumps(preflight)};
function handler(event) {{
  var request = event.request;
  if (request.method === 'OPTIONS') {{
    return {{ statusCode: 204, statusDescription: 'No Content', headers: PREFLIGHT }};
  }}
  if (PREFIXES.length === 0) {{
    return request;
  }}
  var key;
  try {{
    key = decodeURIComponent(request.uri.substring(1));
  }} catch (e) {{
    return {{ statusCode: 400, statusDescription: 'Bad Request' }};
  }}
  for (var i = 0; i < PREFIXES.length; i++) {{
    if (key.indexOf(PREFIXES[i]) === 0) {{
      return request;
    }}
  }}
  return {{ statusCode: 403, statusDescription: 'Forbidden' }};
}}
"""


class WebSeedDistribution(Construct):
    """A CloudFront distribution serving one bucket's prefixes as a BEP 19 web seed."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        prefixes: tuple[str, ...],
        label: str,
        log_bucket: s3.IBucket,
        owns_bucket_policy: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = bucket
        self.prefixes = prefixes
        stack = cdk.Stack.of(self)
        self.function = cloudfront.Function(
            self,
            "ViewerRequest",
            comment="s3torrent web seed: CORS preflight, keys inside the configured prefixes",
            code=cloudfront.FunctionCode.from_inline(viewer_request_code(prefixes)),
            runtime=cloudfront.FunctionRuntime.JS_2_0,
        )
        self.cache_policy = cloudfront.CachePolicy(
            self,
            "Cache",
            comment="s3torrent web seed: path only in the key; ranges served from one object",
            default_ttl=DEFAULT_TTL,
            max_ttl=MAX_TTL,
            min_ttl=cdk.Duration.seconds(0),
            header_behavior=cloudfront.CacheHeaderBehavior.none(),
            query_string_behavior=cloudfront.CacheQueryStringBehavior.none(),
            cookie_behavior=cloudfront.CacheCookieBehavior.none(),
            enable_accept_encoding_gzip=False,  # pieces are bytes: never re-encoded
            enable_accept_encoding_brotli=False,
        )
        self.headers_policy = cloudfront.ResponseHeadersPolicy(
            self,
            "Cors",
            comment="s3torrent web seed: CORS for browser BitTorrent clients (WebTorrent)",
            cors_behavior=cloudfront.ResponseHeadersCorsBehavior(
                access_control_allow_credentials=False,
                access_control_allow_headers=list(CORS_ALLOW_HEADERS),
                access_control_allow_methods=list(CORS_METHODS),
                access_control_allow_origins=["*"],
                access_control_expose_headers=list(CORS_EXPOSE_HEADERS),
                access_control_max_age=cdk.Duration.seconds(PREFLIGHT_MAX_AGE_SECONDS),
                origin_override=True,
            ),
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=cdk.Duration.days(365), override=True
                ),
            ),
        )
        origin = origins.S3BucketOrigin.with_origin_access_control(bucket)
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"s3torrent web seed for s3://{label}/"[:128],
            default_behavior=cloudfront.BehaviorOptions(
                origin=origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD_OPTIONS,
                cached_methods=cloudfront.CachedMethods.CACHE_GET_HEAD,
                cache_policy=self.cache_policy,
                response_headers_policy=self.headers_policy,
                compress=False,
                function_associations=[
                    cloudfront.FunctionAssociation(
                        function=self.function,
                        event_type=cloudfront.FunctionEventType.VIEWER_REQUEST,
                    )
                ],
            ),
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_logging=True,
            log_bucket=log_bucket,
            log_file_prefix="s3torrent-web-seed/",
        )
        # What the bucket policy must allow: GetObject under the prefixes, for this distribution.
        self.policy_statement = iam.PolicyStatement(
            sid="S3TorrentWebSeedCloudFront",
            principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
            actions=["s3:GetObject"],
            resources=[bucket.arn_for_objects(f"{prefix}*") for prefix in prefixes],
            conditions={
                "StringEquals": {
                    "AWS:SourceArn": stack.format_arn(
                        service="cloudfront",
                        region="",
                        resource="distribution",
                        resource_name=self.distribution.distribution_id,
                    )
                }
            },
        )
        if not owns_bucket_policy:
            # A policy written by this stack would replace the one the bucket's owner keeps:
            # the statement to add goes out as an output instead (stack.py), and CDK's own
            # warning about it is answered here.
            cdk.Annotations.of(self).acknowledge_warning(
                UPDATE_IMPORTED_POLICY_WARNING,
                "Existing bucket: its owner adds the WebSeedBucketPolicyStatement output to the "
                "bucket policy (docs/deploy.md); this stack never replaces that policy.",
            )
        self._acknowledge_findings()

    @property
    def web_seed(self) -> str:
        """The runtime web_seeds template: the distribution serves one bucket, no bucket in path."""
        return f"https://{self.distribution.distribution_domain_name}/{{folder}}"

    def policy_statement_json(self) -> str:
        """The bucket-policy statement as JSON (tokens resolved at deploy), for an output."""
        return cdk.Stack.of(self).to_json_string(self.policy_statement.to_statement_json())

    def _acknowledge_findings(self) -> None:
        nag.acknowledge(
            self.distribution,
            "CFR1",
            "No geo restriction: a web seed serves torrent data to BitTorrent clients wherever "
            "they are, like the public prefix it fronts; restricting countries would break "
            "downloads for some peers without protecting anything that is not already public.",
        )
        nag.acknowledge(
            self.distribution,
            "CFR2",
            "No WAF web ACL: the distribution serves read-only GET/HEAD of objects that are "
            "public by design (a web seed), a viewer-request function refuses keys outside the "
            "configured prefixes, and CloudFront's built-in DDoS protection (Shield Standard) "
            "applies; a web ACL costs a monthly fee plus per-request charges for little gain.",
        )
        nag.acknowledge(
            self.distribution,
            "CFR4",
            "The default *.cloudfront.net certificate: CloudFront fixes its viewer security "
            "policy (TLSv1) and a minimum of TLS 1.2 can only be set with a custom domain and an "
            "ACM certificate, which this stack does not configure. Viewers are redirected to "
            "HTTPS; modern BitTorrent clients negotiate TLS 1.2 or 1.3.",
        )
