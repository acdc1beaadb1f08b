"""Limits end to end, on a local stack of their own (its users' windows are not shared with other tests),
whose clock stands still (HELD_CLOCK)."""
from __future__ import annotations

import json
import math
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import HELD_CLOCK, start_stack, stop_stack


@pytest.fixture(scope="module")
def limits_stack(tmp_path_factory):
    # The defaults, whatever the environment running the tests says.
    defaults = {"RATE_LIMIT_REQUESTS_PER_MINUTE": "", "TOKEN_BUDGET_PER_HOUR": "", "LIMITS_BY_GROUP": "",
                "DEV_FIXED_CLOCK": str(HELD_CLOCK)}
    running = start_stack(tmp_path_factory.mktemp("limits-stack"), env=defaults)
    yield running
    stop_stack(running.process)


def get_usage(stack, token):
    request = urllib.request.Request(stack.document["httpUrl"] + "/usage",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None


def test_usage_get_answers_the_documented_shape_and_rest_agrees(limits_stack):
    with limits_stack.connect("dev2") as client:
        frame = client.request("usage.get")
    assert frame["type"] == "result"
    data = frame["data"]
    now = HELD_CLOCK
    nothing = {"requests": 1, "inputTokens": 0, "outputTokens": 0, "cacheReadInputTokens": 0,
               "cacheWriteInputTokens": 0}
    assert data["usage"] == {"hour": nothing, "day": nothing}
    assert data["limits"] == {
        "requests": {"limit": 100, "remaining": 99, "resetAt": int(now // 60 * 60 + 60)},
        "tokens": {"limit": 10000, "remaining": 10000, "resetAt": int(now // 3600 * 3600 + 3600)}}
    assert get_usage(limits_stack, limits_stack.tokens("dev2").access_token) == (200, data)
    assert get_usage(limits_stack, None)[0] == 401


def test_the_101st_action_in_a_minute_is_rate_limited(limits_stack):
    with limits_stack.connect("dev") as client, limits_stack.connect("dev") as other_tab:
        # 100 actions in flight at once, from two connections of one user.
        ids = [(client if n % 2 else other_tab).send("usage.get") for n in range(100)]
        answers = [(client if n % 2 else other_tab).next_frame(i, timeout=30) for n, i in enumerate(ids)]
        assert [a["type"] for a in answers] == ["result"] * 100, [a for a in answers if a["type"] != "result"][:3]
        frame = client.request("usage.get")
        assert frame["type"] == "error" and frame["error"]["code"] == "RATE_LIMITED"
        assert frame["error"]["retryAfter"] == math.ceil(60 - HELD_CLOCK % 60)  # the seconds left of the minute
        assert client.ping() < 5  # ping is never limited
    status, usage = get_usage(limits_stack, limits_stack.tokens("dev").access_token)
    assert status == 200 and usage["usage"]["hour"]["requests"] == 100  # the rejected one was not counted
    assert usage["limits"]["requests"]["remaining"] == 0  # still the same minute: the stack's clock stands still
    with limits_stack.connect("dev2") as client:  # another user's window is their own
        assert client.request("usage.get")["type"] == "result"
