"""The local gateway's $connect path with a stand-in app: authorizer first, its context into $connect."""
from __future__ import annotations

import asyncio
import types
from pathlib import Path

import pytest
from aiohttp import WSServerHandshakeError
from aiohttp.test_utils import TestClient, TestServer

from devserver.gateway import Gateway, LambdaRuntime


def fake_app(authorizer):
    """An app module whose ws_authorizer is `authorizer` and whose $connect records its event."""
    from chalice import Chalice

    module = types.SimpleNamespace(app=Chalice(app_name="fake"), connects=[], authorizer_events=[])

    def ws_authorizer(event, context):
        module.authorizer_events.append(event)
        return authorizer(event)

    def websocket_connect(event, context):
        module.connects.append(event)
        return {"statusCode": 200}

    module.ws_authorizer = ws_authorizer
    module.websocket_connect = websocket_connect
    module.websocket_disconnect = lambda event, context: {"statusCode": 200}
    return module


async def handshake(module, query="?token=t"):
    runtime = LambdaRuntime(module, max_workers=2)
    gateway = Gateway(app_module=module, runtime=runtime, stage="local", domain_name="127.0.0.1:1",
                      web_dir=Path(__file__).parent, web_config={}, web_csp="default-src 'self'")
    try:
        async with TestClient(TestServer(gateway.make_app())) as client:
            try:
                ws = await client.ws_connect(f"/local{query}", headers={"Authorization": "Bearer h"})
            except WSServerHandshakeError as refused:
                return refused.status
            await ws.close()
            return 101
    finally:
        runtime.shutdown()


def allow(event):
    return {"principalId": "sub-1", "context": {"sub": "sub-1", "username": "dev", "groups": "[]"},
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}]}}


def test_allowed_handshake_reaches_connect_with_the_authorizer_context():
    module = fake_app(allow)
    assert asyncio.run(handshake(module)) == 101
    (auth_event,) = module.authorizer_events
    assert auth_event["type"] == "REQUEST"
    assert auth_event["methodArn"] == "arn:aws:execute-api:us-east-1:123456789012:localapi01/local/$connect"
    assert auth_event["queryStringParameters"] == {"token": "t"}
    assert auth_event["headers"]["Authorization"] == "Bearer h"
    assert auth_event["requestContext"]["routeKey"] == "$connect" and auth_event["stageVariables"] == {}
    (connect,) = module.connects
    authorizer = connect["requestContext"]["authorizer"]
    assert authorizer["principalId"] == "sub-1" and authorizer["username"] == "dev"
    assert isinstance(authorizer["integrationLatency"], int)


def unauthorized(event):
    raise Exception("Unauthorized")


def broken(event):
    raise KeyError("methodArn")


def deny(event):
    answer = allow(event)
    answer["policyDocument"]["Statement"][0]["Effect"] = "Deny"
    return answer


@pytest.mark.parametrize("authorizer, status", [(unauthorized, 401), (deny, 403), (broken, 500)])
def test_refused_handshakes_never_reach_connect(authorizer, status):
    module = fake_app(authorizer)
    assert asyncio.run(handshake(module)) == status
    assert module.connects == []
