"""Security monitoring on the audit trail and the audit bucket's lock, asserted on the synthesized templates:
the trail's CloudWatch Logs copy, the CIS metric filters and their alarms into the stage's topic, Object Lock."""
from __future__ import annotations

import dataclasses

import pytest

from infra.stacks.cis import CHECKS
from infra.stages import STAGES

AUDITED = [s for s in STAGES if STAGES[s].audit_trail]


def _log_group_arn(stage: str, suffix: str = "") -> dict:
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":logs:", {"Ref": "AWS::Region"}, ":",
                              {"Ref": "AWS::AccountId"}, f":log-group:/aws/cloudtrail/llm-ide-{stage}-audit{suffix}"]]}


def _one(t, kind: str) -> tuple[str, dict]:
    [(logical_id, resource)] = t.find_resources(kind).items()
    return logical_id, resource


def _trail(t) -> dict:
    return _one(t, "AWS::CloudTrail::Trail")[1]["Properties"]


# The CIS AWS Foundations benchmark's CloudWatch controls, as on-call reads them (alarm suffix -> metric,
# and the calls or fields its pattern must match).
EXPECTED = {
    "root-usage": ("RootAccountUsage", ['$.userIdentity.type = "Root"', "$.userIdentity.invokedBy NOT EXISTS",
                                        '$.eventType != "AwsServiceEvent"']),
    "unauthorized-api-calls": ("UnauthorizedApiCalls", ['$.errorCode = "*UnauthorizedOperation"',
                                                        '$.errorCode = "AccessDenied*"']),
    "console-signin-without-mfa": ("ConsoleSigninWithoutMfa", [
        '$.eventName = "ConsoleLogin"', '$.additionalEventData.MFAUsed != "Yes"']),
    "iam-policy-changes": ("IamPolicyChanges", [f"$.eventName = {n}" for n in (
        "DeleteGroupPolicy", "DeleteRolePolicy", "DeleteUserPolicy", "PutGroupPolicy", "PutRolePolicy",
        "PutUserPolicy", "CreatePolicy", "DeletePolicy", "CreatePolicyVersion", "DeletePolicyVersion",
        "AttachRolePolicy", "DetachRolePolicy", "AttachUserPolicy", "DetachUserPolicy", "AttachGroupPolicy",
        "DetachGroupPolicy")]),
    "cloudtrail-changes": ("CloudTrailChanges", [f"$.eventName = {n}" for n in (
        "CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging")]),
    "kms-key-disabled-or-deleted": ("KmsKeyDisabledOrScheduledForDeletion", [
        '$.eventSource = "kms.amazonaws.com"', "$.eventName = DisableKey", "$.eventName = ScheduleKeyDeletion"]),
    "s3-bucket-policy-changes": ("S3BucketPolicyChanges", ['$.eventSource = "s3.amazonaws.com"'] + [
        f"$.eventName = {n}" for n in ("PutBucketAcl", "PutBucketPolicy", "PutBucketCors", "PutBucketLifecycle",
                                       "PutBucketReplication", "DeleteBucketPolicy", "DeleteBucketCors",
                                       "DeleteBucketLifecycle", "DeleteBucketReplication")]),
    "security-group-changes": ("SecurityGroupChanges", [f"$.eventName = {n}" for n in (
        "AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupIngress",
        "RevokeSecurityGroupEgress", "CreateSecurityGroup", "DeleteSecurityGroup")]),
    "nacl-changes": ("NetworkAclChanges", [f"$.eventName = {n}" for n in (
        "CreateNetworkAcl", "CreateNetworkAclEntry", "DeleteNetworkAcl", "DeleteNetworkAclEntry",
        "ReplaceNetworkAclEntry", "ReplaceNetworkAclAssociation")]),
}


@pytest.mark.parametrize("stage", AUDITED)
def test_the_trail_delivers_to_an_encrypted_log_group_kept_for_the_stages_log_retention(template, stage):
    t = template(stage, "audit")
    key, _ = _one(t, "AWS::KMS::Key")
    group_id, group = _one(t, "AWS::Logs::LogGroup")
    assert {k: v for k, v in group["Properties"].items() if k != "Tags"} == {
        "LogGroupName": f"/aws/cloudtrail/llm-ide-{stage}-audit", "KmsKeyId": {"Fn::GetAtt": [key, "Arn"]},
        "RetentionInDays": STAGES[stage].log_retention_days}
    assert group["DeletionPolicy"] == ("Retain" if STAGES[stage].deletion_protection else "Delete")
    role_id, _ = _one(t, "AWS::IAM::Role")
    trail = _trail(t)
    assert trail["CloudWatchLogsLogGroupArn"] == {"Fn::GetAtt": [group_id, "Arn"]}
    assert trail["CloudWatchLogsRoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    # CloudWatch Logs may use the trail's key for this log group only.
    statements = t.find_resources("AWS::KMS::Key")[key]["Properties"]["KeyPolicy"]["Statement"]
    [logs_statement] = [s for s in statements if s.get("Sid") == "CloudWatchLogsEncryptsTrailLogGroup"]
    assert logs_statement["Principal"] == {"Service": {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"},
                                                                         ".amazonaws.com"]]}}
    assert logs_statement["Condition"] == {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": _log_group_arn(stage)}}


@pytest.mark.parametrize("stage", AUDITED)
def test_the_delivery_role_is_for_this_trail_and_writes_only_to_its_log_group(template, stage):
    _, role = _one(template(stage, "audit"), "AWS::IAM::Role")
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceArn"]["Fn::Join"][1][-1] == f":trail/llm-ide-{stage}-audit"
    assert "ManagedPolicyArns" not in role["Properties"]
    [policy] = role["Properties"]["Policies"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert statement["Resource"] == _log_group_arn(stage, ":log-stream:*")


@pytest.mark.parametrize("stage", AUDITED)
def test_each_cis_check_has_a_metric_filter_on_the_trails_log_group(template, stage):
    t = template(stage, "audit")
    group_id, _ = _one(t, "AWS::Logs::LogGroup")
    filters = {f["Properties"]["FilterName"]: f["Properties"]
               for f in t.find_resources("AWS::Logs::MetricFilter").values()}
    assert set(filters) == {f"cis-{slug}" for slug in EXPECTED}
    for slug, (metric, must_match) in EXPECTED.items():
        f = filters[f"cis-{slug}"]
        assert f["LogGroupName"] == {"Ref": group_id}
        assert f["MetricTransformations"] == [{"MetricNamespace": f"LlmIde/CIS/{stage}", "MetricName": metric,
                                               "MetricValue": "1", "Unit": "Count"}]
        pattern = f["FilterPattern"]
        assert pattern.startswith("{") and pattern.endswith("}") and pattern.count("(") == pattern.count(")")
        for term in must_match:
            assert term in pattern, (slug, term)
    # Refused calls are only those; sign-ins without MFA only successful IAM users' (SSO users' MFA is elsewhere).
    assert "||" in filters["cis-unauthorized-api-calls"]["FilterPattern"]
    assert '$.responseElements.ConsoleLogin = "Success"' in filters["cis-console-signin-without-mfa"]["FilterPattern"]
    assert "&&" in filters["cis-kms-key-disabled-or-deleted"]["FilterPattern"]


@pytest.mark.parametrize("stage", AUDITED)
def test_each_cis_metric_alarms_into_the_stages_alarm_topic(template, stage):
    t = template(stage, "audit")
    topic = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":sns:", {"Ref": "AWS::Region"}, ":",
                               {"Ref": "AWS::AccountId"}, f":llm-ide-{stage}-alarms"]]}
    alarms = {a["Properties"]["AlarmName"]: a for a in t.find_resources("AWS::CloudWatch::Alarm").values()}
    assert set(alarms) == {f"llm-ide-{stage}-cis-{slug}" for slug in EXPECTED}
    for slug, (metric, _) in EXPECTED.items():
        alarm = alarms[f"llm-ide-{stage}-cis-{slug}"]
        props = alarm["Properties"]
        assert (props["Namespace"], props["MetricName"], props["Statistic"], props["Period"]) == (
            f"LlmIde/CIS/{stage}", metric, "Sum", 300)
        threshold = STAGES[stage].unauthorized_calls_per_5min if slug == "unauthorized-api-calls" else 0
        assert (props["Threshold"], props["ComparisonOperator"], props["EvaluationPeriods"],
                props["DatapointsToAlarm"], props["TreatMissingData"]) == (
            threshold, "GreaterThanThreshold", 1, 1, "notBreaching")
        assert props["AlarmActions"] == [topic] and props["OKActions"] == [topic]
        assert "docs/OPERATIONS.md" in props["AlarmDescription"]
        assert len(alarm["DependsOn"]) == 1  # its metric filter
    # The topic is the monitoring stack's, which is deployed first.
    assert template(stage, "monitoring").find_resources("AWS::SNS::Topic", {"Properties": {
        "TopicName": f"llm-ide-{stage}-alarms"}})
    assert STAGES["prod"].unauthorized_calls_per_5min > 1 and STAGES["staging"].unauthorized_calls_per_5min > 1


def test_the_audit_stack_is_deployed_after_the_monitoring_stack(cloud_assembly):
    for stage in AUDITED:
        depends = {d.id for d in cloud_assembly[stage, "audit"].dependencies}
        assert cloud_assembly[stage, "monitoring"].id in depends


def test_every_cis_alarm_has_a_section_in_operations():
    from pathlib import Path

    operations = (Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md").read_text()
    for check in CHECKS:
        assert f"**`cis-{check.slug}`**" in operations, check.slug


@pytest.mark.parametrize("stage", AUDITED)
def test_audit_bucket_has_object_lock_in_governance_mode_for_the_stages_lock_days(template, stage):
    t = template(stage, "audit")
    t.has_resource_properties("AWS::S3::Bucket", {
        "ObjectLockEnabled": True,
        "ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {
            "Mode": "GOVERNANCE", "Days": STAGES[stage].audit_lock_days}}},
        "VersioningConfiguration": {"Status": "Enabled"},
    })
    assert STAGES["prod"].audit_lock_days == 365
    assert STAGES[stage].audit_lock_days <= STAGES[stage].audit_retention_days


def test_no_log_group_filters_or_cis_alarms_where_the_trail_is_off(synthesized, template):
    assert not STAGES["dev"].audit_trail and ("dev", "audit") not in synthesized
    for (stage, part), body in synthesized.items():
        if part == "audit":
            continue
        resources = body.get("Resources", {}).values()
        assert not [r for r in resources if r["Type"] == "AWS::Logs::MetricFilter"], (stage, part)
        names = [r["Properties"].get("AlarmName", "") for r in resources if r["Type"] == "AWS::CloudWatch::Alarm"]
        assert not [n for n in names if "-cis-" in n], (stage, part)
        assert not [r for r in resources if r["Type"] == "AWS::CloudTrail::Trail"]


def test_a_stage_without_its_trail_gets_no_cis_alarms(tmp_path):
    import aws_cdk as cdk

    from infra.app import build

    prod = build(cdk.App(outdir=str(tmp_path)), dataclasses.replace(STAGES["prod"], audit_trail=False))
    assert set(prod) == {"data", "edge", "waf", "monitoring", "network"}
    assert not prod["monitoring"].dependencies


def test_a_lock_longer_than_the_retention_or_no_threshold_is_refused():
    with pytest.raises(ValueError, match="audit_lock_days"):
        dataclasses.replace(STAGES["prod"], audit_lock_days=STAGES["prod"].audit_retention_days + 1)
    with pytest.raises(ValueError, match="audit_lock_days"):
        dataclasses.replace(STAGES["prod"], audit_lock_days=0)
    with pytest.raises(ValueError, match="unauthorized_calls_per_5min"):
        dataclasses.replace(STAGES["prod"], unauthorized_calls_per_5min=0)


@pytest.mark.parametrize("stage", list(STAGES))
def test_the_stages_alarms_may_publish_to_its_topic_despite_the_topic_policy(template, stage):
    """A topic policy replaces SNS's default one: without this statement no alarm would ever notify."""
    t = template(stage, "monitoring")
    topic = next(iter(t.find_resources("AWS::SNS::Topic")))
    [policy] = t.find_resources("AWS::SNS::TopicPolicy").values()
    [statement] = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                   if s.get("Sid") == "CloudWatchAlarmsPublish"]
    assert (statement["Effect"], statement["Action"], statement["Principal"], statement["Resource"]) == (
        "Allow", "sns:Publish", {"Service": "cloudwatch.amazonaws.com"}, {"Ref": topic})
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        "ArnLike": {"aws:SourceArn": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":cloudwatch:",
                                                        {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
                                                        f":alarm:llm-ide-{stage}-*"]]}}}
    names = [a["Properties"]["AlarmName"] for a in t.find_resources("AWS::CloudWatch::Alarm").values()]
    if stage in AUDITED:
        names += [a["Properties"]["AlarmName"]
                  for a in template(stage, "audit").find_resources("AWS::CloudWatch::Alarm").values()]
    assert names and all(n.startswith(f"llm-ide-{stage}-") for n in names)
