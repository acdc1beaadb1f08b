"""Availability monitoring: a CloudWatch Synthetics canary on the stage's public `GET /health`.

It runs infra/health_canary.py every 5 minutes from outside the app (so it sees what a user
sees: DNS, TLS, API Gateway, the REST function) and the monitoring stack alarms on its
SuccessPercent. The URL exists only after `chalice deploy` made the REST API: see infra/app.py.
"""
from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_synthetics as synthetics
from constructs import Construct

from infra import resources

SCRIPT = Path(__file__).resolve().parent.parent / "health_canary.py"
EVERY = Duration.minutes(5)
MAX_CANARY_NAME = 21  # Synthetics' limit: lowercase letters, digits, '-' and '_'


def canary_name(stage: str) -> str:
    name = f"{resources.PROJECT}-{stage}-up"
    if len(name) > MAX_CANARY_NAME:
        raise ValueError(f"canary name {name!r} is longer than {MAX_CANARY_NAME} characters: shorten the stage name")
    return name


class HealthCanary(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, stage: str, url: str) -> None:
        super().__init__(scope, construct_id)
        # Each run's log and result files (no screenshots: no browser), private, kept a month.
        artifacts = s3.Bucket(
            self, "Artifacts", encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, enforce_ssl=True, minimum_tls_version=1.2,
            lifecycle_rules=[s3.LifecycleRule(id="expire-runs", expiration=Duration.days(31))])
        self.canary = synthetics.Canary(
            self, "Canary",
            canary_name=canary_name(stage),
            runtime=synthetics.Runtime.SYNTHETICS_PYTHON_SELENIUM_7_0,
            test=synthetics.Test.custom(code=synthetics.Code.from_inline(SCRIPT.read_text()),
                                        handler="index.handler"),
            environment_variables={"HEALTH_URL": url, "EXPECTED_STAGE": stage, "TIMEOUT_SECONDS": "10"},
            schedule=synthetics.Schedule.rate(EVERY),
            timeout=Duration.seconds(30),
            start_after_creation=True,
            success_retention_period=Duration.days(7),
            failure_retention_period=Duration.days(31),
            artifacts_bucket_location=synthetics.ArtifactsBucketLocation(bucket=artifacts),
            provisioned_resource_cleanup=True,  # its Lambda function and layer go with it
        )

    def success_percent(self) -> cw.Metric:
        return self.canary.metric_success_percent(period=EVERY, statistic="Average",
                                                  label="Health checks passed (%)")
