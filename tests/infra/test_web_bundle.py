"""The web client bundle for a deployed stage: web/ plus a config.json the page can use."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import policies, web_bundle
from infra.sync_config import SyncError

SAMPLE_OUTPUTS = Path(__file__).with_name("cdk-outputs.sample.json")
DEPLOYED = {"resources": [
    {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "rest1",
     "rest_api_url": "https://rest1.execute-api.eu-west-1.amazonaws.com/prod/"},
    {"name": "websocket_api", "resource_type": "websocket_api", "websocket_api_id": "ws1",
     "websocket_api_url": "wss://ws1.execute-api.eu-west-1.amazonaws.com/prod/"},
], "schema_version": "2.0", "backend": "api"}


@pytest.fixture
def chalice_dir(tmp_path):
    (tmp_path / "deployed").mkdir()
    (tmp_path / "deployed" / "prod.json").write_text(json.dumps(DEPLOYED))
    config = json.loads((policies.CHALICE_DIR / "config.json").read_text())  # the committed samples
    config["stages"]["prod"]["environment_variables"]["CONTEXT_MAX_BYTES"] = "12582912"
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.fixture(scope="module")
def built():
    """web/dist/, built from the sources and the locked npm packages (as `make` does)."""
    try:
        return web_bundle.build_assets()
    except web_bundle.BuildError as error:
        if "no npm" in str(error):
            pytest.skip(str(error))
        raise


def test_the_build_is_the_page_its_script_and_style_without_inline_code(built):
    names = {p.name for p in built.iterdir()}
    assert {"index.html", "app.js", "style.css"} <= names
    page = (built / "index.html").read_text()
    assert '<script type="module" src="app.js"></script>' in page
    # The CSP has no 'unsafe-inline': no inline script, handler or style in the page.
    assert "<style" not in page and " style=" not in page and " onclick=" not in page
    assert page.count("<script") == 1


def test_the_bundle_is_the_page_and_its_config_for_the_stage(tmp_path, chalice_dir, built, monkeypatch):
    monkeypatch.setattr(web_bundle, "build_assets", lambda: built)  # built once for the module
    out = tmp_path / "build" / "web"
    assert web_bundle.main(["--stage", "prod", "--outputs", str(SAMPLE_OUTPUTS), "--out", str(out),
                            "--chalice-dir", str(chalice_dir)]) == 0
    data = json.loads(SAMPLE_OUTPUTS.read_text())["llm-ide-prod-data"]
    config = json.loads((out / "config.json").read_text())
    assert config == {"websocketUrl": "wss://ws1.execute-api.eu-west-1.amazonaws.com/prod",
                      "httpUrl": "https://rest1.execute-api.eu-west-1.amazonaws.com/prod",
                      "region": data["Region"],
                      "cognito": {"userPoolId": data["UserPoolId"], "clientId": data["UserPoolClientId"]},
                      "contextMaxBytes": 12 * 1024 * 1024}  # the stage's CONTEXT_MAX_BYTES
    pages = sorted(p.name for p in built.iterdir() if p.is_file() and not p.name.startswith("."))
    assert sorted(p.name for p in out.iterdir()) == sorted([*pages, "config.json"])
    assert (out / "app.js").read_bytes() == (built / "app.js").read_bytes()


def test_the_config_has_what_the_page_reads_as_the_local_stack_serves_it():
    from devserver.aws import web_client_config

    local = web_client_config({"websocketUrl": "ws://x/local", "httpUrl": "http://x", "region": "us-east-1",
                               "cognito": {"userPoolId": "p", "clientId": "c", "endpointUrl": "http://moto"},
                               "users": {"dev": "secret"}}, context_max_bytes=5)
    deployed = web_bundle.web_config({"Region": "eu-west-1", "UserPoolId": "eu-west-1_A", "UserPoolClientId": "c"},
                                     "wss://a/prod", "https://b/prod", context_max_bytes=5)
    assert set(deployed) == set(local)
    assert set(deployed["cognito"]) == set(local["cognito"]) - {"endpointUrl"}  # AWS: the regional endpoint


def test_a_stage_not_yet_deployed_is_a_clear_error(tmp_path, capsys):
    assert web_bundle.main(["--stage", "prod", "--outputs", str(SAMPLE_OUTPUTS), "--out", str(tmp_path / "w"),
                            "--chalice-dir", str(tmp_path)]) == 2
    assert "chalice deploy --stage prod" in capsys.readouterr().err
    with pytest.raises(SyncError, match="Region"):
        web_bundle.web_config({}, "wss://a/prod", "https://b/prod", context_max_bytes=5)
    with pytest.raises(SyncError, match="wss://"):
        web_bundle.web_config({"Region": "r", "UserPoolId": "p", "UserPoolClientId": "c"}, "ws://a", "https://b",
                              context_max_bytes=5)


def test_a_stage_whose_settings_are_missing_or_invalid_is_a_clear_error(tmp_path, chalice_dir):
    with pytest.raises(SyncError, match="no valid settings for the stage 'nope'"):
        web_bundle.stage_context_max_bytes(chalice_dir, "nope")
    config = json.loads((chalice_dir / "config.json").read_text())
    config["stages"]["prod"]["environment_variables"]["CONTEXT_MAX_BYTES"] = "lots"
    (chalice_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(SyncError, match="CONTEXT_MAX_BYTES"):
        web_bundle.stage_context_max_bytes(chalice_dir, "prod")
