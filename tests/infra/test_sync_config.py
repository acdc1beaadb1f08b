"""The sync step: CDK outputs into .chalice/config.json and the policy files, on a sample outputs file."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from chalicelib.config import load_settings
from infra import outputs, policies, resources, sync_config
from infra.stages import STAGES

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(__file__).with_name("cdk-outputs.sample.json")
ACCOUNT = "123456789012"


@pytest.fixture
def chalice_dir(tmp_path) -> Path:
    target = tmp_path / ".chalice"
    target.mkdir()
    shutil.copy(ROOT / ".chalice" / "config.json", target / "config.json")
    return target


@pytest.fixture
def outputs_file(tmp_path) -> Path:
    """The sample, as a real account's `cdk deploy --outputs-file` would write it."""
    path = tmp_path / "cdk-outputs.json"
    path.write_text(SAMPLE.read_text().replace("000000000000", ACCOUNT))
    return path


def deployed(chalice_dir: Path, stage: str, api_id: str) -> None:
    (chalice_dir / "deployed").mkdir(exist_ok=True)
    (chalice_dir / "deployed" / f"{stage}.json").write_text(json.dumps({"schema_version": "2.0", "resources": [
        {"name": "api_handler", "resource_type": "lambda_function", "lambda_arn": "arn:aws:lambda:..."},
        {"name": "websocket_api", "resource_type": "websocket_api", "websocket_api_id": api_id,
         "websocket_api_url": f"wss://{api_id}.execute-api.us-east-1.amazonaws.com/{stage}/"},
    ]}))


def run(chalice_dir: Path, outputs_file: Path, stage: str, *extra: str) -> int:
    return sync_config.main(["--stage", stage, "--outputs", str(outputs_file), "--chalice-dir", str(chalice_dir),
                             *extra])


def test_prod_outputs_land_in_the_stage_config_and_the_policies(chalice_dir, outputs_file, capsys):
    deployed(chalice_dir, "prod", "k3x9q2w7ab")
    assert run(chalice_dir, outputs_file, "prod") == 0
    config = json.loads((chalice_dir / "config.json").read_text())
    prod = config["stages"]["prod"]
    env = prod["environment_variables"]
    data = json.loads(outputs_file.read_text())[outputs.stack_name("prod", "data")]
    assert env["COGNITO_USER_POOL_ID"] == data[outputs.USER_POOL_ID]
    assert env["COGNITO_APP_CLIENT_IDS"] == data[outputs.USER_POOL_CLIENT_ID]
    assert env["COGNITO_ISSUER"] == data[outputs.ISSUER]
    assert env["CONTEXT_BUCKET"] == f"llm-ide-prod-context-{ACCOUNT}"
    assert env["CHAT_UPLOAD_BUCKET"] == f"llm-ide-prod-uploads-{ACCOUNT}"
    # The bucket's own key, so the app writes SSE-KMS with it rather than SSE-S3.
    assert env["CONTEXT_KMS_KEY_ID"] == data[outputs.CONTEXT_KEY_ARN]
    assert env["CONTEXT_KMS_KEY_ID"].startswith(f"arn:aws:kms:us-east-1:{ACCOUNT}:key/")
    assert env["SESSION_TTL_DAYS"] == str(STAGES["prod"].session_ttl_days)
    assert env["GITHUB_SECRET_ARN"].startswith(f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:llm-ide/prod/")
    for table in resources.TABLES:
        assert env[table.env_var] == table.physical_name("prod")
    assert env["BEDROCK_WORKER_FUNCTION"] == "llm-ide-prod-bedrock_worker"
    assert env["GITHUB_WORKER_FUNCTION"] == "llm-ide-prod-github_worker"
    assert env["DEFAULT_MODEL_ID"] in env["ALLOWED_MODELS"].split(",")
    assert env["LOG_LEVEL"] == "INFO"  # what the outputs do not set is kept
    assert prod["subnet_ids"] == ["subnet-0a1b2c3d4e5f6a7b8", "subnet-0b1c2d3e4f5a6b7c9"]
    assert prod["security_group_ids"] == ["sg-0c1d2e3f4a5b6c7d8"]
    assert prod["xray"] is True and prod["autogen_policy"] is False
    assert prod["api_gateway_endpoint_type"] == "REGIONAL"  # so the REST API's WAF sees client addresses
    assert prod["environment_variables"]["TRACING_ENABLED"] == "true"
    assert prod["tags"] == {"project": "llm-ide", "stage": "prod"}
    assert prod["lambda_functions"]["websocket_message"]["lambda_timeout"] == 30  # kept
    assert config["stages"]["dev"] == json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["dev"]

    facts = json.loads((chalice_dir / "infra.json").read_text())["prod"]
    assert facts == {"account": ACCOUNT, "region": "us-east-1", "websocketApiId": "k3x9q2w7ab",
                     "contextKeyArn": data[outputs.CONTEXT_KEY_ARN], "githubSecretArn": env["GITHUB_SECRET_ARN"],
                     "apiWebAclArn": f"arn:aws:wafv2:us-east-1:{ACCOUNT}:regional/webacl/llm-ide-prod-api/"
                                     "00000000-0000-0000-0000-0000000000a1"}
    for function in resources.FUNCTIONS:
        text = (chalice_dir / policies.policy_filename("prod", function)).read_text()
        assert "000000000000" not in text and f":{ACCOUNT}:" in text
    worker = (chalice_dir / policies.policy_filename("prod", "bedrock_worker")).read_text()
    assert f"arn:aws:execute-api:us-east-1:{ACCOUNT}:k3x9q2w7ab/prod/POST/@connections/*" in worker
    assert "ManageConnections" not in capsys.readouterr().err


def test_sync_is_idempotent_and_the_policy_writer_agrees(chalice_dir, outputs_file):
    deployed(chalice_dir, "prod", "k3x9q2w7ab")
    assert run(chalice_dir, outputs_file, "prod") == 0
    first = {p.name: p.read_bytes() for p in chalice_dir.glob("*.json")}
    assert run(chalice_dir, outputs_file, "prod") == 0
    policies.main(["--stage", "prod", "--chalice-dir", str(chalice_dir)])
    assert {p.name: p.read_bytes() for p in chalice_dir.glob("*.json")} == first


def test_first_deploy_has_no_api_yet_and_says_what_to_do(chalice_dir, outputs_file, capsys):
    assert run(chalice_dir, outputs_file, "prod") == 0
    err = capsys.readouterr().err
    assert "run this again and deploy again" in err
    for function in resources.FUNCTIONS:
        assert "ManageConnections" not in (chalice_dir / policies.policy_filename("prod", function)).read_text()
    assert "websocketApiId" not in json.loads((chalice_dir / "infra.json").read_text())["prod"]
    # The flag stands in for .chalice/deployed/ (e.g. a CI that keeps no deployed state).
    assert run(chalice_dir, outputs_file, "prod", "--websocket-api-id", "abcdef1234") == 0
    assert "abcdef1234/prod/POST" in (chalice_dir / policies.policy_filename("prod", "github_worker")).read_text()


def test_stage_without_vpc_gets_no_subnets(chalice_dir, outputs_file):
    config = json.loads((chalice_dir / "config.json").read_text())
    config["stages"]["dev"]["subnet_ids"] = ["subnet-stale"]
    config["stages"]["dev"].setdefault("environment_variables", {})["TRACING_ENABLED"] = "true"  # stale
    (chalice_dir / "config.json").write_text(json.dumps(config))
    assert run(chalice_dir, outputs_file, "dev") == 0
    dev = json.loads((chalice_dir / "config.json").read_text())["stages"]["dev"]
    assert "subnet_ids" not in dev and "security_group_ids" not in dev and dev["xray"] is False
    assert dev["environment_variables"]["TRACING_ENABLED"] == "false"  # the SDK follows the stage's xray


def test_a_missing_output_fails_and_names_it(chalice_dir, outputs_file, capsys):
    data = json.loads(outputs_file.read_text())
    del data[outputs.stack_name("prod", "network")]
    outputs_file.write_text(json.dumps(data))
    before = (chalice_dir / "config.json").read_text()
    assert run(chalice_dir, outputs_file, "prod") == 1
    assert f"output '{outputs.SUBNET_IDS}' is missing" in capsys.readouterr().err
    assert (chalice_dir / "config.json").read_text() == before


def test_without_the_rest_apis_web_acl_nothing_is_written(chalice_dir, outputs_file, capsys):
    """post_deploy needs its ARN: an outputs file from before the waf stack fails the sync, not the deploy."""
    data = json.loads(outputs_file.read_text())
    del data[outputs.stack_name("prod", "waf")]
    outputs_file.write_text(json.dumps(data))
    before = (chalice_dir / "config.json").read_text()
    assert run(chalice_dir, outputs_file, "prod") == 1
    assert f"output '{outputs.API_WEB_ACL_ARN}' is missing" in capsys.readouterr().err
    assert (chalice_dir / "config.json").read_text() == before and not (chalice_dir / "infra.json").exists()


def test_a_region_the_inference_profiles_do_not_serve_fails(chalice_dir, outputs_file, capsys):
    outputs_file.write_text(outputs_file.read_text().replace("us-east-1", "eu-west-1"))
    assert run(chalice_dir, outputs_file, "prod") == 1
    assert "unusable from eu-west-1" in capsys.readouterr().err


def test_the_committed_config_is_what_the_sync_writes_from_the_sample_outputs(chalice_dir):
    """No drift: every stage's committed section, its key and TTL included, is the sync's output."""
    sample = chalice_dir.parent / "sample.json"
    shutil.copy(SAMPLE, sample)
    for stage in STAGES:
        assert run(chalice_dir, sample, stage, "--websocket-api-id", "samp1e0api") == 0
    assert (json.loads((chalice_dir / "config.json").read_text())
            == json.loads((ROOT / ".chalice" / "config.json").read_text()))
    assert (json.loads((chalice_dir / "infra.json").read_text())
            == json.loads((ROOT / ".chalice" / "infra.json").read_text()))
    for stage in STAGES:  # and the app accepts what the stage's functions will run with
        env = json.loads((chalice_dir / "config.json").read_text())["stages"][stage]["environment_variables"]
        settings = load_settings(env)
        assert settings.context_kms_key_id == sync_config.stack_outputs(
            json.loads(SAMPLE.read_text()), stage)[outputs.CONTEXT_KEY_ARN]
        assert settings.session_ttl_days == STAGES[stage].session_ttl_days


def test_a_stage_session_ttl_replaces_a_hand_set_one(chalice_dir, outputs_file, monkeypatch):
    monkeypatch.setitem(STAGES, "dev", dataclasses.replace(STAGES["dev"], session_ttl_days=7))
    config = json.loads((chalice_dir / "config.json").read_text())
    config["stages"]["dev"]["environment_variables"]["SESSION_TTL_DAYS"] = "90"  # would outlive the bucket rule
    (chalice_dir / "config.json").write_text(json.dumps(config))
    assert run(chalice_dir, outputs_file, "dev") == 0
    env = json.loads((chalice_dir / "config.json").read_text())["stages"]["dev"]["environment_variables"]
    assert env["SESSION_TTL_DAYS"] == "7"


def test_a_stages_model_overrides_reach_the_app_as_models(chalice_dir, outputs_file, monkeypatch):
    stage = STAGES["staging"]
    negotiated = {stage.allowed_models[0]: {"price": {"input": 2.5, "output": 12.5, "cacheRead": 0.25,
                                                      "cacheWrite": 3.0}}}
    monkeypatch.setitem(STAGES, "staging", dataclasses.replace(stage, model_overrides=negotiated))
    deployed(chalice_dir, "staging", "s7a8b9c0d1")
    assert run(chalice_dir, outputs_file, "staging") == 0
    env = json.loads((chalice_dir / "config.json").read_text())["stages"]["staging"]["environment_variables"]
    assert json.loads(env["MODELS"]) == negotiated
    settings = load_settings({**env, "AWS_REGION": "us-east-1"})
    price = settings.models.models[stage.allowed_models[0]].price
    assert price is not None and price.output == 12.5


def test_a_stage_whose_model_table_the_app_would_refuse_is_refused_at_once():
    stage = STAGES["dev"]
    with pytest.raises(ValueError, match="model_overrides"):
        dataclasses.replace(stage, allowed_models=(*stage.allowed_models, "acme.unknown-v1:0"))


def test_the_management_api_endpoint_is_the_deployed_apis_never_a_custom_domains(chalice_dir, outputs_file):
    """The app posts frames there (MANAGEMENT_API_ENDPOINT): with a custom domain mapped to the WebSocket
    API, the event's domain name and stage do not name a Management API endpoint."""
    deployed(chalice_dir, "prod", "k3x9q2w7ab")
    assert run(chalice_dir, outputs_file, "prod") == 0
    env = json.loads((chalice_dir / "config.json").read_text())["stages"]["prod"]["environment_variables"]
    assert env["MANAGEMENT_API_ENDPOINT"] == "https://k3x9q2w7ab.execute-api.us-east-1.amazonaws.com/prod"
    settings = load_settings({**env, "AWS_REGION": "us-east-1"})
    assert settings.management_endpoint(api_id="k3x9q2w7ab", domain_name="ide.example.com", stage="prod") == \
        env["MANAGEMENT_API_ENDPOINT"]
    # A CI without .chalice/deployed/ passes the id; before the first deploy there is none (the app then
    # derives it from each event's API id).
    assert run(chalice_dir, outputs_file, "prod", "--websocket-api-id", "abcdef1234") == 0
    env = json.loads((chalice_dir / "config.json").read_text())["stages"]["prod"]["environment_variables"]
    assert env["MANAGEMENT_API_ENDPOINT"] == "https://abcdef1234.execute-api.us-east-1.amazonaws.com/prod"


def test_no_management_api_endpoint_before_the_api_exists(chalice_dir, outputs_file):
    assert run(chalice_dir, outputs_file, "dev") == 0
    env = json.loads((chalice_dir / "config.json").read_text())["stages"]["dev"]["environment_variables"]
    assert "MANAGEMENT_API_ENDPOINT" not in env


@pytest.mark.parametrize("models, region, usable", [
    (("global.anthropic.claude-sonnet-4-20250514-v1:0",), "eu-west-1", True),
    (("eu.anthropic.claude-sonnet-4-20250514-v1:0",), "eu-north-1", True),
    (("jp.anthropic.claude-sonnet-4-20250514-v1:0",), "ap-northeast-3", True),
    (("au.anthropic.claude-sonnet-4-20250514-v1:0",), "ap-southeast-4", True),
    (("apac.anthropic.claude-sonnet-4-20250514-v1:0",), "ap-northeast-1", True),
    (("jp.anthropic.claude-sonnet-4-20250514-v1:0",), "eu-west-1", False),
    (("au.anthropic.claude-sonnet-4-20250514-v1:0",), "ap-northeast-1", False),
])
def test_each_geographys_profiles_are_usable_from_its_own_regions_only(chalice_dir, outputs_file, monkeypatch,
                                                                        capsys, models, region, usable):
    monkeypatch.setitem(STAGES, "dev", dataclasses.replace(STAGES["dev"], allowed_models=models,
                                                           default_model=models[0]))
    outputs_file.write_text(outputs_file.read_text().replace("us-east-1", region))
    assert run(chalice_dir, outputs_file, "dev") == (0 if usable else 1)
    if not usable:
        assert f"unusable from {region}" in capsys.readouterr().err


def test_docs_configuration_lists_every_variable_the_sync_writes():
    """docs/CONFIGURATION.md, "Set per stage by the deploy", against what the sync step writes for a
    stage that sets everything optional (model overrides, both money budgets)."""
    section = (ROOT / "docs" / "CONFIGURATION.md").read_text().split("## Set per stage by the deploy", 1)[1]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section.split("\n## ", 1)[0]))
    prod = STAGES["prod"]
    everything = dataclasses.replace(prod, cost_budget_usd_per_day=5, cost_budget_usd_per_month=50,
                                     model_overrides={prod.allowed_models[0]: {"name": "A model"}})
    out = sync_config.stack_outputs(json.loads(SAMPLE.read_text()), "prod")
    written = set(sync_config.environment(everything, out)) | {"MANAGEMENT_API_ENDPOINT"}
    assert written <= documented, f"written by the sync step, not listed: {sorted(written - documented)}"
    assert documented <= written, f"listed, not written by the sync step: {sorted(documented - written)}"
