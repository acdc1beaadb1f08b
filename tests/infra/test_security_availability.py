"""Security and availability monitoring: the dashboard's security row, the auth-refusals alarm, and the
health canary with its alarm, made only when the REST API's URL is known."""
from __future__ import annotations

import dataclasses
import json

import pytest
from aws_cdk.assertions import Match

from chalicelib.observability import metric_names as metrics
from infra import outputs
from infra.stacks.availability import canary_name
from infra.stages import STAGES
from tests.infra.conftest import HEALTH_URLS
from tests.infra.test_stacks import _dashboard

ALL_STAGES = list(STAGES)


def _alarm(t, stage: str, name: str) -> dict:
    [alarm] = [a["Properties"] for a in t.find_resources("AWS::CloudWatch::Alarm").values()
               if a["Properties"]["AlarmName"] == f"llm-ide-{stage}-{name}"]
    return alarm


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_a_spike_of_refused_tokens_pages_at_the_stages_threshold(template, stage):
    t = template(stage, "monitoring")
    topic = next(iter(t.find_resources("AWS::SNS::Topic")))
    alarm = _alarm(t, stage, "auth-refusals")
    [watched] = alarm["Metrics"]
    assert watched["MetricStat"]["Metric"] == {  # every reason together: the stage-wide dimension set
        "Namespace": metrics.NAMESPACE, "MetricName": metrics.AUTH_REFUSED.name,
        "Dimensions": [{"Name": metrics.STAGE, "Value": stage}]}
    assert (watched["MetricStat"]["Stat"], watched["MetricStat"]["Period"]) == ("Sum", 300)
    assert alarm["Threshold"] == STAGES[stage].auth_refusals_per_5min
    assert (alarm["ComparisonOperator"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (
        "GreaterThanThreshold", 1, 1)
    assert alarm["AlarmActions"] == [{"Ref": topic}] and alarm["OKActions"] == [{"Ref": topic}]


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_the_security_row_plots_refusals_forbidden_and_the_web_acls_blocks(template, stage):
    widgets = {w["properties"]["title"]: w["properties"] for w in _dashboard(template(stage, "monitoring"))["widgets"]}

    def expression(title: str) -> str:
        [[line]] = widgets[title]["metrics"]
        return line["expression"]

    assert expression("Auth refusals by reason") == (
        f"SEARCH('{{LlmIde,stage,reason}} MetricName=\"AuthRefused\" stage=\"{stage}\"', 'Sum', 300)")
    assert expression("Forbidden by action") == (
        f"SEARCH('{{LlmIde,stage,action}} MetricName=\"Forbidden\" stage=\"{stage}\"', 'Sum', 300)")
    waf = widgets["WAF blocked requests by rule (web page)"]
    # A CLOUDFRONT web ACL's metrics are in us-east-1, by WebACL (its metric name) and Rule, no Region.
    assert waf["region"] == "us-east-1" and waf["metrics"][0][0]["region"] == "us-east-1"
    assert expression("WAF blocked requests by rule (web page)") == (
        f"SEARCH('{{AWS/WAFV2,Rule,WebACL}} MetricName=\"BlockedRequests\" WebACL=\"llm-ide-{stage}-web\"', "
        "'Sum', 300)")


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_the_web_acl_is_named_as_the_dashboard_searches_it(template, stage):
    acl = next(iter(template(stage, "edge").find_resources("AWS::WAFv2::WebACL").values()))["Properties"]
    assert acl["Name"] == acl["VisibilityConfig"]["MetricName"] == f"llm-ide-{stage}-web"


def test_prod_with_its_url_checks_health_every_5_minutes_and_alarms_on_failures(template):
    t = template("prod", "monitoring")
    [canary_id] = t.find_resources("AWS::Synthetics::Canary")
    t.has_resource_properties("AWS::Synthetics::Canary", {
        "Name": canary_name("prod"),
        "RuntimeVersion": "syn-python-selenium-7.0",
        "Schedule": Match.object_like({"Expression": "rate(5 minutes)"}),
        "StartCanaryAfterCreation": True,
        "ProvisionedResourceCleanup": "AUTOMATIC",
        "Code": {"Handler": "index.handler", "Script": Match.string_like_regexp("def handler\\(event, context\\)")},
        "RunConfig": Match.object_like({"TimeoutInSeconds": 30, "EnvironmentVariables": {
            "HEALTH_URL": HEALTH_URLS["prod"], "EXPECTED_STAGE": "prod", "TIMEOUT_SECONDS": "10"}}),
    })
    alarm = _alarm(t, "prod", "availability")
    [metric] = alarm["Metrics"]
    assert metric["MetricStat"]["Metric"] == {"Namespace": "CloudWatchSynthetics", "MetricName": "SuccessPercent",
                                              "Dimensions": [{"Name": "CanaryName", "Value": {"Ref": canary_id}}]}
    assert (metric["MetricStat"]["Stat"], metric["MetricStat"]["Period"]) == ("Average", 300)
    # Two failed checks in three, or no check at all (a stopped canary watches nothing), page.
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["EvaluationPeriods"],
            alarm["DatapointsToAlarm"], alarm["TreatMissingData"]) == ("LessThanThreshold", 100, 3, 2, "breaching")
    t.has_output(outputs.HEALTH_CANARY_NAME, {"Value": {"Ref": canary_id}})
    # Its artifacts bucket is private and TLS only; nothing but the canary's own log group is writable.
    t.has_resource_properties("AWS::S3::Bucket", {
        "PublicAccessBlockConfiguration": Match.object_like({"BlockPublicAcls": True, "RestrictPublicBuckets": True}),
        "LifecycleConfiguration": {"Rules": [Match.object_like({"ExpirationInDays": 31})]}})
    t.has_resource_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})
    widgets = {w["properties"]["title"] for w in _dashboard(t)["widgets"]}
    assert "Health checks passed (%)" in widgets


@pytest.mark.parametrize("stage, why", [("staging", "the REST API's URL is unknown"),
                                        ("dev", "health_canary is off")])
def test_without_a_url_or_with_the_canary_off_there_is_none_and_the_synth_says_why(cloud_assembly, template,
                                                                                     stage, why):
    t = template(stage, "monitoring")
    t.resource_count_is("AWS::Synthetics::Canary", 0)
    names = {a["Properties"]["AlarmName"] for a in t.find_resources("AWS::CloudWatch::Alarm").values()}
    assert f"llm-ide-{stage}-availability" not in names
    notes = [str(m.entry.data) for m in cloud_assembly[stage, "monitoring"].messages if m.level.name == "INFO"]
    assert any(why in note for note in notes), notes
    assert "CloudWatchSynthetics" not in json.dumps(_dashboard(t))


def test_the_canary_name_fits_synthetics_limit_for_every_stage():
    for stage in STAGES:
        assert len(canary_name(stage)) <= 21
    with pytest.raises(ValueError, match="21 characters"):
        canary_name("a-very-long-stage-name")


def test_a_stage_threshold_below_one_is_refused():
    with pytest.raises(ValueError, match="auth_refusals_per_5min"):
        dataclasses.replace(STAGES["prod"], auth_refusals_per_5min=0)
