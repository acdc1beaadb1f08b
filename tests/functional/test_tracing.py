"""Tracing in fresh interpreters, as a cold start has it: the SDK loaded only when on, the trace
carried to the worker, and no user's key in what the SDK records of the AWS calls (against moto)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.mark.parametrize("enabled, in_lambda", [("false", False), ("true", False), ("true", True)])
def test_tracing_on_and_off_work_without_a_daemon(enabled, in_lambda):
    # A fresh interpreter, as a cold start: the SDK is imported only when tracing is on.
    code = (
        "import sys\n"
        "from chalicelib.observability import tracing\n"
        "tracing.start()\n"
        "with tracing.subsegment('admission', action='ping'):\n"
        "    tracing.annotate(model='m')\n"
        "tracing.annotate(outcome='ok')\n"
        "print('aws_xray_sdk' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin", "COGNITO_USER_POOL_ID": "us-east-1_x", "COGNITO_APP_CLIENT_IDS": "c",
           "TRACING_ENABLED": enabled, "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9"}
    if in_lambda:  # what Lambda sets with active tracing: the SDK then records real subsegments
        env.update(LAMBDA_TASK_ROOT="/var/task", AWS_LAMBDA_FUNCTION_NAME="llm-ide-prod-websocket_message",
                   _X_AMZN_TRACE_ID="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                            cwd=Path(__file__).resolve().parents[2], check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("True" if enabled == "true" else "False")


TRACE_ROOT = "Root=1-5759e988-bd862e3fe1be46a994272793"
LAMBDA_TRACE = f"{TRACE_ROOT};Parent=53995c3f42cd8ad8;Sampled=1"


def invoke_a_worker(tracing: str, *, in_lambda: bool = True) -> dict:
    env = {"PATH": "/usr/bin", "COGNITO_USER_POOL_ID": "us-east-1_x", "COGNITO_APP_CLIENT_IDS": "c",
           "TRACING_ENABLED": tracing, "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9", "PYTHONPATH": str(ROOT)}
    if in_lambda:
        env.update(LAMBDA_TASK_ROOT="/var/task", AWS_LAMBDA_FUNCTION_NAME="llm-ide-prod-websocket_message",
                   _X_AMZN_TRACE_ID=LAMBDA_TRACE)
    result = subprocess.run([sys.executable, str(HERE / "invoke_with_trace.py")],
                            capture_output=True, text=True, env=env, timeout=60, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_with_tracing_on_the_worker_invoke_continues_the_trace_from_its_own_subsegment():
    sent = invoke_a_worker("true")
    assert sent["sdk"] is True
    root, parent, sampled = sent["trace"].split(";")
    assert root == TRACE_ROOT and sampled == "Sampled=1"
    assert parent.startswith("Parent=") and parent != "Parent=53995c3f42cd8ad8"  # the Invoke subsegment


def test_with_tracing_off_the_sdk_is_never_imported():
    sent = invoke_a_worker("false")
    # botocore passes Lambda's own trace header on by itself; the SDK adds the subsegment.
    assert sent["sdk"] is False and sent["trace"] == LAMBDA_TRACE
    assert invoke_a_worker("false", in_lambda=False) == {"trace": None, "sdk": False}


def trace_user_data_calls(moto_url, provisioned, sub: str, *, filtered: bool = True) -> dict:
    from devserver import aws as dev_aws

    env = {**dev_aws.app_environment(moto_url, "http://127.0.0.1:9", provisioned), "PATH": "/usr/bin",
           "PYTHONPATH": str(ROOT), "TRACING_ENABLED": "true", "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9"}
    script = [str(HERE / "trace_user_data_calls.py"), sub, *([] if filtered else ["unfiltered"])]
    result = subprocess.run([sys.executable, *script], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT,
                            check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _subsegments(entity: dict) -> list[dict]:
    return [entity] + [s for sub in entity.get("subsegments", []) for s in _subsegments(sub)]


def test_traced_aws_calls_record_no_key_or_prefix_holding_the_users_sub(moto_url, provisioned):
    import uuid

    sub = str(uuid.uuid4())
    traced = trace_user_data_calls(moto_url, provisioned, sub)
    [segment] = traced["emitted"]
    calls = [s for s in _subsegments(segment) if s.get("namespace") == "aws"]
    assert [c["aws"]["operation"] for c in calls] == [
        "PutObject", "HeadObject", "GetObject", "ListObjectsV2", "CopyObject", "DeleteObjects",
        "PutItem", "GetItem", "Query", "DeleteItem"]
    assert calls[0]["aws"]["bucket_name"] and calls[6]["aws"]["table_name"]  # what is useful stays
    for call in calls:
        assert not {"key", "prefix", "copy_source", "item_collection_metrics"} & set(call["aws"]), call["aws"]
    assert sub not in json.dumps(segment)
    # moto returns no ItemCollectionMetrics (DynamoDB does, with the item's key, for tables with a local index).
    assert traced["whitelisted"] == []


def test_the_sdks_own_whitelist_would_record_the_users_keys(moto_url, provisioned):
    """What the test above guards against: S3 keys and prefixes are users/<sub>/..."""
    import uuid

    sub = str(uuid.uuid4())
    traced = trace_user_data_calls(moto_url, provisioned, sub, filtered=False)
    assert f"users/{sub}/" in json.dumps(traced["emitted"])
    assert traced["whitelisted"] == sorted(["CopySource", "ItemCollectionMetrics", "Key", "Prefix"])
