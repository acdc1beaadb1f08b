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
