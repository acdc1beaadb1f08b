"""The canary's script against real HTTP servers, and where the deploy finds the URL it checks."""
from __future__ import annotations

import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from infra import health_canary, sync_config


class _HealthServer(http.server.ThreadingHTTPServer):
    answer: tuple[int, bytes] = (200, b"")  # what /health answers: status, body


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        assert isinstance(self.server, _HealthServer)
        status, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server():
    httpd = _HealthServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def answer(status: int, body) -> str:
        httpd.answer = (status, body if isinstance(body, bytes) else json.dumps(body).encode())
        return f"http://127.0.0.1:{httpd.server_address[1]}/prod/health"

    yield answer
    httpd.shutdown()
    httpd.server_close()


def test_a_healthy_answer_of_the_right_stage_passes(server, monkeypatch):
    url = server(200, {"status": "ok", "stage": "prod"})
    assert health_canary.check(url, stage="prod", timeout=5) == {"status": "ok", "stage": "prod"}
    monkeypatch.setenv("HEALTH_URL", url)
    monkeypatch.setenv("EXPECTED_STAGE", "prod")
    assert health_canary.handler({}, None) == "healthy"  # what Synthetics calls


@pytest.mark.parametrize("status, body, says", [
    (500, {"message": "Internal server error"}, "HTTP 500"),
    (403, {"message": "Missing Authentication Token"}, "HTTP 403"),  # a wrong path on API Gateway
    (200, b"<html>maintenance</html>", "no JSON"),
    (200, {"status": "degraded", "stage": "prod"}, "degraded"),
    (200, {"status": "ok", "stage": "staging"}, "not 'prod'"),
])
def test_an_unhealthy_answer_fails_the_run(server, monkeypatch, status, body, says):
    url = server(status, body)
    with pytest.raises(health_canary.Unhealthy, match=says):
        health_canary.check(url, stage="prod", timeout=5)
    monkeypatch.setenv("HEALTH_URL", url)
    monkeypatch.setenv("EXPECTED_STAGE", "prod")
    with pytest.raises(health_canary.Unhealthy):
        health_canary.handler({}, None)


def test_nobody_listening_fails_the_run():
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(health_canary.Unhealthy, match="failed"):
        health_canary.check(f"http://127.0.0.1:{port}/health", stage="prod", timeout=2)


def _deployed(chalice_dir: Path, stage: str, resources: list[dict]) -> None:
    (chalice_dir / "deployed").mkdir(parents=True, exist_ok=True)
    record = {"resources": resources, "schema_version": "2.0"}
    (chalice_dir / "deployed" / f"{stage}.json").write_text(json.dumps(record))


def test_the_url_comes_from_chalices_record_of_the_rest_api(tmp_path):
    assert sync_config.health_url(stage="prod", chalice_dir=tmp_path) is None  # before the first chalice deploy
    _deployed(tmp_path, "prod", [
        {"name": "websocket_api", "resource_type": "websocket_api", "websocket_api_id": "ws1"},
        {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "abc123",
         "rest_api_url": "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/"}])
    assert sync_config.health_url(stage="prod", chalice_dir=tmp_path) == (
        "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/health")
    assert sync_config.health_url(stage="staging", chalice_dir=tmp_path) is None  # another stage's record
    given = "https://api.example.com/prod/health"  # -c health_url=... wins (a custom domain)
    assert sync_config.health_url(stage="prod", given=given, chalice_dir=tmp_path) == given


@pytest.mark.parametrize("url", ["http://abc.execute-api.us-east-1.amazonaws.com/prod/health", "abc/health",
                                 "https://abc.example.com/health?token=x"])
def test_a_url_that_is_not_plain_https_is_refused(tmp_path, url):
    with pytest.raises(ValueError, match="https"):
        sync_config.health_url(stage="prod", given=url, chalice_dir=tmp_path)
