"""The local Lambda Invoke API, driven by boto3's lambda client."""
from __future__ import annotations

import json
import threading
import types
from typing import cast

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.aws.lambda_invoke import WorkerInvoker
from devserver.gateway import LambdaRuntime
from devserver.lambda_api import LambdaApi
from tests.servers import serve


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

    module = cast(types.ModuleType, types.SimpleNamespace(echo=echo, background=background, broken=broken))
    api = LambdaApi(LambdaRuntime(module, max_workers=4), app_name="llm-ide", stage="local",
                    functions=("echo", "background", "broken"))
    with serve(api.make_app()) as url:
        client = boto3.client("lambda", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local")
        yield types.SimpleNamespace(client=client, ran=ran, seen=seen)


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
