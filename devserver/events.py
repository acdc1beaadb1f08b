"""API Gateway WebSocket events, in the shapes Lambda receives them.

Only the fields AWS sends are built, with AWS's names and types, so the app's
handlers cannot come to rely on something the real gateway does not give.
"""
from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

API_ID = "localapi01"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


def connect_method_arn(stage: str) -> str:
    """What API Gateway puts in `methodArn` of a WebSocket REQUEST authorizer event."""
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{stage}/$connect"


def new_connection_id() -> str:
    # API Gateway's ids are 12 random bytes in base64, such as "L0SM9cOFvHcCIhw=".
    return base64.b64encode(secrets.token_bytes(10)).decode()


def _request_time(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _context(*, route_key: str, event_type: str, connection_id: str, connected_at_ms: int,
             stage: str, domain_name: str, source_ip: str, user_agent: str | None) -> dict[str, Any]:
    now = time.time()
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": base64.b64encode(secrets.token_bytes(12)).decode(),
        "requestTime": _request_time(now),
        "messageDirection": "IN",
        "stage": stage,
        "connectedAt": connected_at_ms,
        "requestTimeEpoch": int(now * 1000),
        "identity": {"userAgent": user_agent, "sourceIp": source_ip},
        "requestId": str(uuid.uuid4()),
        "domainName": domain_name,
        "connectionId": connection_id,
        "apiId": API_ID,
    }


def connect_event(*, connection_id: str, connected_at_ms: int, stage: str, domain_name: str,
                  source_ip: str, headers: Mapping[str, str], query: Mapping[str, list[str]],
                  authorizer: dict[str, Any] | None = None) -> dict[str, Any]:
    single_query = {k: v[-1] for k, v in query.items()} or None
    event: dict[str, Any] = {
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": {k: list(v) for k, v in query.items()} or None,
        "requestContext": _context(route_key="$connect", event_type="CONNECT", connection_id=connection_id,
                                   connected_at_ms=connected_at_ms, stage=stage, domain_name=domain_name,
                                   source_ip=source_ip, user_agent=headers.get("User-Agent")),
        "isBase64Encoded": False,
    }
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer
    return event


def authorizer_event(*, connection_id: str, connected_at_ms: int, stage: str, domain_name: str,
                     source_ip: str, headers: Mapping[str, str], query: Mapping[str, list[str]],
                     method_arn: str) -> dict[str, Any]:
    """The REQUEST authorizer's input for `$connect`: the handshake's headers and query, the method ARN."""
    request = connect_event(connection_id=connection_id, connected_at_ms=connected_at_ms, stage=stage,
                            domain_name=domain_name, source_ip=source_ip, headers=headers, query=query)
    return {
        "type": "REQUEST",
        "methodArn": method_arn,
        "headers": request["headers"],
        "multiValueHeaders": request["multiValueHeaders"],
        "queryStringParameters": request["queryStringParameters"],
        "multiValueQueryStringParameters": request["multiValueQueryStringParameters"],
        "stageVariables": {},
        "requestContext": request["requestContext"],
    }


def message_event(*, connection_id: str, connected_at_ms: int, stage: str, domain_name: str,
                  source_ip: str, user_agent: str | None, body: str | bytes) -> dict[str, Any]:
    context = _context(route_key="$default", event_type="MESSAGE", connection_id=connection_id,
                       connected_at_ms=connected_at_ms, stage=stage, domain_name=domain_name,
                       source_ip=source_ip, user_agent=user_agent)
    context["messageId"] = base64.b64encode(secrets.token_bytes(12)).decode()
    return {
        "requestContext": context,
        "body": base64.b64encode(body).decode() if isinstance(body, bytes) else body,
        "isBase64Encoded": isinstance(body, bytes),
    }


def disconnect_event(*, connection_id: str, connected_at_ms: int, stage: str, domain_name: str,
                     source_ip: str, user_agent: str | None, status_code: int, reason: str) -> dict[str, Any]:
    context = _context(route_key="$disconnect", event_type="DISCONNECT", connection_id=connection_id,
                       connected_at_ms=connected_at_ms, stage=stage, domain_name=domain_name,
                       source_ip=source_ip, user_agent=user_agent)
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    return {
        "headers": {"Host": domain_name, "x-api-key": "", "x-restapi": ""},
        "multiValueHeaders": {"Host": [domain_name]},
        "requestContext": context,
        "isBase64Encoded": False,
    }


REST_API_ID = "localrest1"


def rest_method_arn(stage: str, method: str, path: str) -> str:
    """What API Gateway puts in `methodArn` of a REST API authorizer's event for `method path`."""
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{REST_API_ID}/{stage}/{method}/{path.lstrip('/')}"


def token_authorizer_event(*, authorization: str, method_arn: str) -> dict[str, Any]:
    """A TOKEN authorizer's input: the request's `Authorization` header, whole, and the method ARN."""
    return {"type": "TOKEN", "authorizationToken": authorization, "methodArn": method_arn}


def rest_event(*, method: str, path: str, stage: str, domain_name: str, source_ip: str,
               headers: Mapping[str, str], authorizer: dict[str, Any] | None = None,
               body: str | None = None) -> dict[str, Any]:
    """A REST API's Lambda proxy event (payload format 1.0) for a route without path parameters
    or a query string; `authorizer` is what the route's authorizer answered (`requestContext.authorizer`)."""
    now = time.time()
    identity_fields = ("cognitoIdentityPoolId", "accountId", "cognitoIdentityId", "caller", "accessKey",
                       "cognitoAuthenticationType", "cognitoAuthenticationProvider", "userArn", "user")
    context: dict[str, Any] = {
        "resourceId": secrets.token_hex(3),
        "resourcePath": path,
        "httpMethod": method,
        "extendedRequestId": base64.b64encode(secrets.token_bytes(12)).decode(),
        "requestTime": _request_time(now),
        "path": f"/{stage}{path}",
        "accountId": ACCOUNT,
        "protocol": "HTTP/1.1",
        "stage": stage,
        "domainPrefix": domain_name.split(".", 1)[0],
        "requestTimeEpoch": int(now * 1000),
        "requestId": str(uuid.uuid4()),
        "identity": {**dict.fromkeys(identity_fields), "sourceIp": source_ip, "userAgent": headers.get("User-Agent")},
        "domainName": domain_name,
        "apiId": REST_API_ID,
    }
    if authorizer is not None:
        context["authorizer"] = authorizer
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": False,
    }
