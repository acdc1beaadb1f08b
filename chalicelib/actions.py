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

from chalicelib import protocol
from chalicelib.connections import Connection, Sender
from chalicelib.protocol import ClientFrame
from chalicelib.services import Services


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


ACTIONS: dict[str, Action] = {
    "ping": ping,
    "usage.get": usage_get,
}
