from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.observability import bind, configure_logging
from chalicelib import metric_names
from chalicelib.observability.metrics import MetricsWriter
from chalicelib.observability.redact import REDACTED, redact, scrub
from tests import tokens

JWT = tokens.sign(tokens.claims())
PRESIGNED = ("https://bucket.s3.amazonaws.com/users/x/context/a.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             "&X-Amz-Credential=AKIAEXAMPLEEXAMPLE12%2F20261126%2Fus-east-1&X-Amz-Signature=abcdef0123456789")
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize("secret", [JWT, f"Bearer {JWT}", PEM, "ghs_16CharactersOrMore123", "AKIAABCDEFGHIJKLMNOP"])
def test_credentials_are_scrubbed_from_strings(secret):
    assert secret not in scrub(f"before {secret} after")


def test_presigned_signatures_are_scrubbed():
    out = scrub(PRESIGNED)
    assert "abcdef0123456789" not in out and "AKIAEXAMPLE" not in out


def test_sensitive_fields_are_dropped_by_name_at_any_depth():
    value = {"prompt": "my secret plan", "nested": {"Authorization": "x", "items": [{"content": "file"}]},
             "action": "chat.send"}
    assert redact(value) == {"prompt": REDACTED, "nested": {"Authorization": REDACTED,
                                                            "items": [{"content": REDACTED}]}, "action": "chat.send"}


def capture_logs() -> io.StringIO:
    configure_logging("DEBUG")
    stream = io.StringIO()
    logging.getLogger("chalicelib").handlers[0].setStream(stream)
    return stream


def test_log_lines_are_json_with_context_and_no_secrets():
    stream = capture_logs()
    log = logging.getLogger("chalicelib.test")
    with bind(connectionId="c1", sub="user-sub", action="chat.send"):
        log.info("token was %s", JWT, extra={"prompt": "top secret prompt", "latencyMs": 12})
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["connectionId"] == "c1" and line["sub"] == "user-sub" and line["latencyMs"] == 12
    assert JWT not in stream.getvalue() and "top secret prompt" not in stream.getvalue()


def test_exceptions_are_logged_scrubbed():
    stream = capture_logs()
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        logging.getLogger("chalicelib.test").exception("failed")
    assert "ValueError" in stream.getvalue() and JWT not in stream.getvalue()


def test_emf_line_is_valid_and_uses_the_dashboards_names():
    stream = io.StringIO()
    MetricsWriter(stage="prod", stream=stream).emit(metric_names.CHAT_LATENCY, 123.4,
                                                    dimensions={"model": "m1"}, properties={"outcome": "ok"})
    line = json.loads(stream.getvalue())
    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == metric_names.NAMESPACE == "LlmIde"
    assert directive["Dimensions"] == [["stage"], ["stage", "model"]]
    assert directive["Metrics"] == [{"Name": "ChatLatency", "Unit": "Milliseconds"}]
    assert line["stage"] == "prod" and line["model"] == "m1" and line["ChatLatency"] == 123.4
    assert line["outcome"] == "ok" and isinstance(line["_aws"]["Timestamp"], int)


def test_unknown_metric_or_wrong_dimensions_are_refused():
    writer = MetricsWriter(stage="dev", stream=io.StringIO())
    with pytest.raises(ValueError):
        writer.emit(metric_names.Metric("Typo", "Count", (("stage",),)), 1)
    with pytest.raises(ValueError):
        writer.emit(metric_names.REQUESTS, 1, dimensions={"user": "someone"})
    with pytest.raises(ValueError):
        writer.emit(metric_names.REQUESTS, 1)  # the action dimension is missing


@pytest.mark.parametrize("enabled, in_lambda", [("false", False), ("true", False), ("true", True)])
def test_tracing_on_and_off_work_without_a_daemon(enabled, in_lambda):
    # A fresh interpreter, as a cold start: the SDK is imported only when tracing is on.
    code = (
        "import sys\n"
        "from chalicelib.observability import tracing\n"
        "tracing.start()\n"
        "with tracing.subsegment('admission', action='ping'):\n"
        "    tracing.annotate(model='m')\n"
        "tracing.annotate(outcome='ok')\n"
        "print('aws_xray_sdk' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin", "COGNITO_USER_POOL_ID": "us-east-1_x", "COGNITO_APP_CLIENT_IDS": "c",
           "TRACING_ENABLED": enabled, "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9"}
    if in_lambda:  # what Lambda sets with active tracing: the SDK then records real subsegments
        env.update(LAMBDA_TASK_ROOT="/var/task", AWS_LAMBDA_FUNCTION_NAME="llm-ide-prod-websocket_message",
                   _X_AMZN_TRACE_ID="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("True" if enabled == "true" else "False")
