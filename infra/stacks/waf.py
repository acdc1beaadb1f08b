"""WAF web ACLs: the rules both of ours share, and the REST API's REGIONAL web ACL (its own small stack).

The edge stack puts a CLOUDFRONT-scope ACL in front of the web page (us-east-1); this stack makes a
REGIONAL one in the stage's region for the REST API (`/health`, `/me`, `/usage`), which
`python -m infra.post_deploy` associates with the API's stage once `chalice deploy` made it (the
CDK app never sees the REST API: Chalice owns it). API Gateway cannot put WAF on a WebSocket API.
"""
from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra import outputs, resources
from infra.stages import Stage

# Suited to a JSON API as much as to a page: OWASP-style common rules (no body is over 8 KB on our
# GET-only REST routes), request patterns known to be malicious, and Amazon's IP reputation list.
MANAGED_RULE_GROUPS = (
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
)


def api_web_acl_name(stage: str) -> str:
    """The REST API's web ACL, also its metric name: the `WebACL` dimension of its AWS/WAFV2 metrics.
    post_deploy treats an associated ACL of this name (an earlier copy of the stack's) as ours."""
    return f"{resources.PROJECT}-{stage}-api"


def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True)


def web_acl(scope: Construct, construct_id: str, *, name: str, waf_scope: str,
            requests_per_5min_per_ip: int) -> wafv2.CfnWebACL:
    """Allow by default; block an IP above the rate, then whatever a managed rule group blocks."""
    rules = [wafv2.CfnWebACL.RuleProperty(
        name="rate-per-ip", priority=0,
        action=wafv2.CfnWebACL.RuleActionProperty(block={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                limit=requests_per_5min_per_ip, aggregate_key_type="IP")),
        visibility_config=visibility("rate-per-ip"),
    )]
    for priority, group in enumerate(MANAGED_RULE_GROUPS, start=1):
        rules.append(wafv2.CfnWebACL.RuleProperty(
            name=group, priority=priority,
            override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                    vendor_name="AWS", name=group)),
            visibility_config=visibility(group),
        ))
    return wafv2.CfnWebACL(
        scope, construct_id,
        name=name,
        scope=waf_scope,
        default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
        rules=rules,
        visibility_config=visibility(name),
    )


class WafStack(Stack):
    """The REST API's REGIONAL web ACL; its ARN is an output the sync step records for post_deploy."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: Stage, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.web_acl = web_acl(self, "ApiWebAcl", name=api_web_acl_name(stage.name), waf_scope="REGIONAL",
                               requests_per_5min_per_ip=stage.api_waf_requests_per_5min_per_ip)
        CfnOutput(self, outputs.API_WEB_ACL_ARN, value=self.web_acl.attr_arn)
