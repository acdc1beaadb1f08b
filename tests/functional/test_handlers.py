"""The Chalice handlers, called with API Gateway's event shapes, against moto."""
from __future__ import annotations

import json
import time

import pytest
from chalice.test import Client

import app as chalice_app
from devserver import events
from tests import tokens
from tests.handler_calls import connect, login, message


def test_connect_with_header_token_stores_the_verified_identity(app_env, boto, table, sender):
    token = login(boto, app_env)
    assert connect("conn-h=", headers={"Authorization": f"Bearer {token}"})["statusCode"] == 200
    item = table.get_item(Key={"connectionId": "conn-h="})["Item"]
    assert item["username"] == "dev"
    assert item["userSub"] and item["tokenExpiresAt"] > time.time()
    assert item["ttl"] >= time.time() + 7000
    assert item["endpoint"] == "http://127.0.0.1:9/test"


def test_connect_with_query_token(app_env, boto, table, sender):
    assert connect("conn-q=", query={"token": login(boto, app_env, 1)})["statusCode"] == 200
    assert table.get_item(Key={"connectionId": "conn-q="})["Item"]["username"] == "dev2"


@pytest.mark.parametrize("headers, query", [
    ({}, {}),
    ({"Authorization": "Bearer "}, {}),
    ({"Authorization": "Bearer garbage"}, {}),
    ({}, {"token": "a.b.c"}),
    ({"Authorization": f"Bearer {tokens.sign(tokens.claims())}"}, {}),  # our key, not the pool's
])
def test_bad_tokens_are_refused_and_nothing_is_stored(app_env, table, sender, headers, query):
    before = table.scan()["Count"]
    response = connect("conn-bad=", headers=headers, query=query)
    assert response["statusCode"] == 401
    assert table.scan()["Count"] == before


def test_ping_answers_pong_to_the_caller(app_env, boto, sender):
    connect("conn-p=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    message("conn-p=", json.dumps({"action": "ping", "id": "p1"}))
    assert sender.frames["conn-p="] == [{"type": "pong", "id": "p1"}]


@pytest.mark.parametrize("body, code, frame_id", [
    ('{"action": "nope", "id": "u1"}', "BAD_REQUEST", "u1"),
    ("not json", "BAD_REQUEST", None),
    (json.dumps({"action": "ping", "id": "big", "pad": "x" * 40_000}), "PAYLOAD_TOO_LARGE", "big"),
    # A size over the limit is PAYLOAD_TOO_LARGE however far over (the contract), not BAD_REQUEST past 2**53.
    (json.dumps({"action": "chat.upload", "id": "up1", "size": 2**53 + 1}), "PAYLOAD_TOO_LARGE", "up1"),
    (json.dumps({"action": "context.uploadUrl", "id": "up2", "path": "a.txt", "size": 10**20}), "PAYLOAD_TOO_LARGE",
     "up2"),
])
def test_bad_frames_get_error_frames(app_env, boto, sender, body, code, frame_id):
    connect("conn-e=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    message("conn-e=", body)
    (frame,) = sender.frames["conn-e="]
    assert frame["type"] == "error" and frame["error"]["code"] == code and frame.get("id") == frame_id
    assert "conn-e=" not in sender.closed


@pytest.mark.parametrize("body", ['{"action": "ping", "id": "late"}', "not json",
                                  '{"action": "no.such", "id": "late"}'])
def test_expired_token_on_an_open_connection_is_unauthorized_and_closed(app_env, boto, table, sender, body):
    # Whatever the frame, well-formed or not: the token is judged first.
    connect("conn-x=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    table.update_item(Key={"connectionId": "conn-x="}, UpdateExpression="SET tokenExpiresAt = :t",
                      ExpressionAttributeValues={":t": int(time.time()) - 1})
    message("conn-x=", body)
    assert [frame["error"]["code"] for frame in sender.frames["conn-x="]] == ["UNAUTHORIZED"]
    assert sender.closed == ["conn-x="]


def test_unknown_connection_is_unauthorized(app_env, sender):
    message("never-connected=", '{"action": "ping", "id": "p"}')
    assert sender.frames["never-connected="][0]["error"]["code"] == "UNAUTHORIZED"


def test_disconnect_removes_the_connection(app_env, boto, table, sender):
    connect("conn-d=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    event = events.disconnect_event(connection_id="conn-d=", connected_at_ms=0, stage="test", domain_name="d",
                                    source_ip="10.0.0.1", user_agent=None, status_code=1000, reason="bye")
    assert chalice_app.websocket_disconnect(event, None)["statusCode"] == 200
    assert "Item" not in table.get_item(Key={"connectionId": "conn-d="})


@pytest.mark.parametrize("stage", ["dev", "staging", "prod"])
def test_health_route_with_each_stage_config(app_env, stage, monkeypatch):
    # chalice.test.Client applies the stage's environment from .chalice/config.json. Staging and
    # prod turn tracing on, which would patch botocore for the rest of this process: tracing is
    # tested in fresh interpreters (tests/functional/test_tracing.py) instead.
    from chalicelib.observability import tracing

    monkeypatch.setattr(tracing, "start", lambda: None)
    with Client(chalice_app.app, stage_name=stage) as client:
        response = client.http.get("/health")
    assert response.status_code == 200 and response.json_body == {"status": "ok", "stage": stage}
