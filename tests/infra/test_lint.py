"""cfn-lint finds no error in the CDK templates nor in `chalice package`'s template, per stage.

`chalice package` builds the Lambda bundle (pip downloads Linux wheels from PyPI once, then
reuses .chalice/deployments/) and writes the SAM template with our policy files inlined.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chalice.utils import to_cfn_resource_name

from infra import policies, resources
from infra.stages import STAGES

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Lint for the regions a team is likely to deploy to, and CloudFront's.
REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]


def cfn_lint(paths: list[Path]) -> list[dict]:
    """cfn-lint's findings for the templates; fails the test on any error."""
    run = subprocess.run([str(BIN / "cfn-lint"), "--format", "json", "--regions", *REGIONS, "--",
                          *map(str, paths)], capture_output=True, text=True, timeout=300, check=False)
    findings = json.loads(run.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    assert not errors, json.dumps(errors, indent=1)[:4000]
    assert run.returncode & 2 == 0, run.stderr  # bit 2: errors
    return findings


def test_cdk_templates_pass_cfn_lint(synthesized, tmp_path):
    paths = []
    for (stage, part), template in synthesized.items():
        path = tmp_path / f"{stage}-{part}.json"
        path.write_text(json.dumps(template))
        paths.append(path)
    findings = cfn_lint(paths)
    assert not [f for f in findings if f["Level"] == "Warning"], findings


def test_cdk_app_entry_synthesizes_a_stage_from_context(tmp_path):
    """`cdk synth -c environment=staging` runs `python3 app.py` in infra/ with this context."""
    url = "https://abc123.execute-api.us-east-1.amazonaws.com/staging/health"
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path),
           "CDK_CONTEXT_JSON": json.dumps({"environment": "staging", "health_url": url})}
    app = json.loads((ROOT / "infra" / "cdk.json").read_text())["app"]
    assert app == "python3 app.py"
    subprocess.run([sys.executable, "app.py"], cwd=ROOT / "infra", env=env, check=True, capture_output=True,
                   timeout=300)
    made = sorted(p.name for p in tmp_path.glob("*.template.json"))
    assert made == [f"llm-ide-staging-{part}.template.json" for part in ("audit", "data", "edge", "monitoring", "waf")]
    monitoring = json.loads((tmp_path / "llm-ide-staging-monitoring.template.json").read_text())
    [canary] = [r for r in monitoring["Resources"].values() if r["Type"] == "AWS::Synthetics::Canary"]
    assert canary["Properties"]["RunConfig"]["EnvironmentVariables"]["HEALTH_URL"] == url
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    environments = {a["environment"] for a in manifest["artifacts"].values() if a["type"] == "aws:cloudformation:stack"}
    # Account and region come from the deploying credentials; only the edge stack is pinned.
    assert environments == {"aws://unknown-account/unknown-region", "aws://unknown-account/us-east-1"}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> dict[str, dict]:
    """stage -> the SAM template `chalice package --stage <stage>` writes."""
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    templates = {}
    for stage in STAGES:
        out = tmp_path_factory.mktemp(f"package-{stage}")
        run = subprocess.run([str(BIN / "chalice"), "package", "--stage", stage, str(out)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        templates[stage] = json.loads((out / "sam.json").read_text())
    return templates


def test_chalice_package_passes_cfn_lint(packaged, tmp_path):
    paths = []
    for stage, template in packaged.items():
        path = tmp_path / f"sam-{stage}.json"
        path.write_text(json.dumps(template))
        paths.append(path)
    cfn_lint(paths)


@pytest.mark.parametrize("stage", list(STAGES))
def test_packaged_functions_run_with_their_own_policy_file(packaged, stage):
    template = packaged[stage]["Resources"]
    functions = {k: r for k, r in template.items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions
    # Chalice names each resource after the function, CamelCased (and its REST handler specially).
    by_cfn_name = {to_cfn_resource_name(f): f for f in resources.FUNCTIONS} | {"APIHandler": "api_handler"}
    for cfn_name, function in functions.items():
        props = function["Properties"]
        name = by_cfn_name[cfn_name]
        role = template[props["Role"]["Fn::GetAtt"][0]]
        expected = json.loads((ROOT / ".chalice" / policies.policy_filename(stage, name)).read_text())
        assert [p["PolicyDocument"] for p in role["Properties"]["Policies"]] == [expected]
        assert "ManagedPolicyArns" not in role["Properties"]
        assert props["Tracing"] == ("Active" if STAGES[stage].xray else "PassThrough")
        assert bool(props.get("VpcConfig")) is STAGES[stage].vpc
