"""The local Lambda Invoke API, driven by boto3's lambda client."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import types

import boto3
import pytest
from aiohttp import web
from botocore.exceptions import ClientError

from chalicelib.workers import WorkerInvoker
from devserver.gateway import LambdaRuntime
from devserver.lambda_api import LambdaApi


@pytest.fixture
def lambda_api():
    ran = threading.Event()
    seen = []

    def echo(event, context):
        return {"echo": event, "function": context.function_name}

    def background(event, context):
        seen.append(event)
        ran.set()

    def broken(event, context):
        raise ValueError("worker bug")

    module = types.SimpleNamespace(echo=echo, background=background, broken=broken)
    api = LambdaApi(LambdaRuntime(module, max_workers=4), app_name="llm-ide", stage="local",
                    functions=("echo", "background", "broken"))
    loop = asyncio.new_event_loop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runner = web.AppRunner(api.make_app())
    started = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
    yield types.SimpleNamespace(client=client, ran=ran, seen=seen)
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_request_response_returns_the_result(lambda_api):
    response = lambda_api.client.invoke(FunctionName="llm-ide-local-echo", Payload=json.dumps({"a": 1}))
    assert json.loads(response["Payload"].read()) == {"echo": {"a": 1}, "function": "echo"}


def test_arn_and_bare_names_resolve(lambda_api):
    arn = "arn:aws:lambda:us-east-1:123456789012:function:llm-ide-local-echo"
    assert lambda_api.client.invoke(FunctionName=arn, Payload=b"{}")["StatusCode"] == 200


def test_event_invocation_is_accepted_then_runs(lambda_api):
    WorkerInvoker(lambda_api.client).start("llm-ide-local-background", {"job": 7})
    assert lambda_api.ran.wait(5)
    assert lambda_api.seen == [{"job": 7}]


def test_unknown_function_is_not_found(lambda_api):
    with pytest.raises(ClientError) as error:
        lambda_api.client.invoke(FunctionName="llm-ide-local-nope", Payload=b"{}")
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_function_error_is_reported_like_lambda(lambda_api):
    response = lambda_api.client.invoke(FunctionName="broken", Payload=b"{}")
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read())["errorType"] == "ValueError"


def test_invoker_reports_a_missing_worker_as_internal(lambda_api):
    from chalicelib.errors import Internal

    with pytest.raises(Internal):
        WorkerInvoker(lambda_api.client).start("llm-ide-local-nope", {})
