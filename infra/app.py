"""The CDK app: `cdk deploy --all -c environment=prod` (run from infra/, see docs/DEPLOY.md).

Stacks are environment-agnostic (account and region come from the deploying credentials; the
waf stack's REGIONAL web ACL must be in the REST API's region, so deploy from the stage's region),
except the edge stack, pinned to us-east-1 where CloudFront's WAF lives. Nothing here calls
AWS, so `cdk synth` works offline; the one file read is `.chalice/deployed/<stage>.json`, for the
health canary's URL (context `health_url` overrides it).
"""
from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk

if __package__ in (None, ""):  # run by the cdk CLI as a script from infra/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra import outputs, resources
from infra.stacks.audit import AuditStack
from infra.stacks.data import DataStack
from infra.stacks.edge import EDGE_REGION, EdgeStack
from infra.stacks.monitoring import MonitoringStack
from infra.stacks.network import NetworkStack
from infra.stacks.waf import WafStack
from infra.stages import Stage
from infra.stages import stage as get_stage
from infra.sync_config import health_url as find_health_url


def build(app: cdk.App, stage: Stage, *, account: str | None = None, region: str | None = None,
          alarm_email: str | None = None, health_url: str | None = None) -> dict[str, cdk.Stack]:
    """Every stack of a stage. account/region pin the environment (tests); None leaves it agnostic.
    health_url: the REST API's `/health`, for the availability canary (None: no canary yet)."""
    env = cdk.Environment(account=account, region=region) if account or region else None
    edge_env = cdk.Environment(account=account, region=EDGE_REGION)
    stacks: dict[str, cdk.Stack] = {
        "data": DataStack(app, outputs.stack_name(stage.name, "data"), stage=stage, env=env),
        "edge": EdgeStack(app, outputs.stack_name(stage.name, "edge"), stage=stage, env=edge_env),
        "waf": WafStack(app, outputs.stack_name(stage.name, "waf"), stage=stage, env=env),
        "monitoring": MonitoringStack(app, outputs.stack_name(stage.name, "monitoring"), stage=stage,
                                      alarm_email=alarm_email, health_url=health_url, env=env),
    }
    if stage.vpc:
        stacks["network"] = NetworkStack(app, outputs.stack_name(stage.name, "network"), stage=stage, env=env)
    if stage.audit_trail:
        stacks["audit"] = AuditStack(app, outputs.stack_name(stage.name, "audit"), stage=stage, env=env)
        stacks["audit"].add_stack_dependency(stacks["monitoring"], "its CIS alarms notify the monitoring stack's topic")
    for stack in stacks.values():
        cdk.Tags.of(stack).add("project", resources.PROJECT)
        cdk.Tags.of(stack).add("stage", stage.name)
    return stacks


def main() -> None:
    app = cdk.App()
    stage = get_stage(app.node.try_get_context("environment") or "dev")
    # The REST API exists once `chalice deploy` ran: the second `cdk deploy` finds its URL (docs/DEPLOY.md).
    url = find_health_url(stage=stage.name, given=app.node.try_get_context("health_url"))
    build(app, stage, alarm_email=app.node.try_get_context("alarmEmail"), health_url=url)
    app.synth()


if __name__ == "__main__":
    main()
