"""The chat actions: `chat.send` admits a chat and hands it to the worker; `chat.cancel` flags it."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from chalicelib import protocol
from chalicelib.chat.limits_placeholder import current_limits
from chalicelib.chat.request import ChatRequest
from chalicelib.errors import BadRequest, ConnectionGone, NotFound
from chalicelib.request_store import new_request_id

if TYPE_CHECKING:
    from chalicelib.actions import ActionContext

logger = logging.getLogger(__name__)


def send(ctx: ActionContext) -> dict[str, Any] | None:
    """Validate, record, ack, then start the worker: the ack is posted before any delta can be."""
    settings = ctx.services.settings
    chat = ChatRequest.from_params(ctx.frame.params, settings)
    connection = ctx.connection
    request_id = new_request_id()
    requests = ctx.services.requests
    requests.create(request_id=request_id, kind="chat", user_sub=connection.user_sub,
                    connection_id=connection.connection_id, client_id=ctx.frame.id, model=chat.model, now=ctx.now)
    ack = {"type": "ack", "id": ctx.frame.id, "requestId": request_id, "sessionId": None, "model": chat.model,
           "limits": current_limits(user_sub=connection.user_sub, now=ctx.now)}
    work = {"requestId": request_id, "clientId": ctx.frame.id, "connectionId": connection.connection_id,
            "endpoint": connection.endpoint, "userSub": connection.user_sub, "chat": chat.to_payload()}
    try:
        ctx.sender.send(connection.connection_id, ack)
        ctx.services.workers.start(settings.bedrock_worker_function, work)
    except Exception as exc:
        # The chat never started: its record says so (the handler tells the client, if it can).
        gone = isinstance(exc, ConnectionGone)
        requests.finish(request_id, status="gone" if gone else "error", error_code="GONE" if gone else "INTERNAL")
        raise
    logger.info("chat admitted", extra={"requestId": request_id, "sub": connection.user_sub, "model": chat.model})
    return None


def cancel(ctx: ActionContext) -> dict[str, Any]:
    """Flag a running chat of the caller's; the worker ends it with `done`, stopReason `cancelled`."""
    name = ctx.frame.params.string("requestId", required=True)
    if not protocol.is_request_id(name):
        raise BadRequest("'requestId' must be 1-64 characters of [A-Za-z0-9_.:-]")
    requests = ctx.services.requests
    request_id = requests.resolve(name=name, connection_id=ctx.connection.connection_id)
    # Another user's request and no request at all look the same: NOT_FOUND, nothing revealed.
    if not requests.request_cancel(request_id=request_id, user_sub=ctx.connection.user_sub, now=ctx.now):
        raise NotFound("no running request with that id")
    logger.info("chat cancel requested", extra={"requestId": request_id, "sub": ctx.connection.user_sub})
    return protocol.result(ctx.frame.id, {"cancelled": True})
