"""Security monitoring on the audit trail: the CIS AWS Foundations benchmark's CloudWatch controls.

One metric filter per check on the trail's log group, counting matching events into a per-stage
namespace, and one alarm per metric into the stage's alarm topic. What each alarm means and what to do
first is in docs/OPERATIONS.md ("CIS alarms"); the alarm's description says it in a line.
"""
from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import (
    Duration,
)
from aws_cdk import (
    aws_cloudwatch as cw,
)
from aws_cdk import (
    aws_cloudwatch_actions as cw_actions,
)
from aws_cdk import (
    aws_logs as logs,
)
from aws_cdk import (
    aws_sns as sns,
)
from constructs import Construct

from chalicelib.observability import metric_names
from infra import resources
from infra.stages import Stage

FIVE_MINUTES = Duration.minutes(5)


def _any_event(*names: str) -> str:
    """`($.eventName = A) || ($.eventName = B) ...`: one of these API calls."""
    return " || ".join(f"($.eventName = {name})" for name in names)


@dataclass(frozen=True)
class Check:
    slug: str  # the alarm is `<project>-<stage>-cis-<slug>`
    metric: str
    pattern: str  # CloudWatch Logs filter pattern over CloudTrail's JSON events
    description: str  # what happened and the first step; docs/OPERATIONS.md has the rest


CHECKS: tuple[Check, ...] = (
    Check("root-usage", "RootAccountUsage",
          '{ $.userIdentity.type = "Root" && $.userIdentity.invokedBy NOT EXISTS '
          '&& $.eventType != "AwsServiceEvent" }',
          "The account's root user made a call or signed in. Unless a planned root task is under way, treat it "
          "as a compromised account: check who holds the root credentials and rotate them"),
    Check("unauthorized-api-calls", "UnauthorizedApiCalls",
          '{ ($.errorCode = "*UnauthorizedOperation") || ($.errorCode = "AccessDenied*") }',
          "Many API calls were refused (AccessDenied, UnauthorizedOperation). Find the caller in the trail's "
          "log group: one of our roles missing a permission after a change, or someone probing a credential"),
    Check("console-signin-without-mfa", "ConsoleSigninWithoutMfa",
          '{ ($.eventName = "ConsoleLogin") && ($.additionalEventData.MFAUsed != "Yes") '
          '&& ($.userIdentity.type = "IAMUser") && ($.responseElements.ConsoleLogin = "Success") }',
          "An IAM user signed in to the console without MFA. Ask the user; if it was not them, disable the "
          "user's password and keys. Either way require MFA for them"),
    Check("iam-policy-changes", "IamPolicyChanges",
          "{ " + _any_event(
              "CreatePolicy", "DeletePolicy", "CreatePolicyVersion", "DeletePolicyVersion", "SetDefaultPolicyVersion",
              "PutRolePolicy", "DeleteRolePolicy", "AttachRolePolicy", "DetachRolePolicy",
              "PutUserPolicy", "DeleteUserPolicy", "AttachUserPolicy", "DetachUserPolicy",
              "PutGroupPolicy", "DeleteGroupPolicy", "AttachGroupPolicy", "DetachGroupPolicy") + " }",
          "An IAM policy was created, changed, attached or detached. Expected during a deploy (the caller is the "
          "CloudFormation execution role); otherwise find who and what in the trail and review the change"),
    Check("cloudtrail-changes", "CloudTrailChanges",
          "{ " + _any_event("CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging",
                            "PutEventSelectors") + " }",
          "A CloudTrail trail was created, changed, stopped or deleted. Check that the audit trail still logs "
          "(aws cloudtrail get-trail-status); a StopLogging outside a deploy is an attempt to go unseen"),
    Check("kms-key-disabled-or-deleted", "KmsKeyDisabledOrScheduledForDeletion",
          '{ ($.eventSource = "kms.amazonaws.com") && (' + _any_event("DisableKey", "ScheduleKeyDeletion") + ") }",
          "A customer KMS key was disabled or scheduled for deletion: data encrypted with it becomes unreadable. "
          "If not planned, re-enable it or cancel the deletion (aws kms cancel-key-deletion) now"),
    Check("s3-bucket-policy-changes", "S3BucketPolicyChanges",
          '{ ($.eventSource = "s3.amazonaws.com") && (' + _any_event(
              "PutBucketAcl", "PutBucketPolicy", "DeleteBucketPolicy", "PutBucketCors", "DeleteBucketCors",
              "PutBucketLifecycle", "DeleteBucketLifecycle", "PutBucketReplication", "DeleteBucketReplication",
              "PutBucketPublicAccessBlock", "DeleteBucketPublicAccessBlock") + ") }",
          "An S3 bucket's policy, ACL, CORS, lifecycle, replication or public access block changed. Expected "
          "during a deploy; otherwise check the bucket is still private and the change was intended"),
    Check("security-group-changes", "SecurityGroupChanges",
          "{ " + _any_event(
              "CreateSecurityGroup", "DeleteSecurityGroup", "AuthorizeSecurityGroupIngress",
              "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress",
              "ModifySecurityGroupRules") + " }",
          "A security group or its rules changed. Expected during a deploy of the network stack; otherwise look "
          "for a rule open to 0.0.0.0/0 and revert it"),
    Check("nacl-changes", "NetworkAclChanges",
          "{ " + _any_event(
              "CreateNetworkAcl", "CreateNetworkAclEntry", "DeleteNetworkAcl", "DeleteNetworkAclEntry",
              "ReplaceNetworkAclEntry", "ReplaceNetworkAclAssociation") + " }",
          "A network ACL or its entries changed (our stacks make none). Find who in the trail and revert it "
          "unless planned"),
)
UNAUTHORIZED = "unauthorized-api-calls"


def namespace(stage: str) -> str:
    """Per stage: two stages' trails in one account both see every event, and must not add up."""
    return f"{metric_names.NAMESPACE}/CIS/{stage}"


def alarm_name(stage: str, check: Check) -> str:
    return f"{resources.PROJECT}-{stage}-cis-{check.slug}"


class CisAlarms(Construct):
    """The CIS checks' metric filters on the trail's log group and their alarms into the alarm topic."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: Stage, log_group: logs.CfnLogGroup,
                 topic: sns.ITopic) -> None:
        super().__init__(scope, construct_id)
        for check in CHECKS:
            construct = "".join(word.capitalize() for word in check.slug.split("-"))
            metric_filter = logs.CfnMetricFilter(
                self, f"{construct}Filter", log_group_name=log_group.ref, filter_pattern=check.pattern,
                filter_name=f"cis-{check.slug}",
                metric_transformations=[logs.CfnMetricFilter.MetricTransformationProperty(
                    metric_namespace=namespace(stage.name), metric_name=check.metric, metric_value="1",
                    unit="Count")])
            # Any matching event alarms, except refused calls: a few are everyday noise (a console page
            # probing what it may list), so those alarm above the stage's threshold.
            threshold = stage.unauthorized_calls_per_5min if check.slug == UNAUTHORIZED else 0
            description = (f"More than {threshold} in 5 minutes. " if threshold else "") + check.description
            alarm = cw.Alarm(
                self, construct, alarm_name=alarm_name(stage.name, check),
                alarm_description=f"{description}. See docs/OPERATIONS.md, CIS alarms.",
                metric=cw.Metric(namespace=namespace(stage.name), metric_name=check.metric, statistic="Sum",
                                 period=FIVE_MINUTES),
                threshold=threshold, comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1, datapoints_to_alarm=1, treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
            alarm.node.add_dependency(metric_filter)
            alarm.add_alarm_action(cw_actions.SnsAction(topic))
            alarm.add_ok_action(cw_actions.SnsAction(topic))
