"""Data and identity: Cognito, the DynamoDB tables, the context bucket and its key, the GitHub secret.

Tables, buckets and the secret are built from infra/resources.py, the definition the local
stack also reads.
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
    aws_cognito as cognito,
)
from aws_cdk import (
    aws_dynamodb as dynamodb,
)
from aws_cdk import (
    aws_kms as kms,
)
from aws_cdk import (
    aws_s3 as s3,
)
from aws_cdk import (
    aws_secretsmanager as secretsmanager,
)
from constructs import Construct

from infra import outputs, resources
from infra.stages import Stage

_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER,
          "B": dynamodb.AttributeType.BINARY}


def _attribute(attr: resources.Attribute) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=attr.name, type=_TYPES[attr.type])


class DataStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, stage: Stage, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.stage = stage
        # Data outlives a stack deletion in prod; dev and staging clean up after themselves.
        self.removal = RemovalPolicy.RETAIN if stage.deletion_protection else RemovalPolicy.DESTROY
        self._user_pool()
        self.tables = {t.key: self._table(t) for t in resources.TABLES}
        self.context_key = kms.Key(
            self, "ContextKey", alias=f"alias/{resources.PROJECT}-{stage.name}-context",
            description="Encrypts users' context files", enable_key_rotation=True, removal_policy=self.removal)
        self.buckets = {b.key: self._bucket(b) for b in resources.BUCKETS if not b.cdn}
        self.secrets = {s.key: self._secret(s) for s in resources.SECRETS}
        CfnOutput(self, outputs.ACCOUNT, value=Aws.ACCOUNT_ID)
        CfnOutput(self, outputs.REGION, value=Aws.REGION)
        CfnOutput(self, outputs.CONTEXT_KEY_ARN, value=self.context_key.key_arn)

    def _user_pool(self) -> None:
        plus = self.stage.threat_protection
        pool = cognito.UserPool(
            self, "UserPool",
            user_pool_name=f"{resources.PROJECT}-{self.stage.name}",
            self_sign_up_enabled=False,  # the team invites its users
            sign_in_aliases=cognito.SignInAliases(username=True, email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            password_policy=cognito.PasswordPolicy(min_length=12, require_digits=True, require_lowercase=True,
                                                   require_uppercase=True, require_symbols=True),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.PLUS if plus else cognito.FeaturePlan.ESSENTIALS,
            standard_threat_protection_mode=(cognito.StandardThreatProtectionMode.FULL_FUNCTION if plus
                                             else None),
            deletion_protection=self.stage.deletion_protection,
            removal_policy=self.removal,
        )
        client = pool.add_client(
            "IdeClient",
            user_pool_client_name="ide",
            generate_secret=False,  # IDEs and the browser cannot keep a secret
            auth_flows=cognito.AuthFlow(user_password=True, user_srp=True),
            access_token_validity=Duration.hours(1),
            id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(30),
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
        )
        CfnOutput(self, outputs.USER_POOL_ID, value=pool.user_pool_id)
        CfnOutput(self, outputs.USER_POOL_CLIENT_ID, value=client.user_pool_client_id)
        CfnOutput(self, outputs.ISSUER, value=pool.user_pool_provider_url)
        self.user_pool = pool

    def _table(self, table: resources.Table) -> dynamodb.TableV2:
        built = dynamodb.TableV2(
            self, outputs.table_name(table.key).removesuffix("Name"),
            table_name=table.physical_name(self.stage.name),
            partition_key=_attribute(table.partition_key),
            sort_key=_attribute(table.sort_key) if table.sort_key else None,
            billing=dynamodb.Billing.on_demand(),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            time_to_live_attribute=table.ttl_attribute,
            deletion_protection=self.stage.deletion_protection,
            removal_policy=self.removal,
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=index.name, partition_key=_attribute(index.partition_key),
                    sort_key=_attribute(index.sort_key) if index.sort_key else None,
                    projection_type=dynamodb.ProjectionType.ALL)
                for index in table.indexes
            ] or None,
        )
        CfnOutput(self, outputs.table_name(table.key), value=built.table_name)
        return built

    def _bucket(self, bucket: resources.Bucket) -> s3.Bucket:
        built = s3.Bucket(
            self, outputs.bucket_name(bucket.key).removesuffix("Name"),
            bucket_name=bucket.physical_name(self.stage.name, Aws.ACCOUNT_ID),
            encryption=s3.BucketEncryption.KMS if bucket.customer_key else s3.BucketEncryption.S3_MANAGED,
            encryption_key=self.context_key if bucket.customer_key else None,
            bucket_key_enabled=bucket.customer_key,  # one KMS call per object key, not per request
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            lifecycle_rules=[s3.LifecycleRule(
                id="abort-incomplete-uploads",
                abort_incomplete_multipart_upload_after=Duration.days(bucket.abort_multipart_days))] + [
                # Objects tagged by the app expire after the stage's setting of the rule (idle
                # sessions' objects: session_ttl_days; users' own context files:
                # context_file_ttl_days), the same value infra/sync_config.py gives the app.
                s3.LifecycleRule(id=rule.id, tag_filters={rule.tag_key: rule.tag_value},
                                 expiration=Duration.days(rule.expiration_days(getattr(self.stage, rule.stage_field))))
                for rule in bucket.expiry_rules] + ([
                # A bucket of short-lived objects (chat uploads): whatever is left expires, tag or not.
                s3.LifecycleRule(id="expire-objects", expiration=Duration.days(bucket.expiration_days))]
                if bucket.expiration_days else []),
            # Browsers upload large context files with presigned PUTs and read large messages
            # with presigned GETs: the signature, not the origin, is what guards them.
            cors=[s3.CorsRule(allowed_methods=[s3.HttpMethods(m) for m in resources.BROWSER_CORS["AllowedMethods"]],
                              allowed_origins=resources.BROWSER_CORS["AllowedOrigins"],
                              allowed_headers=resources.BROWSER_CORS["AllowedHeaders"],
                              exposed_headers=resources.BROWSER_CORS["ExposeHeaders"],
                              max_age=resources.BROWSER_CORS["MaxAgeSeconds"])],
            removal_policy=self.removal,
        )
        CfnOutput(self, outputs.bucket_name(bucket.key), value=built.bucket_name)
        return built

    def _secret(self, secret: resources.Secret) -> secretsmanager.Secret:
        built = secretsmanager.Secret(
            self, outputs.secret_arn(secret.key).removesuffix("Arn"),
            secret_name=secret.physical_name(self.stage.name),
            description="GitHub App: app id, private key, installation ids (JSON). Set after deploy.",
            removal_policy=self.removal,
        )
        CfnOutput(self, outputs.secret_arn(secret.key), value=built.secret_arn)
        return built
