"""Frames the JSON parser accepts but a handler could not survive, and texts Bedrock would refuse:
each answered with a clear BAD_REQUEST before anything is reserved, and the connection lives on."""
from __future__ import annotations

import json
import logging

import pytest

from tests.handler_calls import connect, login, message

DEEP_ARRAY = "[" * 30000 + "]" * 30000
DEEP_OBJECT = '{"a":' * 30000 + "1" + "}" * 30000


@pytest.fixture
def conn(app_env, boto, sender):
    connect("conn-hard=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    return "conn-hard="


# Small enough for a frame, deeper than any request needs (MAX_NESTING is 64).
DEEP_PARAMETER = json.dumps({"action": "chat.send", "id": "n1", "prompt": "hi", "messages": "PLACE"}).replace(
    '"PLACE"', "[" * 80 + "]" * 80)


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT, DEEP_PARAMETER])
def test_a_frame_nested_too_deeply_is_a_bad_request_and_the_connection_still_answers(conn, sender, body):
    message(conn, body)
    message(conn, json.dumps({"action": "ping", "id": "after"}))
    refused, pong = sender.frames[conn]
    assert refused["type"] == "error" and refused["error"]["code"] == "BAD_REQUEST"
    assert "nested too deeply" in refused["error"]["message"]
    assert pong == {"type": "pong", "id": "after"}


def test_an_expired_connection_sending_a_deep_frame_is_closed_with_unauthorized(conn, sender, table):
    table.update_item(Key={"connectionId": conn}, UpdateExpression="SET tokenExpiresAt = :past",
                      ExpressionAttributeValues={":past": 1})
    message(conn, DEEP_ARRAY)
    (frame,) = sender.frames[conn]
    assert frame["error"]["code"] == "UNAUTHORIZED" and conn in sender.closed


@pytest.mark.parametrize("body, field", [
    ('{"action":"chat.send","id":"s1","prompt":"\\ud800"}', "'prompt'"),
    ('{"action":"chat.send","id":"s1","prompt":"hi","system":"a\\udfffb"}', "'system'"),
    ('{"action":"session.create","id":"s1","title":"\\udbff"}', "'title'"),
    ('{"action":"context.put","id":"s1","path":"a.txt","content":"x\\ud800y"}', "'content'"),
    ('{"action":"chat.send","id":"s1","prompt":"hi","contextPaths":["\\ud800"]}', "'contextPaths[0]'"),
    ('{"action":"chat.send","id":"s1","prompt":"hi","\\ud800":1}', "a key of the frame"),
])
def test_a_lone_surrogate_anywhere_is_a_bad_request_naming_the_field(conn, sender, caplog, body, field):
    with caplog.at_level(logging.WARNING, logger="chalicelib"):
        message(conn, body)
    (frame,) = sender.frames[conn]
    assert frame["type"] == "error" and frame["id"] == "s1" and frame["error"]["code"] == "BAD_REQUEST"
    assert field in frame["error"]["message"] and "surrogate" in frame["error"]["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback, nothing logged as a bug


@pytest.mark.parametrize("params, field", [
    ({"prompt": "   "}, "'prompt'"),
    ({"prompt": ""}, "'prompt'"),
    ({"prompt": "hi", "system": " \n "}, "'system'"),
    ({"prompt": "\t\u3000\n"}, "'prompt'"),  # an ideographic space is whitespace to Bedrock too
])
def test_blank_text_is_refused_before_any_ack_and_nothing_is_reserved(conn, sender, params, field):
    message(conn, json.dumps({"action": "usage.get", "id": "u0"}))
    message(conn, json.dumps({"action": "chat.send", "id": "w1", **params}))
    message(conn, json.dumps({"action": "usage.get", "id": "u1"}))
    before, refused, after = sender.frames[conn]
    assert refused["type"] == "error" and refused["id"] == "w1" and refused["error"]["code"] == "BAD_REQUEST"
    assert field in refused["error"]["message"]
    assert after["data"]["limits"]["tokens"] == before["data"]["limits"]["tokens"]


def _usage(conn, sender, request_id):
    message(conn, json.dumps({"action": "usage.get", "id": request_id}))
    return sender.frames[conn][-1]["data"]


def test_pings_and_unknown_actions_count_and_a_flooding_connection_is_limited_then_closed(clock, conn, sender):
    from chalicelib.config import get_settings

    limit = get_settings().connection_frame_limit  # 100 frames per 10-second window by default
    before = _usage(conn, sender, "u0")["usage"]["hour"]["requests"]
    for n in range(20):  # unknown actions are refused, and count like every action but ping
        message(conn, json.dumps({"action": "no.such", "id": f"x{n}"}))
    after = _usage(conn, sender, "u1")["usage"]["hour"]["requests"]
    assert after - before == 20 + 1  # the 20 refused frames and the usage.get
    sender.frames[conn].clear()
    for n in range(2 * limit + 10):
        if conn in sender.gone:
            break
        message(conn, json.dumps({"action": "ping", "id": f"p{n}"}))
    frames = sender.frames[conn]
    answered = limit - 22  # the window holds the 22 frames above already
    assert [f["type"] for f in frames[:answered]] == ["pong"] * answered
    limited = [f for f in frames if f["type"] == "error"]
    assert limited and all(f["error"]["code"] == "RATE_LIMITED" for f in limited)
    assert 1 <= limited[0]["error"]["retryAfter"] <= 10
    assert "closing" in limited[-1]["error"]["message"] and conn in sender.closed


def test_a_chat_that_fails_unexpectedly_still_counts_as_a_request(conn, sender, monkeypatch):
    from chalicelib.sessions.store import SessionStore

    def broken(*args, **kwargs):
        raise RuntimeError("DynamoDB is having a bad day")

    monkeypatch.setattr(SessionStore, "history_tokens", broken)
    before = _usage(conn, sender, "u0")["usage"]["hour"]["requests"]
    message(conn, json.dumps({"action": "chat.send", "id": "c1", "prompt": "hi", "sessionId": "a" * 32}))
    assert sender.frames[conn][-1]["error"]["code"] == "INTERNAL"
    after = _usage(conn, sender, "u1")["usage"]["hour"]["requests"]
    assert after - before == 2  # the failed chat and the usage.get


def _disconnect(connection_id):
    import app as chalice_app
    from devserver import events

    event = events.disconnect_event(connection_id=connection_id, connected_at_ms=0, stage="test",
                                    domain_name="abc.execute-api.us-east-1.amazonaws.com", source_ip="10.0.0.1",
                                    user_agent="t", status_code=1000, reason="bye")
    chalice_app.websocket_disconnect(event, None)


@pytest.fixture
def capped(app_env, monkeypatch, table):
    """The default cap of 10, and the users' lists of open connections started afresh (as an operator
    frees a user's places: docs/OPERATIONS.md), since other tests leave connections open."""
    from tests.conftest import reset_app_caches

    monkeypatch.delenv("MAX_CONNECTIONS_PER_USER")
    reset_app_caches()
    for item in table.scan(ConsistentRead=True)["Items"]:
        if item["connectionId"].startswith("user#"):
            table.delete_item(Key={"connectionId": item["connectionId"]})


def test_a_user_may_hold_ten_connections_and_the_eleventh_is_refused(capped, app_env, boto, sender):
    token = login(boto, app_env)
    statuses = [connect(f"cap-{n}=", headers={"Authorization": f"Bearer {token}"})["statusCode"] for n in range(11)]
    assert statuses == [200] * 10 + [429]
    other = connect("cap-other=", headers={"Authorization": f"Bearer {login(boto, app_env, 1)}"})
    assert other["statusCode"] == 200  # the cap is per user
    _disconnect("cap-3=")
    assert connect("cap-11=", headers={"Authorization": f"Bearer {token}"})["statusCode"] == 200
    assert connect("cap-12=", headers={"Authorization": f"Bearer {token}"})["statusCode"] == 429


def test_concurrent_handshakes_cannot_outrun_the_cap(capped, app_env, boto, sender):
    from concurrent.futures import ThreadPoolExecutor

    token = login(boto, app_env)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(
            lambda n: connect(f"race-{n}=", headers={"Authorization": f"Bearer {token}"})["statusCode"], range(16)))
    assert sorted(statuses) == [200] * 10 + [429] * 6, statuses
