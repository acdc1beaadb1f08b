"""The local gateway closes connections as API Gateway does: at their maximum duration, and when no message
went either way for the idle time (DEV_WS_MAX_CONNECTION_SECONDS, DEV_WS_IDLE_SECONDS), with 1001."""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from urllib.parse import quote

from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from devserver.gateway import GOING_AWAY, Gateway, LambdaRuntime
from tests.functional.test_gateway_authorizer import allow, fake_app

SIGNED = {"Authorization": "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/execute-api/aws4_request"}


async def connection_life(*, max_seconds, idle_seconds, activity=None, every=0.1):
    """How long a connection lived and how it was closed; `activity` ("client" or "server") keeps it busy."""
    module = fake_app(allow)
    disconnects = []
    module.websocket_message = lambda event, context: None

    def websocket_disconnect(event, context):
        disconnects.append(event)
        return {"statusCode": 200}

    module.websocket_disconnect = websocket_disconnect
    runtime = LambdaRuntime(module, max_workers=2)
    gateway = Gateway(app_module=module, runtime=runtime, stage="local", domain_name="127.0.0.1:1",
                      web_dir=__import__("pathlib").Path(__file__).parent, web_config={}, web_csp="default-src 'self'",
                      max_connection_seconds=max_seconds, idle_seconds=idle_seconds)
    try:
        async with TestClient(TestServer(gateway.make_app())) as client:
            ws = await client.ws_connect("/local?token=t")
            connection_id = module.connects[0]["requestContext"]["connectionId"]
            opened = time.monotonic()

            async def keep_busy():
                while True:
                    await asyncio.sleep(every)
                    if activity == "client":
                        await ws.send_str('{"action": "ping", "id": "k"}')
                    elif activity == "server":
                        # Quoted as botocore quotes it: a base64 id may hold a '/'.
                        posted = await client.post(f"/local/@connections/{quote(connection_id, safe='')}",
                                                   data=b'{"type": "pong"}', headers=SIGNED)
                        assert posted.status == 200, posted.status

            busy = asyncio.create_task(keep_busy()) if activity else None
            while True:
                message = await ws.receive(timeout=max_seconds + 5)
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                    break
            lived = time.monotonic() - opened
            if busy is not None:
                busy.cancel()
            # $disconnect runs after the close, on the runtime's threads: wait for it (a busy machine delays it).
            deadline = time.monotonic() + 10
            while not disconnects and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return lived, ws.close_code, disconnects
    finally:
        runtime.shutdown()


def test_an_idle_connection_is_closed_after_the_idle_time():
    lived, code, disconnects = asyncio.run(connection_life(max_seconds=5, idle_seconds=0.5))
    assert 0.4 <= lived < 1.5 and code == GOING_AWAY
    assert disconnects and disconnects[0]["requestContext"]["disconnectStatusCode"] == GOING_AWAY


def test_messages_either_way_keep_a_connection_until_its_maximum_duration():
    for activity in ("client", "server"):
        # A message every 0.1 s against an idle limit of 1 s: room for a busy machine's stalls.
        lived, code, _ = asyncio.run(connection_life(max_seconds=2.5, idle_seconds=1.0, activity=activity))
        assert 2.4 <= lived < 3.5 and code == GOING_AWAY, activity


def test_disconnect_runs_when_the_connections_handler_is_cancelled():
    """API Gateway always sends $disconnect. aiohttp's test server cancels a handler whose connection is
    lost; if $disconnect was still waiting for a free Lambda thread then, it never ran (the flaky idle test
    on a busy machine). Here the only thread is held by a message until after the close."""
    module = fake_app(allow)
    running, held, disconnects = threading.Event(), threading.Event(), []

    def websocket_message(event, context):
        running.set()
        held.wait(10)

    def websocket_disconnect(event, context):
        disconnects.append(event)
        return {"statusCode": 200}

    module.websocket_message, module.websocket_disconnect = websocket_message, websocket_disconnect

    async def scenario():
        runtime = LambdaRuntime(module, max_workers=1)
        gateway = Gateway(app_module=module, runtime=runtime, stage="local", domain_name="127.0.0.1:1",
                          web_dir=Path(__file__).parent, web_config={}, web_csp="default-src 'self'")
        try:
            async with TestClient(TestServer(gateway.make_app())) as client:
                ws = await client.ws_connect("/local?token=t")
                await ws.send_str('{"action": "ping", "id": "busy"}')  # takes the one thread
                while not running.is_set():
                    await asyncio.sleep(0.01)
                await ws.close()
                await asyncio.sleep(0.5)  # the handler is cancelled with its $disconnect still queued
                held.set()
                deadline = time.monotonic() + 10
                while not disconnects and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
        finally:
            held.set()
            runtime.shutdown()

    asyncio.run(scenario())
    assert len(disconnects) == 1
    assert disconnects[0]["requestContext"]["eventType"] == "DISCONNECT"
