"""docs/DEPLOY.md's "Cost per 1,000 users" against what the CDK app makes: every kind of AWS
resource any stage synthesizes is either priced on a line of the table or known to be free.

A resource type the app starts to make fails here until it is given its line (and the line
its price) or a reason it costs nothing.
"""
from __future__ import annotations

import re

from tests.conftest import ROOT

DEPLOY = (ROOT / "docs" / "DEPLOY.md").read_text()

# Resource type -> the lines of the cost table that price it: (the start of the line's first cell,
# a word its row must hold for this resource).
S3_KMS = "X-Ray, S3, KMS, Secrets Manager, CloudFront"
PRICED: dict[str, tuple[tuple[str, str], ...]] = {
    "AWS::CloudFront::Distribution": ((S3_KMS, "page's bytes"),),
    "AWS::CloudTrail::Trail": (("CloudTrail", "data events"),),
    "AWS::CloudWatch::Alarm": (("CloudWatch", "alarms"), ("Audit log group and CIS alarms", "alarms"),
                               ("Synthetics canary", "alarm")),
    "AWS::CloudWatch::Dashboard": (("CloudWatch", "dashboard"),),
    "AWS::Cognito::UserPool": (("Cognito", "MAU"),),
    "AWS::DynamoDB::GlobalTable": (("DynamoDB", "writes"),),
    "AWS::EC2::EIP": (("VPC", "IPv4"),),  # the NAT gateway's public address
    "AWS::EC2::FlowLog": (("VPC", "flow log"),),
    "AWS::EC2::NatGateway": (("VPC", "NAT gateway"),),
    "AWS::EC2::VPCEndpoint": (("VPC", "interface endpoints"),),
    "AWS::KMS::Key": ((S3_KMS, "customer key"), ("CloudTrail", "trail's key")),
    "AWS::Logs::LogGroup": (("CloudWatch", "logs"), ("Audit log group and CIS alarms", "ingestion"),
                            ("VPC", "CloudWatch Logs")),
    "AWS::Logs::MetricFilter": (("Audit log group and CIS alarms", "metric filters"),),
    "AWS::S3::Bucket": ((S3_KMS, "context storage"), ("Upload bucket", "PUT"), ("CloudTrail", "log storage"),
                        ("Synthetics canary", "artifacts")),
    "AWS::SecretsManager::Secret": ((S3_KMS, "one secret"),),
    "AWS::Synthetics::Canary": (("Synthetics canary", "per run"),),
    "AWS::WAFv2::WebACL": (("WAF", "per web ACL"),),
}
# Resource types AWS does not bill for themselves (what they carry is priced on another line).
FREE = {
    "AWS::Budgets::Budget",  # a budget without actions
    "AWS::CloudFront::OriginAccessControl", "AWS::CloudFront::ResponseHeadersPolicy",
    "AWS::Cognito::UserPoolClient",
    "AWS::EC2::InternetGateway", "AWS::EC2::Route", "AWS::EC2::RouteTable", "AWS::EC2::SecurityGroup",
    "AWS::EC2::SecurityGroupIngress", "AWS::EC2::Subnet",
    "AWS::EC2::SubnetRouteTableAssociation", "AWS::EC2::VPC", "AWS::EC2::VPCGatewayAttachment",
    "AWS::IAM::Policy", "AWS::IAM::Role", "AWS::KMS::Alias",
    "AWS::S3::BucketPolicy", "AWS::SNS::Subscription", "AWS::SNS::TopicPolicy",
    "AWS::SNS::Topic",  # the alarms' e-mails, far inside SNS's free 1,000 a month
}


def cost_rows() -> dict[str, str]:
    """The cost table: each line's first cell -> the whole row."""
    section = DEPLOY.split("## Cost per 1,000 users", 1)[1]
    return {match.group(1).strip("*"): match.group(0)
            for match in re.finditer(r"^\| (?!line \||---)([^|]+?) \|.*$", section, re.M)}


def test_every_resource_the_cdk_app_makes_is_priced_in_deploy_md_or_free(synthesized):
    made = {resource["Type"] for template in synthesized.values()
            for resource in template.get("Resources", {}).values()}
    unknown = sorted(made - set(PRICED) - FREE)
    assert not unknown, (f"the CDK app makes {unknown}: give each its line of docs/DEPLOY.md's cost table "
                         "(and PRICED here), or a reason in FREE")
    rows = cost_rows()
    for kind in sorted(made & set(PRICED)):
        for line, word in PRICED[kind]:
            row = next((row for name, row in rows.items() if name.startswith(line)), None)
            assert row is not None, f"{kind}: no line {line!r} in docs/DEPLOY.md's cost table: {list(rows)}"
            assert word in row, f"{kind}: the line {line!r} of docs/DEPLOY.md's cost table does not price it ({word!r})"
