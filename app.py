"""The Chalice app: wiring only. Events in, calls into chalicelib, responses out."""
from __future__ import annotations

import time

from chalice import Chalice, Response, UnauthorizedError
from chalice.app import WebsocketEvent

from chalicelib.auth import authenticate, token_from_request
from chalicelib.config import get_settings
from chalicelib.observability import configure_logging
from chalicelib.services import get_services
from chalicelib.websocket import WebsocketHandlers

app = Chalice(app_name="llm-ide")
app.experimental_feature_flags.update(["WEBSOCKETS"])


def _handlers() -> WebsocketHandlers:
    configure_logging(get_settings().log_level)
    return WebsocketHandlers(get_services())


def _endpoint(event: WebsocketEvent) -> str:
    return get_settings().management_endpoint(event.domain_name, event.stage)


@app.on_ws_connect()
def websocket_connect(event: WebsocketEvent) -> Response | None:
    raw = event.to_dict()
    accepted = _handlers().connect(
        connection_id=event.connection_id,
        headers=raw.get("headers"),
        query=raw.get("queryStringParameters"),
        endpoint=_endpoint(event),
    )
    return None if accepted else Response(body="Unauthorized", status_code=401)


@app.on_ws_message()
def websocket_message(event: WebsocketEvent) -> None:
    raw = event.to_dict()
    _handlers().message(
        connection_id=event.connection_id,
        body=raw.get("body"),
        is_base64=bool(raw.get("isBase64Encoded")),
        endpoint=_endpoint(event),
    )


@app.on_ws_disconnect()
def websocket_disconnect(event: WebsocketEvent) -> None:
    _handlers().disconnect(connection_id=event.connection_id)


@app.lambda_function(name="github_worker")
def github_worker(event: dict, context: object) -> None:
    from chalicelib.github.worker import handle  # PyJWT and the HTTP client: only this function loads them

    configure_logging(get_settings().log_level)
    handle(event, get_services())


@app.route("/health")
def health() -> dict:
    return {"status": "ok", "stage": get_settings().stage}


@app.route("/usage")
def usage() -> dict:
    # Swap for the REST authorizer's context once it exists: the identity is all this route needs.
    configure_logging(get_settings().log_level)
    identity = authenticate(token_from_request(app.current_request.headers, None))
    if identity is None:
        raise UnauthorizedError("a valid token is required in Authorization")
    return get_services().usage.report(identity.sub, time.time(), groups=identity.groups)
