"""The contract between the dispatch and every action: what an action gets and what it returns.

An action is a callable that takes an ActionContext and returns the frame that
answers it, or None when it answers by itself (a chat streams its frames from a
worker). Features implement their actions as methods of small classes built with
the collaborators they use; the table (chalicelib/dispatch/table.py) names them.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.aws.management_api import Sender
from chalicelib.dispatch.connections import Connection
from chalicelib.protocol import ClientFrame


@dataclass(frozen=True)
class ActionContext:
    connection: Connection  # the caller, found by connection id, never by anything in the frame
    frame: ClientFrame
    sender: Sender  # to the caller's connection
    now: float  # epoch seconds the frame was dispatched: the limit windows it counts in


Action = Callable[[ActionContext], "dict[str, Any] | None"]


class Admission(enum.Enum):
    """How an action counts against the user's request limit."""

    NONE = "none"  # not counted (ping)
    REQUEST = "request"  # counted by the dispatch before the action runs
    SELF = "self"  # the action admits itself (a chat: its request and its token reservation are one write)


@dataclass(frozen=True)
class ActionEntry:
    admission: Admission
    action: Action
