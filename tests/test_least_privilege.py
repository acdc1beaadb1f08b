"""Every AWS call the app's functions made in this test session is in the permission contract.

tests/infra/test_policies.py holds CALLS, each function's (IAM action, target), and proves the
policy files grant exactly that. Here the other half: the calls the code really makes, recorded
by devserver/aws_calls.py in this process and in every local stack the tests started, must each
be in CALLS. A boto3 call added to the code without its permission fails here.
"""
from __future__ import annotations

import pytest

from devserver.aws_calls import CallRecorder, iam_calls
from infra import resources
from tests.infra.test_policies import CALLS

# Calls whose target CALLS names by kind only: frames (the API's @connections), models, workers.
UNTARGETED = {"execute-api:ManageConnections", "bedrock:InvokeModelWithResponseStream", "bedrock:InvokeModel",
              "lambda:InvokeFunction", "secretsmanager:GetSecretValue", "cognito-idp:GetUser"}


def contract_target(target: str) -> str:
    """A recorded target ("table:llm-ide-test-usage") as CALLS names it ("table:usage")."""
    kind, _, name = target.partition(":")
    if kind == "index":  # "index:llm-ide-test-sessions/byUpdated" -> "index:sessions/byUpdated"
        table, _, index = name.partition("/")
        return f"index:{contract_target(f'table:{table}').split(':', 1)[1]}/{index}"
    if kind == "table":
        keys = [table.key for table in resources.TABLES if name.endswith(f"-{table.key}")]
    elif kind in ("object", "bucket"):
        keys = [bucket.key for bucket in resources.BUCKETS if f"-{bucket.key}-" in name]
        kind = "prefix" if kind == "bucket" else kind
    else:
        return target
    assert len(keys) == 1, f"cannot tell which resource {target!r} is"
    return f"{kind}:{keys[0]}"


def outside_contract(calls: set[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    missing = []
    for function, action, target in sorted(calls):
        allowed = CALLS.get(function, [])
        if action in UNTARGETED:
            ok = any(a == action for a, _ in allowed)
        else:
            ok = (action, contract_target(target)) in allowed
        if not ok:
            missing.append((function, action, target))
    return missing


def test_the_contract_check_catches_a_call_without_its_permission():
    recorder = CallRecorder()
    recorder.record("$default", "dynamodb", "GetItem", {"TableName": "llm-ide-test-connections"})
    recorder.record("$default", "dynamodb", "Scan", {"TableName": "llm-ide-test-sessions"})
    recorder.record("github_worker", "s3", "HeadObject", {"Bucket": "llm-ide-test-context-000000000000"})
    recorder.record(None, "dynamodb", "Scan", {"TableName": "llm-ide-test-sessions"})  # a test's own call
    assert outside_contract(recorder.calls) == [
        ("github_worker", "s3:GetObject", "object:llm-ide-test-context-000000000000"),
        ("websocket_message", "dynamodb:Scan", "table:llm-ide-test-sessions")]


def test_calls_are_translated_to_the_iam_actions_they_need():
    assert iam_calls("dynamodb", "TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": "t1"}}, {"Update": {"TableName": "t2"}}]}) == [
        ("dynamodb:PutItem", "table:t1"), ("dynamodb:UpdateItem", "table:t2")]
    assert iam_calls("dynamodb", "Query", {"TableName": "t", "IndexName": "byUpdated"}) == [
        ("dynamodb:Query", "index:t/byUpdated")]
    assert contract_target("index:llm-ide-test-sessions/byUpdated") == "index:sessions/byUpdated"
    assert iam_calls("s3", "HeadObject", {"Bucket": "b"}) == [("s3:GetObject", "object:b")]
    assert iam_calls("s3", "ListObjectsV2", {"Bucket": "b"}) == [("s3:ListBucket", "bucket:b")]
    assert iam_calls("s3", "CopyObject", {"Bucket": "b"}) == [
        ("s3:GetObject", "object:b"), ("s3:PutObject", "object:b"),
        ("s3:GetObjectTagging", "object:b"), ("s3:PutObjectTagging", "object:b")]
    assert iam_calls("s3", "PutObject", {"Bucket": "b", "Tagging": "k=v"}) == [
        ("s3:PutObject", "object:b"), ("s3:PutObjectTagging", "object:b")]
    assert iam_calls("apigatewaymanagementapi", "PostToConnection", {}) == [("execute-api:ManageConnections", "")]
    assert iam_calls("bedrock-runtime", "ConverseStream", {}) == [("bedrock:InvokeModelWithResponseStream", "")]
    assert iam_calls("lambda", "Invoke", {}) == [("lambda:InvokeFunction", "")]


@pytest.mark.after_all
def test_every_call_the_functions_made_is_in_the_contract(recorded_aws_calls):
    calls = recorded_aws_calls()
    functions = {function for function, _, _ in calls}
    if not functions:
        pytest.skip("no app function ran in this selection of tests")
    assert outside_contract(calls) == [], "add these to CALLS (tests/infra/test_policies.py) and infra/policies.py"
