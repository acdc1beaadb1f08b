"""Audit logging: the stage's CloudTrail trail, its key and its bucket.

Every region's management events (who changed what in the account: IAM, Lambda, API Gateway,
KMS, Cognito administration, ...) and the S3 data events of the context bucket (who wrote or
deleted, in prod also read, a user's file), with log file validation (signed hourly digests), encrypted with a
customer key, into a private bucket that keeps them for the stage's `audit_retention_days`.
The bucket has S3 Object Lock in governance mode: every log stays undeletable and unchangeable by
ordinary means for the stage's `audit_lock_days`. The trail also delivers to a CloudWatch Logs group
(same key, the stage's `log_retention_days`) where the CIS benchmark's metric filters and alarms watch
it (infra/stacks/cis.py), into the stage's alarm topic.
Made only where the stage's `audit_trail` is on: an account already recorded by an
organisation trail turns it off (a second copy of management events is billed).
"""
from __future__ import annotations

from typing import Any

from aws_cdk import (
    ArnFormat,
    Aws,
    CfnOutput,
    Duration,
    RemovalPolicy,
    Stack,
)
from aws_cdk import (
    aws_cloudtrail as cloudtrail,
)
from aws_cdk import (
    aws_iam as iam,
)
from aws_cdk import (
    aws_kms as kms,
)
from aws_cdk import (
    aws_logs as logs,
)
from aws_cdk import (
    aws_s3 as s3,
)
from aws_cdk import (
    aws_sns as sns,
)
from constructs import Construct

from infra import outputs, resources
from infra.stacks.cis import CisAlarms
from infra.stacks.monitoring import alarm_topic_name
from infra.stages import Stage

CLOUDTRAIL = iam.ServicePrincipal("cloudtrail.amazonaws.com")
GLACIER_AFTER_DAYS = 90
# Glacier bills at least 90 days of storage per object: moving logs there pays only when they stay longer.
GLACIER_WORTH_IT_DAYS = GLACIER_AFTER_DAYS + 90


def trail_name(stage: str) -> str:
    return f"{resources.PROJECT}-{stage}-audit"


def log_group_name(stage: str) -> str:
    return f"/aws/cloudtrail/{trail_name(stage)}"


class AuditStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, stage: Stage, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.stage = stage
        name = trail_name(stage.name)
        # Built, not referenced: a trail names itself in its key and bucket policies before it exists.
        self.trail_arn = self.format_arn(service="cloudtrail", resource="trail", resource_name=name)
        # Audit logs outlive the stack on every stage: they expire by the lifecycle rule, not by a teardown.
        self.key = kms.Key(self, "AuditKey", alias=f"alias/{name}", enable_key_rotation=True,
                           description=f"Encrypts the CloudTrail logs of {resources.PROJECT} {stage.name}",
                           removal_policy=RemovalPolicy.RETAIN)
        self._allow_cloudtrail_to_encrypt()
        self.bucket = self._bucket()
        self.log_group, delivery_role = self._log_group()
        trail = cloudtrail.CfnTrail(
            self, "Trail",
            trail_name=name,
            is_logging=True,
            is_multi_region_trail=True,
            include_global_service_events=True,  # IAM, STS, CloudFront: recorded in us-east-1
            enable_log_file_validation=True,
            kms_key_id=self.key.key_arn,
            s3_bucket_name=self.bucket.bucket_name,
            advanced_event_selectors=self._event_selectors(),
            cloud_watch_logs_log_group_arn=self.log_group.attr_arn,
            cloud_watch_logs_role_arn=delivery_role.role_arn,
        )
        # CloudTrail checks its access to the bucket (and, through the role it references, to the log group)
        # when the trail is made.
        trail.node.add_dependency(self.bucket.policy)
        # The monitoring stack's topic, by name: no cross-stack export pins it (app.py orders the stacks).
        topic = sns.Topic.from_topic_arn(self, "AlarmTopic", self.format_arn(
            service="sns", resource=alarm_topic_name(stage.name), arn_format=ArnFormat.NO_RESOURCE_NAME))
        CisAlarms(self, "Cis", stage=stage, log_group=self.log_group, topic=topic)
        CfnOutput(self, outputs.AUDIT_TRAIL_ARN, value=trail.attr_arn)
        CfnOutput(self, outputs.AUDIT_BUCKET_NAME, value=self.bucket.bucket_name)

    def _allow_cloudtrail_to_encrypt(self) -> None:
        """The key policy CloudTrail needs (AWS's documented one): data keys for this trail's logs only.
        The account's principals decrypt through IAM, which the key's default policy allows."""
        trail_logs = {"StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                     f"arn:{Aws.PARTITION}:cloudtrail:*:{Aws.ACCOUNT_ID}:trail/*"},
                      "StringEquals": {"aws:SourceArn": self.trail_arn}}
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudTrailEncryptsLogs", principals=[CLOUDTRAIL], actions=["kms:GenerateDataKey*"],
            resources=["*"], conditions=trail_logs))
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudTrailDescribesKey", principals=[CLOUDTRAIL], actions=["kms:DescribeKey"],
            resources=["*"], conditions={"StringEquals": {"aws:SourceArn": self.trail_arn}}))

    def _log_group(self) -> tuple[logs.CfnLogGroup, iam.Role]:
        """The trail's copy in CloudWatch Logs, for the CIS alarms and Logs Insights; the bucket stays the
        record. Encrypted with the trail's key, which CloudWatch Logs may use for this group only."""
        name = log_group_name(self.stage.name)
        group_arn = self.format_arn(service="logs", resource="log-group", resource_name=name,
                                    arn_format=ArnFormat.COLON_RESOURCE_NAME)
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchLogsEncryptsTrailLogGroup",
            principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"], conditions={"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": group_arn}}))
        group = logs.CfnLogGroup(self, "TrailLogGroup", log_group_name=name, kms_key_id=self.key.key_arn,
                                 retention_in_days=self.stage.log_retention_days)
        group.apply_removal_policy(RemovalPolicy.RETAIN if self.stage.deletion_protection else RemovalPolicy.DESTROY)
        role = iam.Role(
            self, "TrailToLogsRole",
            description=f"CloudTrail delivers the {trail_name(self.stage.name)} trail to {name}",
            assumed_by=iam.ServicePrincipal(CLOUDTRAIL.service, conditions={
                "StringEquals": {"aws:SourceArn": self.trail_arn}}),
            inline_policies={"deliver": iam.PolicyDocument(statements=[iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{group_arn}:log-stream:*"])])})
        return group, role

    def _bucket(self) -> s3.Bucket:
        days = self.stage.audit_retention_days
        transitions = ([s3.Transition(storage_class=s3.StorageClass.GLACIER,
                                      transition_after=Duration.days(GLACIER_AFTER_DAYS))]
                       if days > GLACIER_WORTH_IT_DAYS else None)
        bucket = s3.Bucket(
            self, "AuditBucket",
            bucket_name=f"{resources.PROJECT}-{self.stage.name}-audit-{Aws.ACCOUNT_ID}",
            # The logs are SSE-KMS with the trail's key; the digest files CloudTrail signs are SSE-S3.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,  # an overwritten or deleted log stays recoverable until it would have expired
            # WORM: no one without s3:BypassGovernanceRetention deletes or overwrites a log version within the
            # lock. An audit bucket made before this has no lock: docs/DEPLOY.md, "Audit bucket lock".
            object_lock_enabled=True,
            object_lock_default_retention=s3.ObjectLockRetention.governance(Duration.days(self.stage.audit_lock_days)),
            lifecycle_rules=[s3.LifecycleRule(
                id="audit-retention", transitions=transitions, expiration=Duration.days(days),
                noncurrent_version_expiration=Duration.days(days),
                abort_incomplete_multipart_upload_after=Duration.days(1))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        this_trail = {"StringEquals": {"aws:SourceArn": self.trail_arn}}
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudTrailAclCheck", principals=[CLOUDTRAIL], actions=["s3:GetBucketAcl"],
            resources=[bucket.bucket_arn], conditions=this_trail))
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudTrailWrite", principals=[CLOUDTRAIL], actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects(f"AWSLogs/{Aws.ACCOUNT_ID}/*")],
            conditions={"StringEquals": {"aws:SourceArn": self.trail_arn,
                                         "s3:x-amz-acl": "bucket-owner-full-control"}}))
        return bucket

    def _event_selectors(self) -> list[cloudtrail.CfnTrail.AdvancedEventSelectorProperty]:
        def field(name: str, *, equals: list[str] | None = None,
                  starts_with: list[str] | None = None) -> cloudtrail.CfnTrail.AdvancedFieldSelectorProperty:
            return cloudtrail.CfnTrail.AdvancedFieldSelectorProperty(field=name, equal_to=equals,
                                                                     starts_with=starts_with)

        context = resources.bucket("context").physical_name(self.stage.name, Aws.ACCOUNT_ID)
        user_files = [
            field("eventCategory", equals=["Data"]),
            field("resources.type", equals=["AWS::S3::Object"]),
            field("resources.ARN", starts_with=[f"arn:{Aws.PARTITION}:s3:::{context}/"]),
        ]
        if not self.stage.audit_object_reads:
            user_files.append(field("readOnly", equals=["false"]))  # PutObject, CopyObject, DeleteObject(s), ...
        return [
            cloudtrail.CfnTrail.AdvancedEventSelectorProperty(
                name="Management events", field_selectors=[field("eventCategory", equals=["Management"])]),
            cloudtrail.CfnTrail.AdvancedEventSelectorProperty(
                name="Objects in the context bucket", field_selectors=user_files),
        ]
