"""The dispatch table: every client action and the function that serves it.

An action receives an ActionContext and returns the frame that answers it, or
None when it answers by itself (a chat streams its frames from a worker).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from chalicelib import protocol
from chalicelib.chat import actions as chat
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


def ping(ctx: ActionContext) -> dict[str, Any]:
    return protocol.pong(ctx.frame.id)


ACTIONS: dict[str, Action] = {
    "ping": ping,
    "chat.send": chat.send,
    "chat.cancel": chat.cancel,
}
