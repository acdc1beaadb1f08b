"""The Chalice app: wiring only. Events in, calls into chalicelib, responses out."""
from __future__ import annotations

from chalice import Chalice, Response
from chalice.app import WebsocketEvent

from chalicelib.chat.worker import run_chat
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


@app.lambda_function(name="bedrock_worker")
def bedrock_worker(event: dict, context) -> dict:
    configure_logging(get_settings().log_level)
    return {"status": run_chat(event, services=get_services(), remaining_ms=context.get_remaining_time_in_millis)}


@app.route("/health")
def health() -> dict:
    return {"status": "ok", "stage": get_settings().stage}
