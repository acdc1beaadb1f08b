"""The CDK stacks of every stage, synthesized offline and asserted on (aws_cdk.assertions)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from chalicelib.config import load_settings
from chalicelib.observability import metric_names as metrics
from infra import outputs, resources, sync_config
from infra.stages import STAGES
from infra.web_csp import AWS_CONNECT_SOURCES, content_security_policy
from tests.infra.conftest import HEALTH_URLS

ALL_STAGES = list(STAGES)


def _resources(template, cfn_type: str) -> dict:
    return template.find_resources(cfn_type)


# Data ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ALL_STAGES)
def test_tables_come_from_the_shared_definition(template, stage):
    t = template(stage, "data")
    protected = STAGES[stage].deletion_protection
    t.resource_count_is("AWS::DynamoDB::GlobalTable", len(resources.TABLES))
    for table in resources.TABLES:
        key_schema = [{"AttributeName": table.partition_key.name, "KeyType": "HASH"}]
        if table.sort_key:
            key_schema.append({"AttributeName": table.sort_key.name, "KeyType": "RANGE"})
        t.has_resource("AWS::DynamoDB::GlobalTable", {
            "Properties": {
                "TableName": table.physical_name(stage),
                "KeySchema": key_schema,
                "AttributeDefinitions": Match.array_with([
                    {"AttributeName": a.name, "AttributeType": a.type} for a in table.attributes()]),
                "BillingMode": "PAY_PER_REQUEST",
                "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS"},
                "TimeToLiveSpecification": {"AttributeName": table.ttl_attribute, "Enabled": True},
                "Replicas": [Match.object_like({
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "DeletionProtectionEnabled": protected,
                })],
                **({"GlobalSecondaryIndexes": [Match.object_like({"IndexName": i.name}) for i in table.indexes]}
                   if table.indexes else {}),
            },
            "DeletionPolicy": "Retain" if protected else "Delete",
        })


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_context_bucket_is_private_tls_only_and_encrypted_with_a_rotating_customer_key(template, stage):
    t = template(stage, "data")
    t.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    key_id = next(iter(_resources(t, "AWS::KMS::Key")))
    t.has_resource_properties("AWS::S3::Bucket", {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [{
            "BucketKeyEnabled": True,
            "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                              "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]}}}]},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "LifecycleConfiguration": {"Rules": Match.array_with([
            Match.object_like({"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}, "Status": "Enabled"}),
            # Idle sessions' offloaded messages and context expire with the sessions (SESSION_TTL_DAYS + 2).
            _rule(resources.SESSION_EXPIRY_RULE, STAGES[stage].session_ttl_days + 2),
            # Users' own context files, CONTEXT_FILE_TTL_DAYS after their last write.
            _rule(resources.CONTEXT_FILE_EXPIRY_RULE, STAGES[stage].context_file_ttl_days),
        ])},
    })
    _assert_tls_only(t)
    t.has_output(outputs.CONTEXT_KEY_ARN, {"Value": {"Fn::GetAtt": [key_id, "Arn"]}})


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_the_upload_bucket_is_private_encrypted_and_keeps_nothing_past_a_day(template, stage):
    t = template(stage, "data")
    key_id = next(iter(_resources(t, "AWS::KMS::Key")))
    name = {"Fn::Join": ["", [resources.bucket("uploads").physical_name(stage, ""), {"Ref": "AWS::AccountId"}]]}
    [(logical_id, bucket)] = [(k, v) for k, v in _resources(t, "AWS::S3::Bucket").items()
                              if v["Properties"]["BucketName"] == name]
    properties = bucket["Properties"]
    customer_key = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]}}
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [{
        "BucketKeyEnabled": True, "ServerSideEncryptionByDefault": customer_key}]
    assert properties["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    rules = {rule["Id"]: rule for rule in properties["LifecycleConfiguration"]["Rules"]}
    # Every object, tagged or not: an upload that no chat used is gone a day after it was written.
    assert rules["expire-objects"] == {"Id": "expire-objects", "ExpirationInDays": 1, "Status": "Enabled"}
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    t.has_output(outputs.bucket_name("uploads"), {"Value": {"Ref": logical_id}})


def _rule(rule: resources.ExpiryRule, days: int):
    return Match.object_like({"Id": rule.id, "ExpirationInDays": days, "Status": "Enabled",
                              "TagFilters": [{"Key": rule.tag_key, "Value": rule.tag_value}]})


@pytest.mark.parametrize("rule, days, expiration", [
    (resources.SESSION_EXPIRY_RULE, 7, 9),  # idle sessions' objects: SESSION_TTL_DAYS + 2
    (resources.CONTEXT_FILE_EXPIRY_RULE, 14, 14),  # users' own files: CONTEXT_FILE_TTL_DAYS
], ids=lambda value: getattr(value, "id", str(value)))
def test_a_stage_with_its_own_expiry_gets_a_matching_rule_and_app_setting(tmp_path, rule, days, expiration):
    """Each of the bucket's expiry rules and the app's setting of it come from one stage setting."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.stacks.data import DataStack

    overrides: dict[str, Any] = {rule.stage_field: days}
    stage = dataclasses.replace(STAGES["staging"], **overrides)
    app = cdk.App(outdir=str(tmp_path))
    t = Template.from_stack(DataStack(app, "ttl-data", stage=stage))
    t.has_resource_properties("AWS::S3::Bucket", {"LifecycleConfiguration": {"Rules": Match.array_with([
        _rule(rule, expiration)])}})
    sample = json.loads((Path(__file__).parent / "cdk-outputs.sample.json").read_text())
    env = sync_config.environment(stage, sync_config.stack_outputs(sample, "staging"))
    assert env[rule.days_setting] == str(days)
    assert getattr(load_settings({**env, "AWS_REGION": "us-east-1"}), rule.stage_field) == days
    for wrong in (0, 3651):  # what the app would refuse, the stage refuses first
        with pytest.raises(ValueError, match=rule.stage_field):
            dataclasses.replace(STAGES["dev"], **{**overrides, rule.stage_field: wrong})


def _assert_tls_only(t) -> None:
    t.has_resource_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Action": "s3:*",
                           "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_user_pool_and_ide_client(template, stage):
    t = template(stage, "data")
    plus = STAGES[stage].threat_protection
    t.has_resource_properties("AWS::Cognito::UserPool", {
        "UserPoolName": f"llm-ide-{stage}",
        "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
        "Policies": {"PasswordPolicy": Match.object_like({"MinimumLength": 12})},
        "UserPoolTier": "PLUS" if plus else "ESSENTIALS",
        "DeletionProtection": "ACTIVE" if STAGES[stage].deletion_protection else "INACTIVE",
        **({"UserPoolAddOns": {"AdvancedSecurityMode": "ENFORCED"}} if plus else {}),
    })
    t.has_resource_properties("AWS::Cognito::UserPoolClient", {
        "ExplicitAuthFlows": Match.array_with(["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH"]),
        "GenerateSecret": False,
        "AccessTokenValidity": 60, "IdTokenValidity": 60, "RefreshTokenValidity": 43200,
        "PreventUserExistenceErrors": "ENABLED", "EnableTokenRevocation": True,
    })
    t.has_resource_properties("AWS::SecretsManager::Secret",
                              {"Name": resources.secret("github-app").physical_name(stage)})


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_every_output_the_sync_step_needs_is_made(synthesized, stage):
    made = {name for (s, _), tpl in synthesized.items() if s == stage for name in tpl.get("Outputs", {})}
    sample = json.loads((Path(__file__).parent / "cdk-outputs.sample.json").read_text())
    needed = set(sync_config.stack_outputs(sample, stage))
    assert needed <= made, needed - made
    assert {p for (s, p) in synthesized if s == stage} == (
        {"data", "edge", "waf", "monitoring"} | ({"network"} if STAGES[stage].vpc else set())
        | ({"audit"} if STAGES[stage].audit_trail else set()))


# Network ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", [s for s in ALL_STAGES if STAGES[s].vpc])
def test_vpc_private_subnets_endpoints_and_one_nat(template, stage):
    t = template(stage, "network")
    t.resource_count_is("AWS::EC2::NatGateway", STAGES[stage].nat_gateways)
    def service(name: str) -> dict:
        return {"Fn::Join": ["", ["com.amazonaws.", {"Ref": "AWS::Region"}, f".{name}"]]}

    for gateway in ("dynamodb", "s3"):
        t.has_resource_properties("AWS::EC2::VPCEndpoint", {"ServiceName": service(gateway),
                                                            "VpcEndpointType": "Gateway"})
    for interface in ("bedrock-runtime", "secretsmanager", "lambda", "xray", "logs"):
        t.has_resource_properties("AWS::EC2::VPCEndpoint", {"ServiceName": service(interface),
                                                            "VpcEndpointType": "Interface", "PrivateDnsEnabled": True})
    t.resource_count_is("AWS::EC2::VPCEndpoint", 7)
    # An execute-api endpoint with private DNS would send post_to_connection to a dead end (403).
    assert "execute-api" not in json.dumps(_resources(t, "AWS::EC2::VPCEndpoint"))
    t.has_resource_properties("AWS::EC2::Subnet", {"MapPublicIpOnLaunch": False})
    t.has_resource_properties("AWS::EC2::SecurityGroup", {
        "GroupDescription": "Chalice functions: HTTPS out only",
        "SecurityGroupEgress": [Match.object_like({"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443})]})


# Edge ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ALL_STAGES)
def test_waf_cloudfront_scope_with_rate_rule_and_managed_groups(template, stage):
    t = template(stage, "edge")
    t.has_resource_properties("AWS::WAFv2::WebACL", {
        "Scope": "CLOUDFRONT",
        "DefaultAction": {"Allow": {}},
        "Rules": Match.array_with([
            Match.object_like({"Action": {"Block": {}}, "Statement": {"RateBasedStatement": {
                "AggregateKeyType": "IP", "Limit": STAGES[stage].waf_requests_per_5min_per_ip}}}),
            *[Match.object_like({"Statement": {"ManagedRuleGroupStatement": {"Name": group, "VendorName": "AWS"}}})
              for group in ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                            "AWSManagedRulesAmazonIpReputationList")],
        ]),
    })


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_cloudfront_https_only_with_oac_waf_and_security_headers(synthesized, template, stage):
    t = template(stage, "edge")
    acl = next(iter(_resources(t, "AWS::WAFv2::WebACL")))
    t.has_resource_properties("AWS::CloudFront::OriginAccessControl", {"OriginAccessControlConfig": {
        "OriginAccessControlOriginType": "s3", "SigningBehavior": "always", "SigningProtocol": "sigv4",
        "Name": Match.any_value()}})
    t.has_resource_properties("AWS::CloudFront::Distribution", {"DistributionConfig": Match.object_like({
        "WebACLId": {"Fn::GetAtt": [acl, "Arn"]},
        "DefaultRootObject": "index.html",
        "ViewerCertificate": Match.absent(),
        "DefaultCacheBehavior": Match.object_like({"ViewerProtocolPolicy": "redirect-to-https",
                                                   "ResponseHeadersPolicyId": Match.any_value()}),
        "Origins": [Match.object_like({"OriginAccessControlId": Match.any_value(),
                                       "S3OriginConfig": {"OriginAccessIdentity": ""}})],
    })})
    headers_policy = Match.object_like({
        "SecurityHeadersConfig": Match.object_like({
            "StrictTransportSecurity": Match.object_like({"AccessControlMaxAgeSec": 63072000,
                                                          "IncludeSubdomains": True}),
            "ContentTypeOptions": {"Override": True},
            "FrameOptions": {"FrameOption": "DENY", "Override": True},
            # The very policy the local stack serves the page under (tests/e2e/test_web_browser.py).
            "ContentSecurityPolicy": Match.object_like({"ContentSecurityPolicy": content_security_policy(
                AWS_CONNECT_SOURCES)}),
        })})
    t.has_resource_properties("AWS::CloudFront::ResponseHeadersPolicy", {"ResponseHeadersPolicyConfig": headers_policy})
    # The UI bucket: private, TLS only, readable by this distribution alone.
    t.has_resource_properties("AWS::S3::Bucket", {"PublicAccessBlockConfiguration": {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}})
    _assert_tls_only(t)
    t.has_resource_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Allow", "Action": "s3:GetObject",
                           "Principal": {"Service": "cloudfront.amazonaws.com"},
                           "Condition": {"StringEquals": {"AWS:SourceArn": Match.any_value()}}})])}})


# Monitoring ------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ALL_STAGES)
def test_every_alarm_notifies_the_topic(template, stage):
    t = template(stage, "monitoring")
    topic = next(iter(_resources(t, "AWS::SNS::Topic")))
    alarms = _resources(t, "AWS::CloudWatch::Alarm")
    names = {a["Properties"]["AlarmName"].removeprefix(f"llm-ide-{stage}-") for a in alarms.values()}
    canary = STAGES[stage].health_canary and stage in HEALTH_URLS
    assert names == {"error-rate", "lambda-throttles", "lambda-errors", "dynamodb-throttles", "upstream-throttled",
                     "chat-latency-p90", "tokens-per-hour", "auth-refusals"} | ({"availability"} if canary else set())
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}]
    body = json.dumps(alarms)
    assert '"Stat": "p90"' in body and metrics.CHAT_LATENCY.name in body
    watched = [metric for metric in _metric_stats(alarms) if metric["Namespace"] == metrics.NAMESPACE]
    # The error rate counts server-side failures only: no client's mistakes or refusals page on-call.
    assert {m["MetricName"] for m in watched} == {metrics.REQUESTS.name, metrics.SERVER_ERRORS.name,
                                                  metrics.UPSTREAM_THROTTLED.name, metrics.CHAT_LATENCY.name,
                                                  metrics.INPUT_TOKENS.name, metrics.OUTPUT_TOKENS.name,
                                                  metrics.AUTH_REFUSED.name}
    for metric in watched:  # the stage-wide dimension set every data point is emitted with
        assert metric["Dimensions"] == [{"Name": metrics.STAGE, "Value": stage}]
    t.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "oncall@example.com"})
    t.has_resource_properties("AWS::SNS::TopicPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Principal": {"Service": "budgets.amazonaws.com"}, "Action": "sns:Publish"})])}})


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_cost_budget_alerts_into_the_topic(template, stage):
    t = template(stage, "monitoring")
    topic = next(iter(_resources(t, "AWS::SNS::Topic")))
    subscriber = [{"SubscriptionType": "SNS", "Address": {"Ref": topic}}]
    t.has_resource_properties("AWS::Budgets::Budget", {
        "Budget": Match.object_like({"BudgetType": "COST", "TimeUnit": "MONTHLY",
                                     "BudgetLimit": {"Amount": STAGES[stage].monthly_budget_usd, "Unit": "USD"}}),
        "NotificationsWithSubscribers": [
            {"Notification": Match.object_like({"NotificationType": "ACTUAL", "Threshold": 80}),
             "Subscribers": subscriber},
            {"Notification": Match.object_like({"NotificationType": "FORECASTED", "Threshold": 100}),
             "Subscribers": subscriber},
        ]})


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_log_retention_for_every_chalice_function(template, stage):
    t = template(stage, "monitoring")
    t.resource_count_is("AWS::Logs::LogGroup", len(resources.FUNCTIONS))
    for function in resources.FUNCTIONS:
        t.has_resource_properties("AWS::Logs::LogGroup", {
            "LogGroupName": f"/aws/lambda/{resources.function_name(stage, function)}",
            "RetentionInDays": STAGES[stage].log_retention_days})


def _dashboard(t) -> dict:
    """The dashboard body as JSON (its few CloudFormation references replaced by text)."""
    dashboard = next(iter(_resources(t, "AWS::CloudWatch::Dashboard").values()))
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "ref" for p in parts))


def _metric_stats(value) -> list[dict]:
    """Every `Metric` (namespace, name, dimensions) inside an alarm's properties."""
    if isinstance(value, dict):
        found = [value] if "MetricName" in value and "Namespace" in value else []
        return found + [m for item in value.values() for m in _metric_stats(item)]
    if isinstance(value, list):
        return [m for item in value for m in _metric_stats(item)]
    return []


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_dashboard_uses_the_apps_metric_names(template, stage):
    widgets = _dashboard(template(stage, "monitoring"))["widgets"]
    titles = {w["properties"]["title"] for w in widgets}
    assert {"Connections opened", "Messages by action", "Errors by code", "Tokens in and out", "Lambda errors",
            "Lambda throttles", "Lambda duration p90 (ms)", "DynamoDB throttles", "Auth refusals by reason",
            "Forbidden by action", "WAF blocked requests by rule (web page)"} <= titles
    plotted: set[tuple[str, str]] = set()
    for widget in widgets:
        for line in widget["properties"].get("metrics", []):
            if isinstance(line[0], dict):  # an expression; its own metrics are lines of their own
                expression = line[0]["expression"]
                if not expression.startswith("SEARCH("):
                    continue
                namespace = expression.split("{", 1)[1].split(",", 1)[0]
                plotted.add((namespace, expression.split('MetricName="', 1)[1].split('"', 1)[0]))
                if namespace == metrics.NAMESPACE:
                    assert f'{metrics.STAGE}="{stage}"' in expression
            else:
                plotted.add((line[0], line[1]))
    assert {(metrics.NAMESPACE, m.name) for m in metrics.ALL} <= plotted
    assert {n for ns, n in plotted if ns == metrics.NAMESPACE} <= {m.name for m in metrics.ALL}
    body = json.dumps(widgets)
    for function in resources.FUNCTIONS:
        assert resources.function_name(stage, function) in body
    for table in resources.TABLES:
        assert table.physical_name(stage) in body


def test_synthesis_reports_no_warning_or_error(cloud_assembly):
    """CDK's annotations flag settings it ignores or deems unsafe: none may be left."""
    found = [f"{stage}-{part} {message.id}: {message.entry.data}"
             for (stage, part), artifact in cloud_assembly.items() for message in artifact.messages
             if message.level.name in ("WARNING", "ERROR")]
    assert not found, found
