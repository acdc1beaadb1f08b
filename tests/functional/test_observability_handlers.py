"""What on-call sees of each event: one "handled" line with its context, and its metrics."""
from __future__ import annotations

import json
import time

import pytest

import app as chalice_app
from chalicelib.observability import metric_names
from tests.conftest import reset_app_caches
from tests.handler_calls import connect, login, message

KNOWN = {metric.name for metric in metric_names.ALL}


def test_connect_and_frames_log_one_handled_line_each_with_their_context(app_env, boto, sender, logs):
    token = login(boto, app_env)
    assert connect("conn-o=", headers={"Authorization": f"Bearer {token}"})["statusCode"] == 200
    message("conn-o=", json.dumps({"id": "p1", "action": "ping"}))
    message("conn-o=", json.dumps({"id": "u1", "action": "no.such", "params": {}}))
    message("conn-o=", "not json")
    chalice_app.websocket_disconnect(_disconnect_event("conn-o="), None)

    connected, ping, unknown, garbage, disconnected = logs.handled()
    sub = connected["sub"]
    assert connected["handler"] == "$connect" and connected["outcome"] == "accepted" and sub
    assert ping["handler"] == "$default" and ping["connectionId"] == "conn-o=" and ping["sub"] == sub
    assert (ping["id"], ping["action"], ping["outcome"]) == ("p1", "ping", "ok")
    assert isinstance(ping["latencyMs"], int) and ping["apiRequestId"]
    assert (unknown["id"], unknown["action"], unknown["outcome"]) == ("u1", "invalid", "BAD_REQUEST")
    assert garbage["outcome"] == "BAD_REQUEST" and garbage["sub"] == sub  # the connection is checked first
    assert disconnected["handler"] == "$disconnect" and disconnected["outcome"] == "ok"
    assert token not in json.dumps(logs.lines())

    assert [m["outcome"] for m in logs.metric("Requests")] == ["ok", "BAD_REQUEST", "BAD_REQUEST"]
    assert [m["action"] for m in logs.metric("Requests")] == ["ping", "invalid", "invalid"]
    assert [m["code"] for m in logs.metric("Errors")] == ["BAD_REQUEST", "BAD_REQUEST"]
    assert logs.metric("ServerErrors") == []  # the client's mistakes page no one
    assert [m["Connections"] for m in logs.metric("Connections")] == [1]
    for line in logs.metrics():
        directive = line["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "LlmIde" and {m["Name"] for m in directive["Metrics"]} <= KNOWN


def test_a_refused_connect_logs_the_reason_never_the_token(app_env, sender, logs):
    assert connect("conn-r=", headers={"Authorization": "Bearer not.a.jwt"})["statusCode"] == 401
    [refused] = logs.handled()
    assert refused["outcome"] == "refused" and refused["reason"] and "not.a.jwt" not in json.dumps(refused)
    assert logs.metric("Connections") == []


def _auth_refusals(logs) -> list[tuple[str, int]]:
    found = []
    for line in logs.metric(metric_names.AUTH_REFUSED.name):
        [directive] = line["_aws"]["CloudWatchMetrics"]
        # The stage's total (what the alarm watches) and per reason (what the dashboard splits by).
        assert directive["Dimensions"] == [["stage"], ["stage", "reason"]] and line["stage"] == "test"
        found.append((line["reason"], line[metric_names.AUTH_REFUSED.name]))
    return found


def test_every_refused_token_is_counted_by_its_reason_at_connect_and_in_both_authorizers(app_env, boto, sender,
                                                                                         logs):
    from chalicelib.auth.authorizer import AccessRefused
    from tests import tokens
    from tests.functional.test_authorizers import authorizer_event, pool_claims, rest_event

    now = int(time.time())
    expired = tokens.sign_as_moto(pool_claims(app_env, exp=now - 60, iat=now - 3660))
    foreign = tokens.sign(pool_claims(app_env), kid="dummy")  # the right kid, another key
    assert connect("conn-x=", query={"token": expired})["statusCode"] == 401
    assert connect("conn-n=")["statusCode"] == 401
    with pytest.raises(AccessRefused):
        chalice_app.ws_authorizer(authorizer_event(headers={"Authorization": f"Bearer {foreign}"}), None)
    with pytest.raises(AccessRefused):
        chalice_app.rest_authorizer(rest_event("Bearer garbage"), None)
    assert _auth_refusals(logs) == [("expired", 1), ("missing", 1), ("bad_signature", 1), ("malformed", 1)]
    emitted = json.dumps(logs.metrics())
    assert expired not in emitted and foreign not in emitted

    # An accepted token counts nothing.
    good = login(boto, app_env)
    assert connect("conn-ok=", headers={"Authorization": f"Bearer {good}"})["statusCode"] == 200
    chalice_app.ws_authorizer(authorizer_event(query={"token": good}), None)
    assert len(_auth_refusals(logs)) == 4


def test_a_forbidden_action_is_counted_by_action(app_env, boto, sender, logs, monkeypatch):
    monkeypatch.setenv("GITHUB_ALLOWED_GROUPS", "github-users")  # dev is in no such group
    reset_app_caches()
    connect("conn-f=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    message("conn-f=", json.dumps({"id": "g1", "action": "github.repos"}))
    message("conn-f=", json.dumps({"id": "p1", "action": "ping"}))
    assert sender.frames["conn-f="][0]["error"]["code"] == "FORBIDDEN"
    assert [(m["action"], m["Forbidden"]) for m in logs.metric("Forbidden")] == [("github.repos", 1)]
    assert [m["code"] for m in logs.metric("Errors")] == ["FORBIDDEN"]
    assert logs.metric("ServerErrors") == [] and logs.metric(metric_names.AUTH_REFUSED.name) == []


def test_rate_limited_frames_are_counted_by_action(app_env, boto, sender, logs, monkeypatch):
    monkeypatch.setenv("RATE_LIMIT_REQUESTS_PER_MINUTE", "1")
    reset_app_caches()
    connect("conn-l=", headers={"Authorization": f"Bearer {login(boto, app_env, 1)}"})
    for n in range(3):
        message("conn-l=", json.dumps({"id": f"g{n}", "action": "usage.get"}))
    outcomes = [line["outcome"] for line in logs.handled()][-3:]
    limited = outcomes.count("RATE_LIMITED")  # the first may be limited too: other tests use dev2 this minute
    assert outcomes[1:] == ["RATE_LIMITED", "RATE_LIMITED"] and set(outcomes) <= {"ok", "RATE_LIMITED"}
    assert [(m["action"], m["RateLimited"]) for m in logs.metric("RateLimited")] == [("usage.get", 1)] * limited
    assert [m["code"] for m in logs.metric("Errors")] == ["RATE_LIMITED"] * limited
    assert logs.metric("ServerErrors") == []  # one user hammering the API must not page on-call


def test_the_github_worker_logs_its_outcome_and_counts_its_error_not_the_request_again(app_env, sender, logs):
    event = {"connectionId": "conn-w=", "endpoint": "http://127.0.0.1:9/test", "requestId": "w1",
             "action": "github.file", "params": {"repo": "o/r", "path": "/etc"},
             "user": {"sub": "s-1", "username": "dev", "groups": []}}
    chalice_app.github_worker(event, None)
    [handled] = logs.handled()
    assert handled["handler"] == "github_worker" and handled["sub"] == "s-1" and handled["id"] == "w1"
    assert (handled["action"], handled["outcome"]) == ("github.file", "BAD_REQUEST")
    assert logs.metric("Requests") == []  # the message handler counted it when it handed it over
    assert [m["code"] for m in logs.metric("Errors")] == ["BAD_REQUEST"] and logs.metric("ServerErrors") == []


def test_rest_requests_log_route_status_and_latency(app_env, logs):
    from chalice.test import Client

    with Client(chalice_app.app) as client:
        assert client.http.get("/health").status_code == 200
        assert client.http.get("/nowhere").status_code == 403  # API Gateway's answer to an unknown route
        assert client.http.get("/usage").status_code == 401
    handled = logs.handled()
    assert [(h["handler"], h["route"], h["outcome"], h["status"]) for h in handled if "route" in h] == [
        ("rest", "GET /health", "ok", 200)]


def _disconnect_event(connection_id: str) -> dict:
    from devserver import events

    return events.disconnect_event(connection_id=connection_id, connected_at_ms=0, stage="test",
                                   domain_name="abc.execute-api.us-east-1.amazonaws.com", source_ip="10.0.0.1",
                                   user_agent="t", status_code=1000, reason="bye")
