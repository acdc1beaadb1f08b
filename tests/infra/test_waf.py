"""The REST API's REGIONAL web ACL (infra/stacks/waf.py) for every stage, and the dashboard's view of its blocks."""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from infra import outputs
from infra.stacks.waf import MANAGED_RULE_GROUPS, api_web_acl_name
from infra.stages import STAGES
from tests.infra.test_stacks import _dashboard

ALL_STAGES = list(STAGES)


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_the_rest_api_gets_a_regional_web_acl_with_the_rate_rule_and_managed_groups(template, stage):
    t = template(stage, "waf")
    t.resource_count_is("AWS::WAFv2::WebACL", 1)
    name = api_web_acl_name(stage)
    visibility = {"CloudWatchMetricsEnabled": True, "SampledRequestsEnabled": True}
    t.has_resource_properties("AWS::WAFv2::WebACL", {
        "Name": name,
        "Scope": "REGIONAL",
        "DefaultAction": {"Allow": {}},
        "VisibilityConfig": {**visibility, "MetricName": name},
        "Rules": [
            {"Name": "rate-per-ip", "Priority": 0, "Action": {"Block": {}},
             "Statement": {"RateBasedStatement": {"AggregateKeyType": "IP",
                                                  "Limit": STAGES[stage].api_waf_requests_per_5min_per_ip}},
             "VisibilityConfig": {**visibility, "MetricName": "rate-per-ip"}},
            *[{"Name": group, "Priority": priority, "OverrideAction": {"None": {}},
               "Statement": {"ManagedRuleGroupStatement": {"Name": group, "VendorName": "AWS"}},
               "VisibilityConfig": {**visibility, "MetricName": group}}
              for priority, group in enumerate(MANAGED_RULE_GROUPS, start=1)],
        ],
    })
    assert set(MANAGED_RULE_GROUPS) == {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                                        "AWSManagedRulesAmazonIpReputationList"}
    # Its ARN is the output the sync step records for post_deploy.
    acl = next(iter(t.find_resources("AWS::WAFv2::WebACL")))
    t.has_output(outputs.API_WEB_ACL_ARN, {"Value": {"Fn::GetAtt": [acl, "Arn"]}})


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_the_waf_stack_is_in_the_stages_region_not_the_edges(cloud_assembly, stage):
    assert cloud_assembly[stage, "waf"].environment.region == "unknown-region"  # the deploying credentials'
    assert cloud_assembly[stage, "edge"].environment.region == "us-east-1"


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_the_dashboard_plots_the_rest_apis_blocks_by_rule(template, stage):
    widgets = {w["properties"]["title"]: w["properties"] for w in _dashboard(template(stage, "monitoring"))["widgets"]}
    waf = widgets["WAF blocked requests by rule (REST API)"]
    [[line]] = waf["metrics"]
    # A REGIONAL web ACL's metrics have a Region dimension besides WebACL and Rule, in the stage's region.
    assert line["expression"] == (
        "SEARCH('{AWS/WAFV2,Region,Rule,WebACL} MetricName=\"BlockedRequests\" "
        f"WebACL=\"{api_web_acl_name(stage)}\"', 'Sum', 300)")
    assert waf["region"] == "ref" and "region" not in line  # the monitoring stack's own region (AWS::Region)
    web_page = widgets["WAF blocked requests by rule (web page)"]
    assert web_page["region"] == "us-east-1"


@pytest.mark.parametrize("setting", ["waf_requests_per_5min_per_ip", "api_waf_requests_per_5min_per_ip"])
def test_a_rate_limit_waf_would_refuse_is_refused_by_the_stage(setting):
    too_low: dict[str, Any] = {setting: 9}
    lowest: dict[str, Any] = {setting: 10}
    with pytest.raises(ValueError, match=setting):
        dataclasses.replace(STAGES["dev"], **too_low)
    assert getattr(dataclasses.replace(STAGES["dev"], **lowest), setting) == 10
