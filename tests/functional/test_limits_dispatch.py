"""The limits in the message path: Chalice handlers with API Gateway's event shapes, against moto."""
from __future__ import annotations

import json
import math

import app as chalice_app
from chalicelib.dispatch.contract import Admission
from chalicelib.dispatch.table import TABLE
from tests.handler_calls import connect, message, new_user

ONE_REQUEST = {"requests": 1, "inputTokens": 0, "outputTokens": 0, "cacheReadInputTokens": 0,
               "cacheWriteInputTokens": 0, "costUsd": 0.0}


def test_every_action_but_ping_is_rate_limited_by_the_dispatch():
    assert TABLE["ping"][0] is Admission.NONE
    assert all(admission is not Admission.NONE for name, (admission, _) in TABLE.items() if name != "ping")


def test_the_action_after_the_limit_is_rate_limited_and_ping_still_answers(monkeypatch, app_env, boto, sender, clock):
    monkeypatch.setenv("RATE_LIMIT_REQUESTS_PER_MINUTE", "3")
    token = new_user(boto, app_env)
    connect("conn-rl=", headers={"Authorization": f"Bearer {token}"})
    for n in range(4):
        message("conn-rl=", json.dumps({"action": "usage.get", "id": f"u{n}"}))
    message("conn-rl=", json.dumps({"action": "ping", "id": "p"}))
    frames = sender.frames["conn-rl="]
    assert [f["type"] for f in frames] == ["result", "result", "result", "error", "pong"]
    assert [f["data"]["limits"]["requests"]["remaining"] for f in frames[:3]] == [2, 1, 0]
    error = frames[3]
    assert error["id"] == "u3" and error["error"]["code"] == "RATE_LIMITED"
    assert error["error"]["retryAfter"] == math.ceil(60 - clock.now % 60)  # the seconds left of the minute


def test_usage_get_answers_the_documented_shape(monkeypatch, app_env, boto, sender, clock):
    monkeypatch.delenv("RATE_LIMIT_REQUESTS_PER_MINUTE")  # the default, which app_env raises for other tests
    connect("conn-ug=", headers={"Authorization": f"Bearer {new_user(boto, app_env)}"})
    message("conn-ug=", json.dumps({"action": "usage.get", "id": "u"}))
    (frame,) = sender.frames["conn-ug="]
    assert frame["type"] == "result" and frame["id"] == "u"
    now = clock.now
    assert frame["data"] == {
        "limits": {"requests": {"limit": 100, "remaining": 99, "resetAt": int(now // 60 * 60 + 60)},
                   "tokens": {"limit": 10000, "remaining": 10000, "resetAt": int(now // 3600 * 3600 + 3600)}},
        "usage": {"hour": ONE_REQUEST, "day": ONE_REQUEST},
    }


def test_group_limits_come_from_the_token_groups(monkeypatch, app_env, boto, sender):
    monkeypatch.setenv("LIMITS_BY_GROUP", json.dumps({"power-users": {"requestsPerMinute": 300,
                                                                      "tokensPerHour": 100000}}))
    connect("conn-g=", headers={"Authorization": f"Bearer {new_user(boto, app_env, groups=['power-users'])}"})
    message("conn-g=", json.dumps({"action": "usage.get", "id": "u"}))
    limits = sender.frames["conn-g="][0]["data"]["limits"]
    assert (limits["requests"]["limit"], limits["tokens"]["limit"]) == (300, 100000)


def rest_get(path, headers=None):
    """A REST call through Chalice's local API Gateway (and the route's authorizer), in the test environment."""
    from chalice.config import Config
    from chalice.local import LocalGateway, LocalGatewayException

    from chalicelib.auth.authorizer import AccessRefused

    gateway = LocalGateway(chalice_app.app, Config.create(chalice_stage="test", lambda_timeout=30,
                                                          lambda_memory_size=512, app_name="llm-ide"))
    try:
        response = gateway.handle_request("GET", path, {k.lower(): v for k, v in (headers or {}).items()}, None)
    except LocalGatewayException as refused:  # no Authorization header at all
        return refused.CODE, json.loads(refused.body or b"null")
    except AccessRefused:  # raised by the authorizer: API Gateway answers 401
        return 401, {"message": "Unauthorized"}
    return response["statusCode"], json.loads(response["body"] or "null")


def test_rest_usage_needs_a_token_and_answers_like_usage_get(app_env, boto, sender, clock):
    token = new_user(boto, app_env)
    assert rest_get("/usage")[0] == 401
    assert rest_get("/usage", {"Authorization": "Bearer nope"})[0] == 401
    connect("conn-r=", headers={"Authorization": f"Bearer {token}"})
    message("conn-r=", json.dumps({"action": "usage.get", "id": "u"}))
    status, body = rest_get("/usage", {"Authorization": f"Bearer {token}"})
    assert status == 200
    assert body == sender.frames["conn-r="][0]["data"]  # REST is not rate limited: nothing changed since
