"""What the stack logs while it serves a user: context on every line, no credential or user text,
valid EMF. A stack of its own logs JSON, as Lambda does (the shared one prints text), and runs with
tracing on as staging and prod do, with no X-Ray daemon to send to: every other stack runs it off."""
from __future__ import annotations

import json
import re
import urllib.request

import pytest

from chalicelib.observability import metric_names
from tests.e2e.conftest import GENEROUS_LIMITS, start_stack, stop_stack
from tests.e2e.test_github import control, secret_arn, secrets_client

PROMPT = "zanzibar quokka 7731 sings"  # distinctive: the echo model replies with it too
KNOWN_METRICS = {metric.name for metric in metric_names.ALL}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A JSON-logging stack after one user's session; (the stack, what must never be logged)."""
    stack = start_stack(tmp_path_factory.mktemp("observed"),
                        env={**GENEROUS_LIMITS, "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG",
                             "TRACING_ENABLED": "true", "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9"})
    try:
        tokens = stack.tokens("dev")
        secret = json.loads(secrets_client(stack).get_secret_value(SecretId=secret_arn(stack))["SecretString"])
        with stack.connect() as client:
            client.ping()
            frames = list(client.chat(PROMPT, timeout=30))
            assert frames[-1]["type"] == "done", frames[-1]
            control(stack, "/_emulator/rate-limit", {"count": 1, "retryAfter": 1})  # one wait, then the answer
            file = client.request("github.file", timeout=30, repo="octo-org/hello-world", path="README.md")
            assert file["type"] == "result", file
            grant = client.request("context.uploadUrl", path="notes/a.txt", size=3)
            assert grant["type"] == "result", grant
            assert client.request("no.such.action")["type"] == "error"
        with stack.connect(token_in="query") as client:  # the token in the URL this time
            client.ping()
        request = urllib.request.Request(f"{stack.endpoints.http_url}/usage",
                                         headers={"Authorization": f"Bearer {tokens.access_token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        stop_stack(stack.process)
    signed = re.search(r"X-Amz-Signature=([0-9a-f]+)", grant["data"]["url"])
    assert signed is not None, grant
    signature = signed.group(1)
    key_body = "".join(secret["privateKey"].strip().splitlines()[1:-1])
    never = {
        "access token": tokens.access_token,
        "access token signature": tokens.access_token.split(".")[2],
        "id token": tokens.id_token,
        **({"refresh token": tokens.refresh_token} if tokens.refresh_token else {}),
        "GitHub private key": key_body[100:160],
        "presigned URL signature": signature,
        "prompt": PROMPT,
    }
    return stack, never


def output(stack) -> str:
    return stack.log_text() + (stack.state_dir / "moto.log").read_text(errors="replace")


def test_no_credential_or_user_text_in_any_log(served):
    stack, never = served
    text = output(stack)
    for name, value in never.items():
        assert value and value not in text, f"the {name} is in the logs"
    assert not re.search(r"ghs_[0-9a-f]{16,}", text), "a GitHub installation token is in the logs"


def test_every_emf_line_is_valid_and_names_the_dashboards_metrics(served):
    stack, _ = served
    emitted = set()
    for line in stack.log_text().splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        directive = document["_aws"]
        assert isinstance(directive["Timestamp"], int)
        for group in directive["CloudWatchMetrics"]:
            assert group["Namespace"] == metric_names.NAMESPACE
            for dimension_set in group["Dimensions"]:
                assert all(isinstance(document[name], str) for name in dimension_set)
            for metric in group["Metrics"]:
                assert metric["Name"] in KNOWN_METRICS and isinstance(document[metric["Name"]], (int, float))
                emitted.add(metric["Name"])
    assert {"Requests", "Errors", "Connections", "UpstreamThrottled"} <= emitted


def test_each_frame_has_one_json_line_with_its_path(served):
    stack, _ = served
    lines = [json.loads(line) for line in stack.log_text().splitlines()
             if line.startswith("{") and '"_aws"' not in line]
    handled = [line for line in lines if line.get("message") == "handled"]
    chat = [line for line in handled if line.get("handler") == "$default" and line.get("action") == "chat.send"]
    assert len(chat) == 1 and chat[0]["outcome"] == "ok" and chat[0]["sub"] and chat[0]["connectionId"]
    assert isinstance(chat[0]["latencyMs"], int) and chat[0]["id"]
    worker = [line for line in handled if line.get("handler") == "github_worker"]
    assert [(w["action"], w["outcome"]) for w in worker] == [("github.file", "ok")]
    assert worker[0]["connectionId"] == chat[0]["connectionId"] and worker[0]["sub"] == chat[0]["sub"]
    assert {line["handler"] for line in handled} >= {"$connect", "$default", "$disconnect", "github_worker",
                                                     "ws_authorizer", "rest_authorizer", "rest"}


def test_the_bedrock_workers_lines_carry_the_chats_path_and_its_outcome(served):
    stack, _ = served
    lines = [json.loads(line) for line in stack.log_text().splitlines()
             if line.startswith("{") and '"_aws"' not in line]
    [admitted] = [line for line in lines if line.get("message") == "chat admitted"]
    worker = [line for line in lines if line.get("handler") == "bedrock_worker"]
    assert worker and all(line["connectionId"] == admitted["connectionId"] and line["sub"] == admitted["sub"]
                          and line["action"] == "chat.send" and line["id"] == admitted["id"]
                          and line["requestId"] == admitted["requestId"] for line in worker), worker
    [finished] = [line for line in worker if line["message"] == "chat finished"]
    assert finished["outcome"] == "ok" and isinstance(finished["latencyMs"], int) and finished["lambdaRequestId"]


def test_each_user_action_counts_once_in_requests_by_action(served):
    stack, _ = served
    points = [json.loads(line) for line in stack.log_text().splitlines() if '"_aws"' in line]
    counted = sorted(point["action"] for point in points if "Requests" in point)
    # Two pings (one per connection), the chat, the GitHub file (handed to its worker: not counted again),
    # the upload URL and the unknown action.
    assert counted == sorted(["ping", "ping", "chat.send", "github.file", "context.uploadUrl", "invalid"])
    assert not [point for point in points if "ServerErrors" in point]  # a session without a server failure


def test_tracing_was_on_and_everything_above_worked_without_a_daemon(served):
    stack, _ = served
    assert "successfully patched module botocore" in stack.log_text()  # the X-Ray SDK was loaded and in use
