"""The dispatch table: every client action and the function that serves it.

An action receives an ActionContext and returns the frame that answers it, or
None when it answers by itself (a chat streams its frames from a worker).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from chalicelib import context_actions as context
from chalicelib import protocol
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


def ping(ctx: ActionContext) -> dict[str, Any]:
    return protocol.pong(ctx.frame.id)


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
    "github.repos": github,
    "github.tree": github,
    "github.file": github,
    "github.pr": github,
    "session.create": sessions.session_create,
    "session.list": sessions.session_list,
    "session.get": sessions.session_get,
    "session.delete": sessions.session_delete,
    "context.put": context.context_put,
    "context.uploadUrl": context.context_upload_url,
    "context.list": context.context_list,
    "context.get": context.context_get,
    "context.delete": context.context_delete,
}
