"""API Gateway's Lambda authorizer contract, for the WebSocket API and the REST API.

A valid token gets an IAM policy allowing the method ARN, the token's `sub` as the
principal and a context of `sub`, `username` and `groups`. Anything else raises
`AccessRefused`, whose message is exactly "Unauthorized": that is how a Lambda
authorizer makes API Gateway answer 401 (a Deny policy would answer 403), which is
what the protocol promises for a refused handshake.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chalicelib.auth import count_refusal, get_revocation_check, token_from_request, verify
from chalicelib.auth.errors import JwtInvalid

if TYPE_CHECKING:  # the verifier (PyJWT, cryptography) loads on first use, not at cold start
    from chalicelib.auth.verifier import Identity

logger = logging.getLogger(__name__)

# The body of API Gateway's 401 when an authorizer refuses, byte for byte (compact JSON), and its error type: what a
# REST route reached without the authorizer's caller answers too, so that every 401 of the REST API is one body.
UNAUTHORIZED_BODY = '{"message":"Unauthorized"}'
UNAUTHORIZED_ERROR_TYPE = "UnauthorizedException"


class AccessRefused(Exception):
    """Raised out of an authorizer to make API Gateway answer 401."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


def authorize_websocket(event: Mapping[str, Any]) -> dict[str, Any]:
    """The answer to a WebSocket REQUEST authorizer event for `$connect`.

    The token is read as `$connect` reads it: the `Authorization: Bearer` header,
    else the `token` query parameter.
    """
    method_arn = event["methodArn"]  # always sent by API Gateway: its absence is a bug, not a 401
    request_context = event.get("requestContext") or {}
    identity = _decide(token_from_request(event.get("headers"), event.get("queryStringParameters")),
                       connectionId=request_context.get("connectionId"), apiRequestId=request_context.get("requestId"))
    return {
        "principalId": identity.sub,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": method_arn}],
        },
        "context": identity_context(identity),
    }


def authorize_bearer(authorization: str | None) -> Identity:
    """The identity behind an `Authorization` header value (a REST TOKEN authorizer's input), if
    Cognito still honours the token (COGNITO_REVOCATION_CHECK): nothing caches a REST answer."""
    return _decide(token_from_request({"Authorization": authorization or ""}, None), revocation=True)


def _decide(token: str | None, *, revocation: bool = False, **fields: Any) -> Identity:
    """The token's identity, or AccessRefused; one "handled" line either way (the reason, never the token).

    The WebSocket authorizer leaves the revocation check to `$connect`, which runs after it
    whether or not the authorizer is attached: one Cognito call per connection, not two.
    """
    started = time.perf_counter()
    try:
        identity = verify(token)
        check = get_revocation_check() if revocation else None
        if check is not None and token is not None:
            check(token)
    except JwtInvalid as refused:
        logger.info("handled", extra={**fields, "outcome": "refused", "reason": refused.reason,
                                      "detail": str(refused), "latencyMs": _ms_since(started)})
        count_refusal(refused)
        raise AccessRefused() from None
    logger.info("handled", extra={**fields, "sub": identity.sub, "outcome": "allowed",
                                  "latencyMs": _ms_since(started)})
    return identity


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def identity_context(identity: Identity) -> dict[str, str]:
    """The authorizer context: API Gateway allows only strings, numbers and booleans in it,
    so the groups travel as a JSON list in a string (a group name may hold a comma)."""
    return {"sub": identity.sub, "username": identity.username, "groups": json.dumps(list(identity.groups))}


def caller_from_context(context: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Who the authorizer let in, from `requestContext.authorizer`; None if no authorizer ran."""
    if not context or not isinstance(context.get("sub"), str):
        return None
    groups = json.loads(context.get("groups") or "[]")
    return {"sub": context["sub"], "username": context.get("username", ""), "groups": groups}
