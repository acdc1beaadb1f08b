"""The web client's edge: the UI bucket, CloudFront with origin access control, and WAF.

Lives in us-east-1 whatever the stage's region: a CLOUDFRONT-scope web ACL can only be made
there, and keeping the bucket and distribution beside it avoids cross-region references.
The distribution uses CloudFront's own certificate (`*.cloudfront.net`), whose TLS policy
AWS fixes; a custom domain with an ACM certificate would let us require TLS 1.2.
API Gateway cannot put a WAF web ACL on a WebSocket API: that API is guarded by the
authorizer and stage throttling (the post-deploy step), the page by this ACL, and the REST
API by its own REGIONAL ACL (infra/stacks/waf.py, the same rules).
"""
from __future__ import annotations

from typing import Any

from aws_cdk import (
    Aws,
    CfnOutput,
    Duration,
    RemovalPolicy,
    Stack,
)
from aws_cdk import (
    aws_cloudfront as cloudfront,
)
from aws_cdk import (
    aws_cloudfront_origins as origins,
)
from aws_cdk import (
    aws_s3 as s3,
)
from constructs import Construct

from infra import outputs, resources
from infra.stacks.waf import web_acl
from infra.stages import Stage
from infra.web_csp import AWS_CONNECT_SOURCES, content_security_policy

EDGE_REGION = "us-east-1"  # where a CLOUDFRONT-scope web ACL, and its metrics, must live


def web_acl_name(stage: str) -> str:
    """The web ACL's name, also its metric name: the `WebACL` dimension of its AWS/WAFV2 metrics."""
    return f"{resources.PROJECT}-{stage}-web"


class EdgeStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, stage: Stage, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        ui = resources.bucket("ui")
        self.bucket = s3.Bucket(
            self, "UiBucket",
            bucket_name=ui.physical_name(stage.name, Aws.ACCOUNT_ID),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,  # a bad upload of web/ can be rolled back
            lifecycle_rules=[s3.LifecycleRule(
                id="old-versions", noncurrent_version_expiration=Duration.days(30),
                abort_incomplete_multipart_upload_after=Duration.days(ui.abort_multipart_days))],
            removal_policy=RemovalPolicy.DESTROY if not stage.deletion_protection else RemovalPolicy.RETAIN,
        )
        self.web_acl = web_acl(self, "WebAcl", name=web_acl_name(stage.name), waf_scope="CLOUDFRONT",
                               requests_per_5min_per_ip=stage.waf_requests_per_5min_per_ip)
        headers = cloudfront.ResponseHeadersPolicy(
            self, "SecurityHeaders",
            response_headers_policy_name=f"{resources.PROJECT}-{stage.name}-security-headers",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(730), include_subdomains=True, preload=True,
                    override=True),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.STRICT_ORIGIN_WHEN_CROSS_ORIGIN,
                    override=True),
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=content_security_policy(AWS_CONNECT_SOURCES),
                    override=True),
            ),
        )
        self.distribution = cloudfront.Distribution(
            self, "Distribution",
            comment=f"{resources.PROJECT} {stage.name} web client",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=headers,
                compress=True,
            ),
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            web_acl_id=self.web_acl.attr_arn,
        )
        CfnOutput(self, outputs.bucket_name("ui"), value=self.bucket.bucket_name)
        CfnOutput(self, outputs.DISTRIBUTION_DOMAIN, value=self.distribution.distribution_domain_name)
        CfnOutput(self, outputs.DISTRIBUTION_ID, value=self.distribution.distribution_id)
        CfnOutput(self, outputs.WEB_ACL_ARN, value=self.web_acl.attr_arn)
