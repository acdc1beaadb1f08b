from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest

from chalicelib.observability import bind, configure_logging, metric_names
from chalicelib.observability.metrics import MetricsWriter
from chalicelib.observability.redact import REDACTED, redact, scrub
from tests import tokens

ROOT = Path(__file__).resolve().parents[2]

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
    next(h for h in logging.getLogger("chalicelib").handlers
         if isinstance(h, logging.StreamHandler) and getattr(h, "llm_ide", False)).setStream(stream)
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


def test_text_format_shows_a_frames_path_in_one_short_line():
    configure_logging("INFO", "text")
    stream = io.StringIO()
    handlers = [h for h in logging.getLogger("chalicelib").handlers
                if isinstance(h, logging.StreamHandler) and getattr(h, "llm_ide", False)]
    assert len(handlers) == 1  # switching the format keeps one handler
    handlers[0].setStream(stream)
    try:
        with bind(handler="$default", connectionId="AbCdEfGhIj=", sub="1a2b3c4d-5e6f", id="c3", action="chat.send"):
            logging.getLogger("chalicelib.test").info("handled", extra={"outcome": "ok", "latencyMs": 12,
                                                                         "prompt": "purple elephant"})
        line = stream.getvalue().strip()
        assert line.endswith("$default c=AbCdEf… sub=1a2b3c4d… chat.send id=c3 prompt=[redacted] → ok 12 ms")
    finally:
        configure_logging("INFO", "json")


def test_threads_keep_the_bound_context_only_when_started_with_it():
    import threading

    from chalicelib.observability import current_context, with_current_context

    seen: dict[str, dict] = {}
    with bind(id="c1", sub="s"):
        plain = threading.Thread(target=lambda: seen.update(plain=current_context()))
        carried = threading.Thread(target=with_current_context(lambda: seen.update(carried=current_context())))
        for thread in (plain, carried):
            thread.start()
            thread.join()
    assert seen == {"plain": {}, "carried": {"id": "c1", "sub": "s"}}


def test_exception_messages_that_quote_their_input_are_dropped():
    from botocore.exceptions import ParamValidationError

    from chalicelib.observability.redact import exception_text

    prompt = "purple " + "elephant"  # not in the traceback's source lines
    try:
        try:
            raise ParamValidationError(report=f"Invalid type for parameter Item.content, value: {prompt}")
        except ParamValidationError as inner:
            raise RuntimeError(f"store failed with {JWT}") from inner
    except RuntimeError as error:
        text = exception_text(error)
    assert "ParamValidationError: [redacted]" in text and prompt not in text
    assert "RuntimeError: store failed with [redacted]" in text and JWT not in text
    assert "test_exception_messages_that_quote_their_input_are_dropped" in text  # the frames stay


@pytest.mark.parametrize("code, server_side", [
    ("INTERNAL", True), ("UPSTREAM_ERROR", True), ("UPSTREAM_THROTTLED", True), ("TIMEOUT", True),
    ("RATE_LIMITED", False), ("BUDGET_EXCEEDED", False), ("BAD_REQUEST", False), ("NOT_FOUND", False),
    ("FORBIDDEN", False), ("UNAUTHORIZED", False), ("PAYLOAD_TOO_LARGE", False), ("MODEL_NOT_ALLOWED", False),
])
def test_every_error_is_counted_by_code_and_only_server_side_ones_feed_the_alarm(code, server_side):
    from chalicelib.observability.metrics import count_error

    stream = io.StringIO()
    count_error(MetricsWriter(stage="prod", stream=stream), code)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line.get("Errors"), line["code"]) for line in lines if "Errors" in line] == [(1, code)]
    assert [line["code"] for line in lines if "ServerErrors" in line] == ([code] if server_side else [])


def test_emf_lines_go_where_the_local_stack_sends_them():
    from chalicelib.observability import metrics

    lines: list[str] = []
    metrics.set_output(lines.append)
    try:
        MetricsWriter(stage="local").emit(metric_names.CONNECTIONS, 1)
    finally:
        metrics.set_output(None)
    assert json.loads(lines[0])["Connections"] == 1


# The chat worker's metrics are emitted by chalicelib/chat (BudgetExceeded by chat.send).
CHAT_METRICS = {"ChatLatency", "TimeToFirstToken", "InputTokens", "OutputTokens", "FramesSent", "BudgetExceeded"}


def _emitted_in(paths) -> set[str]:
    """The metric_names constants a module passes to emit (by constant: `emit(metric.REQUESTS, ...`
    or `emit(REQUESTS, ...`)."""
    constants = {m.name: c for c, m in vars(metric_names).items() if isinstance(m, metric_names.Metric)}
    text = "\n".join(path.read_text() for path in paths)
    emitted = {name for name, constant in constants.items() if re.search(rf"emit[(,]\s*(?:\w+\.)?{constant}\b", text)}
    if re.search(r"\bcount_error\(", text):  # observability.metrics.count_error: Errors, and ServerErrors
        emitted |= {metric_names.ERRORS.name, metric_names.SERVER_ERRORS.name}
    return emitted


def test_every_metric_but_the_chat_workers_is_emitted_by_the_app():
    code = [p for p in (ROOT / "chalicelib").rglob("*.py") if "observability" not in p.parts]
    expected = {m.name for m in metric_names.ALL} - CHAT_METRICS
    assert expected <= _emitted_in(code)


def test_the_chat_metrics_are_emitted_by_the_chat_code():
    emitted = _emitted_in(list((ROOT / "chalicelib" / "chat").rglob("*.py")))
    assert CHAT_METRICS | {"Errors", "ServerErrors", "UpstreamThrottled"} <= emitted
