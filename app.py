"""The Chalice app: wiring only. Events in, calls into chalicelib, responses out.

Every handler runs inside `invocation(...)`: logging configured, tracing
started (only when on), and its log fields bound.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from chalice import Chalice, Response
from chalice.app import AuthRequest, AuthResponse, Request, WebsocketEvent

from chalicelib.auth import authorizer as auth
from chalicelib.config import get_settings
from chalicelib.observability.invocation import invocation

if TYPE_CHECKING:
    from chalicelib.dispatch.handlers import WebsocketHandlers
    from chalicelib.root import Root

app = Chalice(app_name="llm-ide")
app.experimental_feature_flags.update(["WEBSOCKETS"])
log = logging.getLogger("chalicelib.rest")  # under chalicelib: the app's handler and format


# The composition root (stores, limits, the action table) loads on first use: every Lambda
# function imports this module, and the authorizers (and the REST handler until a /usage) never need it.
def _root() -> Root:
    from chalicelib.root import get_root

    return get_root()


def _handlers() -> WebsocketHandlers:
    return _root().handlers


def _endpoint(event: WebsocketEvent) -> str:
    api_id = event.to_dict()["requestContext"].get("apiId")
    return get_settings().management_endpoint(api_id=api_id, domain_name=event.domain_name, stage=event.stage)


def _ws_invocation(route: str, event: WebsocketEvent) -> AbstractContextManager[None]:
    return invocation(route, event.context, apiRequestId=event.to_dict()["requestContext"].get("requestId"))


@app.on_ws_connect()
def websocket_connect(event: WebsocketEvent) -> Response | None:
    raw = event.to_dict()
    with _ws_invocation("$connect", event):
        refused = _handlers().connect(
            connection_id=event.connection_id,
            headers=raw.get("headers"),
            query=raw.get("queryStringParameters"),
            endpoint=_endpoint(event),
        )
    return None if refused is None else Response(body=refused.message, status_code=refused.status)


@app.on_ws_message()
def websocket_message(event: WebsocketEvent) -> None:
    raw = event.to_dict()
    with _ws_invocation("$default", event):
        _handlers().message(
            connection_id=event.connection_id,
            body=raw.get("body"),
            is_base64=bool(raw.get("isBase64Encoded")),
            endpoint=_endpoint(event),
        )


@app.on_ws_disconnect()
def websocket_disconnect(event: WebsocketEvent) -> None:
    with _ws_invocation("$disconnect", event):
        _handlers().disconnect(connection_id=event.connection_id)


@app.lambda_function(name="github_worker")
def github_worker(event: dict, context: object) -> None:
    from chalicelib.github.worker import handle  # PyJWT and the HTTP client: only this function loads them

    with invocation("github_worker", context):
        root = _root()
        handle(event, settings=root.settings, sender_for=root.sender, budget=root.github_calls,
               remaining_ms=getattr(context, "get_remaining_time_in_millis", None))


@app.lambda_function(name="ws_authorizer")
def ws_authorizer(event: dict, context: object) -> dict:
    """The REQUEST authorizer of `$connect`, attached by `python -m infra.post_deploy`."""
    with invocation("ws_authorizer", context):
        return auth.authorize_websocket(event)


# No result caching: a cached Allow would outlive the token's expiry.
@app.authorizer(ttl_seconds=0)
def rest_authorizer(auth_request: AuthRequest) -> AuthResponse:
    with invocation("rest_authorizer"):
        identity = auth.authorize_bearer(auth_request.token)
    return AuthResponse(routes=["*"], principal_id=identity.sub, context=auth.identity_context(identity))


@app.lambda_function(name="bedrock_worker")
def bedrock_worker(event: dict, context: Any) -> dict:
    from chalicelib.chat.job import ChatJob

    with invocation("bedrock_worker", context):
        job = ChatJob.from_event(event)
        outcome = _root().chat_worker.run(job, remaining_ms=context.get_remaining_time_in_millis)
        return {"status": outcome.status}


@app.middleware("http")
def rest_request(event: Request, get_response: Callable[[Request], Response]) -> Response:
    """One "handled" line per REST request: route, caller, status, latency."""
    caller = auth.caller_from_context(event.context.get("authorizer"))
    with invocation("rest", app.lambda_context, apiRequestId=event.context.get("requestId"),
                    sub=caller["sub"] if caller else None, route=f"{event.method} {event.path}"):
        started = time.perf_counter()
        response = get_response(event)
        status = response.status_code
        log.info("handled", extra={"outcome": "ok" if status < 400 else str(status), "status": status,
                                   "latencyMs": int((time.perf_counter() - started) * 1000)})
        return response


@app.route("/health")
def health() -> dict:
    return {"status": "ok", "stage": get_settings().stage}


@app.route("/me", authorizer=rest_authorizer)
def me() -> dict | Response:
    caller = _rest_caller()
    if caller is None:
        return _unauthorized()
    return caller


@app.route("/usage", authorizer=rest_authorizer)
def usage() -> dict | Response:
    caller = _rest_caller()
    if caller is None:
        return _unauthorized()
    root = _root()
    return root.usage.report(caller["sub"], root.clock(), groups=tuple(caller["groups"]))


def _unauthorized() -> Response:
    """API Gateway's own 401 (its authorizer's refusal), byte for byte: a route reached without the authorizer's
    caller (a stage without the authorizer attached) refuses as the authorizer would, not in Chalice's shape."""
    return Response(body=auth.UNAUTHORIZED_BODY, status_code=401,
                    headers={"Content-Type": "application/json", "x-amzn-ErrorType": auth.UNAUTHORIZED_ERROR_TYPE})


def _rest_caller() -> dict | None:
    """The verified caller the REST authorizer put in the request's context."""
    request = app.current_request
    return auth.caller_from_context(request.context.get("authorizer")) if request is not None else None
