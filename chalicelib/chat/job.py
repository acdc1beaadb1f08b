"""The bedrock_worker's one job type: built by `chat.send` (ChatActions), parsed by the worker."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.chat.inputs import InputPlan
from chalicelib.chat.request import ChatRequest
from chalicelib.limits import Reservation


@dataclass(frozen=True)
class ChatJob:
    request_id: str  # the server's id of the chat (the `ack`'s requestId)
    client_id: str  # the client's `id` of the chat.send frame, echoed by every frame of the chat
    connection_id: str
    endpoint: str  # the Management API endpoint that reaches the connection
    user_sub: str
    chat: ChatRequest
    reservation: Reservation  # what the handler reserved; the model is called with its max_tokens
    plan: InputPlan  # the limits the history and context files are loaded with
    received_at: float  # epoch seconds the handler received chat.send (for latency metrics)

    def to_event(self) -> dict[str, Any]:
        return {"requestId": self.request_id, "clientId": self.client_id, "connectionId": self.connection_id,
                "endpoint": self.endpoint, "userSub": self.user_sub, "chat": self.chat.to_payload(),
                "reservation": self.reservation.to_dict(), "input": self.plan.to_payload(),
                "receivedAt": self.received_at}

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> ChatJob:
        """The job as `to_event` wrote it (KeyError or ValueError for anything else: a bug, or a forged event)."""
        return cls(request_id=event["requestId"], client_id=event["clientId"], connection_id=event["connectionId"],
                   endpoint=event["endpoint"], user_sub=event["userSub"], chat=ChatRequest.from_payload(event["chat"]),
                   reservation=Reservation.from_dict(event["reservation"]),
                   plan=InputPlan.from_payload(event["input"]), received_at=float(event["receivedAt"]))
