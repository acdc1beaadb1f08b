"""The audit stack: the stage's CloudTrail trail, its key and its bucket, asserted on the synthesized templates."""
from __future__ import annotations

import dataclasses
import json

import pytest
from aws_cdk.assertions import Match

from infra import outputs
from infra.stages import STAGES

AUDITED = [s for s in STAGES if STAGES[s].audit_trail]


def test_prod_and_staging_have_a_trail_and_dev_has_none(synthesized):
    assert set(AUDITED) == {"staging", "prod"}
    assert ("dev", "audit") not in synthesized


def _trail_arn(stage: str) -> dict:
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":cloudtrail:", {"Ref": "AWS::Region"}, ":",
                              {"Ref": "AWS::AccountId"}, f":trail/llm-ide-{stage}-audit"]]}


@pytest.mark.parametrize("stage", AUDITED)
def test_multi_region_validated_trail_encrypted_with_its_own_rotating_key(template, stage):
    t = template(stage, "audit")
    [key] = t.find_resources("AWS::KMS::Key")
    [bucket] = t.find_resources("AWS::S3::Bucket")
    [policy] = t.find_resources("AWS::S3::BucketPolicy")
    t.resource_count_is("AWS::CloudTrail::Trail", 1)
    t.has_resource("AWS::CloudTrail::Trail", {
        "Properties": Match.object_like({
            "TrailName": f"llm-ide-{stage}-audit",
            "IsLogging": True,
            "IsMultiRegionTrail": True,
            "IncludeGlobalServiceEvents": True,
            "EnableLogFileValidation": True,
            "KMSKeyId": {"Fn::GetAtt": [key, "Arn"]},
            "S3BucketName": {"Ref": bucket},
        }),
        # CloudTrail checks it may write to the bucket when the trail is made.
        "DependsOn": Match.array_with([policy]),
    })
    t.has_resource("AWS::KMS::Key", {"Properties": Match.object_like({"EnableKeyRotation": True}),
                                     "DeletionPolicy": "Retain"})
    statements = t.find_resources("AWS::KMS::Key")[key]["Properties"]["KeyPolicy"]["Statement"]
    cloudtrail = [s for s in statements if s["Principal"] == {"Service": "cloudtrail.amazonaws.com"}]
    assert {s["Action"] for s in cloudtrail} == {"kms:GenerateDataKey*", "kms:DescribeKey"}
    for statement in cloudtrail:  # this trail only: no other account's trail can use our key
        assert statement["Condition"]["StringEquals"]["aws:SourceArn"] == _trail_arn(stage)
    [encrypt] = [s for s in cloudtrail if s["Action"] == "kms:GenerateDataKey*"]
    assert "kms:EncryptionContext:aws:cloudtrail:arn" in encrypt["Condition"]["StringLike"]
    t.has_output(outputs.AUDIT_TRAIL_ARN, {"Value": {"Fn::GetAtt": ["Trail", "Arn"]}})
    t.has_output(outputs.AUDIT_BUCKET_NAME, {"Value": {"Ref": bucket}})


@pytest.mark.parametrize("stage", AUDITED)
def test_management_events_and_the_context_buckets_object_writes(template, stage):
    selectors = next(iter(template(stage, "audit").find_resources("AWS::CloudTrail::Trail").values()))[
        "Properties"]["AdvancedEventSelectors"]
    management, objects = selectors
    assert management["FieldSelectors"] == [{"Field": "eventCategory", "Equals": ["Management"]}]
    fields = {f["Field"]: f for f in objects["FieldSelectors"]}
    assert fields["eventCategory"]["Equals"] == ["Data"] and fields["resources.type"]["Equals"] == ["AWS::S3::Object"]
    # Every object of this stage's context bucket, and of no other bucket (the audit bucket's own writes
    # would log themselves endlessly).
    assert json.dumps(fields["resources.ARN"]["StartsWith"]) == json.dumps([{"Fn::Join": ["", [
        "arn:", {"Ref": "AWS::Partition"}, f":s3:::llm-ide-{stage}-context-", {"Ref": "AWS::AccountId"}, "/"]]}])
    if STAGES[stage].audit_object_reads:
        assert "readOnly" not in fields  # reads, writes and deletes
    else:
        assert fields["readOnly"]["Equals"] == ["false"]  # PutObject, CopyObject, DeleteObject, ...
    assert STAGES["prod"].audit_object_reads  # who read a user's file is answerable in prod


@pytest.mark.parametrize("stage", AUDITED)
def test_audit_bucket_is_private_tls_only_and_keeps_logs_for_the_stages_retention(template, stage):
    t = template(stage, "audit")
    days = STAGES[stage].audit_retention_days
    glacier = [{"StorageClass": "GLACIER", "TransitionInDays": 90}] if days > 180 else Match.absent()
    t.has_resource("AWS::S3::Bucket", {"Properties": Match.object_like({
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        "VersioningConfiguration": {"Status": "Enabled"},
        "LifecycleConfiguration": {"Rules": [Match.object_like({
            "ExpirationInDays": days, "NoncurrentVersionExpiration": {"NoncurrentDays": days},
            "Transitions": glacier, "Status": "Enabled"})]},
    }), "DeletionPolicy": "Retain"})
    assert (days > 180) is (stage == "prod")
    t.has_resource_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Action": "s3:*",
                           "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
        Match.object_like({"Sid": "CloudTrailAclCheck", "Action": "s3:GetBucketAcl",
                           "Principal": {"Service": "cloudtrail.amazonaws.com"},
                           "Condition": {"StringEquals": {"aws:SourceArn": _trail_arn(stage)}}}),
        Match.object_like({"Sid": "CloudTrailWrite", "Action": "s3:PutObject",
                           "Principal": {"Service": "cloudtrail.amazonaws.com"},
                           "Resource": {"Fn::Join": ["", [Match.any_value(), "/AWSLogs/",
                                                          {"Ref": "AWS::AccountId"}, "/*"]]},
                           "Condition": {"StringEquals": {"aws:SourceArn": _trail_arn(stage),
                                                          "s3:x-amz-acl": "bucket-owner-full-control"}}}),
    ])}})


def test_a_stage_can_turn_its_trail_on_or_off(tmp_path):
    """dev with a trail of its own (a short retention: no Glacier); prod under an organisation trail."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.app import build

    app = cdk.App(outdir=str(tmp_path))
    dev = build(app, dataclasses.replace(STAGES["dev"], audit_trail=True))
    t = Template.from_stack(dev["audit"])
    t.has_resource_properties("AWS::CloudTrail::Trail", {"TrailName": "llm-ide-dev-audit"})
    t.has_resource_properties("AWS::S3::Bucket", {"LifecycleConfiguration": {"Rules": [Match.object_like({
        "ExpirationInDays": STAGES["dev"].audit_retention_days, "Transitions": Match.absent()})]}})
    prod = build(cdk.App(outdir=str(tmp_path / "prod")), dataclasses.replace(STAGES["prod"], audit_trail=False))
    assert "audit" not in prod


def test_an_audit_retention_outside_the_range_is_refused():
    for days in (0, 3654):
        with pytest.raises(ValueError, match="audit_retention_days"):
            dataclasses.replace(STAGES["prod"], audit_retention_days=days)
