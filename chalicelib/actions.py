"""The dispatch table: every client action and the function that serves it.

An action receives an ActionContext and returns the frame that answers it, or
None when it answers by itself (a chat streams its frames from a worker).

Every action but `ping` counts against the user's request limit. The dispatch
(chalicelib/websocket.py) admits it before the action runs, unless the action
is marked `@admission(Admission.SELF)`: a chat admits itself, because its
request and its token reservation are one write (TokenBudget.reserve).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable

from chalicelib import context_actions as context
from chalicelib import protocol
from chalicelib.chat import actions as chat
from chalicelib.connections import Connection, Sender
from chalicelib.errors import Forbidden
from chalicelib.protocol import ClientFrame
from chalicelib.services import Services
from chalicelib.sessions import actions as sessions


@dataclass(frozen=True)
class ActionContext:
    connection: Connection  # the caller, found by connection id, never by anything in the frame
    frame: ClientFrame
    sender: Sender
    services: Services
    now: float


Action = Callable[[ActionContext], "dict[str, Any] | None"]


class Admission(enum.Enum):
    NONE = "none"  # not counted
    REQUEST = "request"  # counted by the dispatch before the action runs (the default)
    SELF = "self"  # the action admits itself, e.g. with TokenBudget.reserve


def admission(kind: Admission) -> Callable[[Action], Action]:
    def mark(action: Action) -> Action:
        action.admission = kind  # type: ignore[attr-defined]
        return action
    return mark


def admission_of(action: Action) -> Admission:
    return getattr(action, "admission", Admission.REQUEST)


@admission(Admission.NONE)
def ping(ctx: ActionContext) -> dict[str, Any]:
    return protocol.pong(ctx.frame.id)


def usage_get(ctx: ActionContext) -> dict[str, Any]:
    connection = ctx.connection
    report = ctx.services.usage.report(connection.user_sub, ctx.now, groups=connection.groups)
    return protocol.result(ctx.frame.id, report)


def github(ctx: ActionContext) -> None:
    """Check access and parameters here, then hand the GitHub calls to the github_worker."""
    from chalicelib.github import params as github_params

    settings = ctx.services.settings
    if not settings.github_allowed(ctx.connection.groups):
        raise Forbidden("GitHub access is not granted to this user")
    checked = github_params.validate(ctx.frame.action, ctx.frame.params)
    connection = ctx.connection
    ctx.services.workers.start(settings.github_worker_function, {
        "connectionId": connection.connection_id,
        "endpoint": connection.endpoint,
        "requestId": ctx.frame.id,
        "action": ctx.frame.action,
        "params": checked,
        "user": {"sub": connection.user_sub, "username": connection.username, "groups": list(connection.groups)},
    })
    return None


ACTIONS: dict[str, Action] = {
    "ping": ping,
    "usage.get": usage_get,
    "github.repos": github,
    "github.tree": github,
    "github.file": github,
    "github.pr": github,
    "session.create": sessions.session_create,
    "session.list": sessions.session_list,
    "session.get": sessions.session_get,
    "session.update": sessions.session_update,
    "session.delete": sessions.session_delete,
    "context.put": context.context_put,
    "context.uploadUrl": context.context_upload_url,
    "context.list": context.context_list,
    "context.get": context.context_get,
    "context.delete": context.context_delete,
    # Admitted by TokenBudget.reserve in the action: its request and its tokens are one write.
    "chat.send": admission(Admission.SELF)(chat.send),
    "chat.cancel": chat.cancel,
}
