"""The local gateway's reading of an authorizer's answer, as API Gateway reads it."""
from __future__ import annotations

import pytest

from devserver import authorizers, events

ARN = events.connect_method_arn("local")


def answer(effect="Allow", resource=ARN, action="execute-api:Invoke", **extra):
    return {"principalId": "sub-1", "policyDocument": {"Version": "2012-10-17", "Statement": [
        {"Effect": effect, "Action": action, "Resource": resource}]}, **extra}


@pytest.mark.parametrize("resource", [ARN, [ARN], "arn:aws:execute-api:us-east-1:123456789012:localapi01/*",
                                      "arn:aws:execute-api:*:*:localapi01/local/$conn?ct"])
def test_allow_passes_the_context_on(resource):
    decision = authorizers.from_answer(answer(resource=resource, context={"sub": "sub-1", "n": 1}), ARN, latency_ms=7)
    assert decision.allowed
    assert decision.context == {"sub": "sub-1", "n": 1, "principalId": "sub-1", "integrationLatency": 7}


@pytest.mark.parametrize("policy", [
    answer("Deny"),
    answer(resource="arn:aws:execute-api:us-east-1:123456789012:otherapi/local/$connect"),
    answer(action="execute-api:ManageConnections"),
    {"principalId": "p", "policyDocument": {"Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "execute-api:*", "Resource": ARN}]}},
])
def test_deny_or_no_matching_allow_is_403(policy):
    assert authorizers.from_answer(policy, ARN, latency_ms=1) == authorizers.FORBIDDEN


@pytest.mark.parametrize("bad", [None, "Allow", {"policyDocument": {}}, answer(context={"groups": ["a"]}),
                                 {"principalId": "p", "policyDocument": {"Statement": "x"}}])
def test_malformed_answers_are_500(bad):
    assert authorizers.from_answer(bad, ARN, latency_ms=1) == authorizers.MISCONFIGURED


def test_errors_unauthorized_is_401_anything_else_500():
    assert authorizers.from_error(Exception("Unauthorized")).status == 401
    assert authorizers.from_error(KeyError("methodArn")).status == 500
