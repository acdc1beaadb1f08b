"""Per-stage settings of the deployment: plain data, read by the CDK app, the policy
generator and the config sync step (never by the Lambda bundle).

A setting that differs between dev, staging and prod lives here, once.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.models import PROFILE_PREFIXES, ModelTableError, build_table, foundation_id
from infra.resources import DEFAULT_CONTEXT_FILE_TTL_DAYS, DEFAULT_SESSION_TTL_DAYS

# Destination regions of Bedrock's cross-region inference profiles, by the profile id's
# geography prefix (`eu.anthropic...` -> "eu"). A profile may route a request to any of its
# geography's regions, so IAM must allow the foundation model in each (only through the
# profile: infra/policies.py). Each list is the union over the geography's profiles and
# source regions, from the Bedrock user guide, "Supported Regions and models for inference
# profiles" (https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-support.html),
# as the CDK's CrossRegionInferenceProfileRegion collects them
# (https://docs.aws.amazon.com/cdk/api/v2/python/aws_cdk.aws_bedrock_alpha/CrossRegionInferenceProfileRegion.html).
# A region listed that a profile never routes to grants nothing more: the model is reachable
# only through the profile. Global profiles ("global.") route to any commercial region and
# are authorised on the region-less model ARN instead ("Global cross-Region inference",
# https://docs.aws.amazon.com/bedrock/latest/userguide/global-cross-region-inference.html):
# see GLOBAL below. When Bedrock adds a destination region, add it here; `aws bedrock
# get-inference-profile --inference-profile-identifier <id>` lists a profile's models by region.
PROFILE_REGIONS: dict[str, tuple[str, ...]] = {
    "us": ("us-east-1", "us-east-2", "us-west-1", "us-west-2"),
    "us-gov": ("us-gov-east-1", "us-gov-west-1"),
    "eu": ("eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2",
           "eu-west-3"),
    "apac": ("ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-south-2",
             "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5",
             "ap-southeast-7", "me-central-1"),
    "jp": ("ap-northeast-1", "ap-northeast-3"),
    "au": ("ap-southeast-2", "ap-southeast-4"),
}
GLOBAL = "global"
# Every geography the app's model table knows (chalicelib/models.py PROFILE_PREFIXES) is either
# listed above, global, or one whose destinations the Bedrock documentation does not give: the
# policy generator refuses a model of those rather than guess (tests/infra/test_policies.py
# checks the three sets cover PROFILE_PREFIXES exactly).
UNLISTED_GEOGRAPHIES = frozenset({"ca"})


def profile_prefix(model_id: str) -> str | None:
    """The geography of an inference profile id (`us.anthropic...` -> `us`, `global.` -> `global`),
    None for a foundation model id; the same prefixes as the app's model table."""
    for prefix in PROFILE_PREFIXES:
        if model_id.startswith(prefix):
            return prefix[:-1]
    return None


def profile_model(model_id: str) -> str:
    """The foundation model an inference profile routes to (`eu.anthropic.x` -> `anthropic.x`)."""
    return foundation_id(model_id)


def destination_regions(geography: str, source_region: str) -> tuple[str, ...]:
    """The regions whose foundation-model ARN a profile of `geography` is authorised on, called from
    `source_region`: a geography's destinations; for a global profile the source region and ""
    (the region-less ARN, `arn:aws:bedrock:::foundation-model/<id>`, that global routing is checked on)."""
    if geography == GLOBAL:
        return (source_region, "")
    if geography not in PROFILE_REGIONS:
        raise ValueError(f"the destination regions of {geography!r} inference profiles are not recorded in "
                         f"PROFILE_REGIONS (infra/stages.py): check them in the Bedrock user guide first")
    return PROFILE_REGIONS[geography]


def usable_from(geography: str, region: str) -> bool:
    """Whether a profile of `geography` can be called from `region` (its source regions are its
    destinations; a global profile from any commercial region)."""
    if geography == GLOBAL:
        return not region.startswith(("us-gov-", "cn-"))
    return region in destination_regions(geography, region)


@dataclass(frozen=True)
class Stage:
    name: str
    vpc: bool  # run the functions in private subnets (NAT only for GitHub egress)
    nat_gateways: int  # 1 saves ~$33/month; 2 survives an AZ outage
    xray: bool  # active tracing on every function
    deletion_protection: bool  # tables, user pool; data resources retained on stack delete
    log_retention_days: int
    monthly_budget_usd: int  # the AWS Budgets cost budget; alerts at 80 % actual, 100 % forecast
    threat_protection: bool  # Cognito Plus tier (advanced security): paid per MAU
    # Models the app may call: inference profile ids (`us.`, `eu.`, `apac.`, `jp.`, `au.`, `global.`...) or model ids.
    allowed_models: tuple[str, ...]
    default_model: str
    # The model table's overrides for this stage (the app's MODELS, written by infra/sync_config.py): model id ->
    # fields (chalicelib/models.py), e.g. a negotiated price or a model the built-in table does not know.
    model_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Alarm thresholds.
    error_rate_percent: float = 5.0
    chat_latency_p90_ms: int = 30_000
    tokens_per_hour: int = 2_000_000
    # WAF's per-IP rate limits (requests in any 5 minutes, then blocked): the web page's CLOUDFRONT
    # web ACL, and the REST API's REGIONAL one (a client calls /me and /usage now and then; many
    # users behind one NAT share an address).
    waf_requests_per_5min_per_ip: int = 1_000
    api_waf_requests_per_5min_per_ip: int = 1_000
    # Days an idle session lives: the app's SESSION_TTL_DAYS (written by infra/sync_config.py)
    # and the context bucket's expiry rule (infra/stacks/data.py) both come from here.
    session_ttl_days: int = DEFAULT_SESSION_TTL_DAYS
    # Days a user's own context file lives after it was last written: the app's CONTEXT_FILE_TTL_DAYS
    # (written by infra/sync_config.py) and the bucket's rule `expire-context-files` both come from here.
    context_file_ttl_days: int = DEFAULT_CONTEXT_FILE_TTL_DAYS
    # Security monitoring: refused tokens ($connect and both authorizers) in 5 minutes that page on-call.
    auth_refusals_per_5min: int = 100
    # Audit logging (infra/stacks/audit.py): our own CloudTrail trail. Turn it off where an
    # organisation trail already records the account (a second copy of management events is billed).
    audit_trail: bool = True
    audit_retention_days: int = 365  # then the logs expire; in Glacier after 90 days if kept longer than 180
    audit_object_reads: bool = False  # also record reads of users' files (writes and deletes always)
    # Object Lock (governance mode) on the audit bucket: days each log can be neither deleted nor overwritten
    # without s3:BypassGovernanceRetention. At most audit_retention_days (the lifecycle rule could not expire it).
    audit_lock_days: int = 90
    # CIS alarms on the trail (infra/stacks/cis.py): refused API calls in 5 minutes that page; a few are normal.
    unauthorized_calls_per_5min: int = 20
    # Availability monitoring: a Synthetics canary on GET /health once the REST API's URL is known.
    health_canary: bool = True

    def __post_init__(self) -> None:
        try:  # the app would refuse to start on it: refuse the stage before anything is deployed
            build_table(self.allowed_models, self.default_model, self.models_json())
        except ModelTableError as exc:
            raise ValueError(f"stage {self.name}: model_overrides: {exc}") from None
        for name in ("session_ttl_days", "context_file_ttl_days"):
            if not 1 <= getattr(self, name) <= 3650:  # the range chalicelib/config.py accepts
                raise ValueError(f"stage {self.name}: {name} must be 1-3650, not {getattr(self, name)}")
        if not 1 <= self.audit_retention_days <= 3653:  # CloudTrail's own event history keeps 90 days anyway
            raise ValueError(f"stage {self.name}: audit_retention_days must be 1-3653, not {self.audit_retention_days}")
        if not 1 <= self.audit_lock_days <= self.audit_retention_days:
            raise ValueError(f"stage {self.name}: audit_lock_days must be 1-audit_retention_days "
                             f"({self.audit_retention_days}), not {self.audit_lock_days}")
        if self.unauthorized_calls_per_5min < 1:
            raise ValueError(f"stage {self.name}: unauthorized_calls_per_5min must be at least 1")
        for name in ("waf_requests_per_5min_per_ip", "api_waf_requests_per_5min_per_ip"):
            if not 10 <= getattr(self, name) <= 2_000_000_000:  # WAF's range for a rate-based rule
                raise ValueError(f"stage {self.name}: {name} must be 10-2000000000, not {getattr(self, name)}")
        if self.auth_refusals_per_5min < 1:
            raise ValueError(f"stage {self.name}: auth_refusals_per_5min must be at least 1")

    def models_json(self) -> str | None:
        """The app's MODELS value, or None when the built-in table serves as it is."""
        return json.dumps(self.model_overrides, separators=(",", ":"), sort_keys=True) if self.model_overrides else None


_MODELS = (
    "us.anthropic.claude-sonnet-4-20250514-v1:0",
    "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    "amazon.nova-micro-v1:0",
)

STAGES: dict[str, Stage] = {
    # dev holds test users only and is torn down often: no trail of its own (a sandbox account is
    # usually under its organisation's trail) and no canary; turn either on here if yours is not.
    "dev": Stage(name="dev", vpc=False, nat_gateways=0, xray=False, deletion_protection=False,
                 log_retention_days=7, monthly_budget_usd=50, threat_protection=False,
                 allowed_models=_MODELS, default_model=_MODELS[1], tokens_per_hour=200_000,
                 auth_refusals_per_5min=50, audit_trail=False, audit_retention_days=30, audit_lock_days=7,
                 health_canary=False),
    "staging": Stage(name="staging", vpc=False, nat_gateways=0, xray=True, deletion_protection=False,
                     log_retention_days=14, monthly_budget_usd=150, threat_protection=False,
                     allowed_models=_MODELS, default_model=_MODELS[1], tokens_per_hour=500_000,
                     auth_refusals_per_5min=50, audit_retention_days=90, audit_lock_days=30,
                     unauthorized_calls_per_5min=10),
    "prod": Stage(name="prod", vpc=True, nat_gateways=1, xray=True, deletion_protection=True,
                  log_retention_days=90, monthly_budget_usd=2_500, threat_protection=True,
                  allowed_models=_MODELS, default_model=_MODELS[1],
                  auth_refusals_per_5min=200, audit_retention_days=730, audit_object_reads=True,
                  audit_lock_days=365, unauthorized_calls_per_5min=20),
}


def stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}: one of {', '.join(STAGES)}") from None
