"""Names of the CDK stacks and of their outputs: shared by the stacks and the sync step.

Plain data, so `python -m infra.sync_config` runs without importing CDK.
"""
from __future__ import annotations

from infra.resources import PROJECT

ACCOUNT = "Account"
REGION = "Region"
USER_POOL_ID = "UserPoolId"
USER_POOL_CLIENT_ID = "UserPoolClientId"
ISSUER = "Issuer"
CONTEXT_KEY_ARN = "ContextKeyArn"
SUBNET_IDS = "SubnetIds"  # comma-separated
SECURITY_GROUP_ID = "SecurityGroupId"
DISTRIBUTION_DOMAIN = "DistributionDomainName"
DISTRIBUTION_ID = "DistributionId"
WEB_ACL_ARN = "WebAclArn"  # the web page's (CLOUDFRONT scope, us-east-1)
API_WEB_ACL_ARN = "ApiWebAclArn"  # the REST API's (REGIONAL, the stage's region)
ALARM_TOPIC_ARN = "AlarmTopicArn"
DASHBOARD_NAME = "DashboardName"
HEALTH_CANARY_NAME = "HealthCanaryName"
AUDIT_TRAIL_ARN = "AuditTrailArn"
AUDIT_BUCKET_NAME = "AuditBucketName"

STACK_PARTS = ("data", "network", "edge", "waf", "monitoring", "audit")


def stack_name(stage: str, part: str) -> str:
    return f"{PROJECT}-{stage}-{part}"


def _camel(key: str) -> str:
    return "".join(word.capitalize() for word in key.replace("_", "-").split("-"))


def table_name(key: str) -> str:
    return f"{_camel(key)}TableName"


def bucket_name(key: str) -> str:
    return f"{_camel(key)}BucketName"


def secret_arn(key: str) -> str:
    return f"{_camel(key)}SecretArn"
