"""The chat actions: `chat.send` admits a chat and hands it to the worker; `chat.cancel` flags it."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from chalicelib import protocol
from chalicelib.observability import metric_names
from chalicelib.chat.inputs import plan_input
from chalicelib.chat.request import ChatRequest
from chalicelib.errors import AppError, BadRequest, BudgetExceeded, ConnectionGone, NotFound
from chalicelib.observability.metrics import get_metrics
from chalicelib.observability.tracing import subsegment
from chalicelib.chat.requests import new_request_id

if TYPE_CHECKING:
    from chalicelib.dispatch.table import ActionContext
    from chalicelib.limits import Reservation

logger = logging.getLogger(__name__)


def send(ctx: ActionContext) -> dict[str, Any] | None:
    """Check, admit (one write: the request and the token reservation), record, ack, then start the worker.

    Everything that can refuse the chat (parameters, the session, the context files,
    the limits) answers before the ack; the ack is posted before any delta can be.
    Admitted itself (Admission.SELF in chalicelib/actions.py): the dispatch does not count it.
    """
    received_at = time.time()
    services = ctx.services
    settings = services.settings
    connection = ctx.connection
    services.rate_limiter.check_memory(connection.user_sub, ctx.now)  # a limited user costs no reads
    try:
        chat = ChatRequest.from_params(ctx.frame.params, settings)
        plan = plan_input(chat, user_sub=connection.user_sub, sessions=services.sessions, context=services.context,
                          history_limit=settings.history_token_limit, context_limit=settings.context_token_limit)
    except AppError:
        # Refused before its admission: it still counts as a request, like every action but ping.
        services.rate_limiter.admit(connection.user_sub, ctx.now, groups=connection.groups)
        raise
    request_id = new_request_id()
    with subsegment("admission", action="chat.send"):
        try:
            reservation = services.token_budget.reserve(
                connection.user_sub, ctx.now, groups=connection.groups, request_id=request_id,
                estimated_input=plan.estimated_input, max_tokens=chat.max_tokens)
        except BudgetExceeded:
            get_metrics().emit(metric_names.BUDGET_EXCEEDED, 1, dimensions={metric_names.MODEL: chat.model})
            # Refused for its tokens, it still counts as a request: a client over its budget that
            # keeps sending is rate-limited like any other (RATE_LIMITED once the minute is full).
            services.rate_limiter.admit(connection.user_sub, ctx.now, groups=connection.groups)
            raise
    requests = services.requests
    try:
        requests.create(request_id=request_id, kind="chat", user_sub=connection.user_sub,
                        connection_id=connection.connection_id, client_id=ctx.frame.id, model=chat.model,
                        now=ctx.now)
    except Exception:
        _release(ctx, reservation, chat.model)
        raise
    ack = {"type": "ack", "id": ctx.frame.id, "requestId": request_id, "sessionId": chat.session_id,
           "model": chat.model, "limits": reservation.limits.to_wire()}
    work = {"requestId": request_id, "clientId": ctx.frame.id, "connectionId": connection.connection_id,
            "endpoint": connection.endpoint, "userSub": connection.user_sub, "chat": chat.to_payload(),
            "reservation": reservation.to_dict(), "input": plan.to_payload(), "receivedAt": received_at}
    try:
        ctx.sender.send(connection.connection_id, ack)
        services.workers.start(settings.bedrock_worker_function, work)
    except Exception as exc:
        # The chat never started: its record says so, and nothing stays reserved.
        gone = isinstance(exc, ConnectionGone)
        requests.finish(request_id, status="gone" if gone else "error", error_code="GONE" if gone else "INTERNAL")
        _release(ctx, reservation, chat.model)
        raise
    logger.info("chat admitted", extra={"requestId": request_id, "sub": connection.user_sub, "model": chat.model,
                                        "estimatedInput": plan.estimated_input, "maxTokens": reservation.max_tokens})
    return None


def _release(ctx: ActionContext, reservation: Reservation, model: str) -> None:
    """Settle a chat that never reached the model to zero, so its reservation is not held until the hour ends."""
    try:
        ctx.services.token_budget.settle(reservation, 0, 0, model)
    except Exception:
        logger.exception("releasing a reservation failed", extra={"requestId": reservation.request_id})


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
