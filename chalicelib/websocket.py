"""What happens on $connect, $default and $disconnect, independent of Chalice.

app.py turns API Gateway's events into calls here; tests call these directly.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Mapping

from chalicelib import protocol
from chalicelib.actions import ACTIONS, Action, ActionContext, Admission, admission_of
from chalicelib.auth import authenticate, token_from_request
from chalicelib.errors import AppError, BadRequest, ConnectionGone, Internal, Unauthorized
from chalicelib.services import Services

logger = logging.getLogger(__name__)


class WebsocketHandlers:
    def __init__(self, services: Services, *, actions: Mapping[str, Action] = ACTIONS,
                 clock: Callable[[], float] = time.time) -> None:
        self._services = services
        self._actions = actions
        self._clock = clock

    def connect(self, *, connection_id: str, headers: Mapping[str, str] | None,
                query: Mapping[str, str] | None, endpoint: str) -> bool:
        """Store the connection if its token verifies; False means refuse it (401)."""
        identity = authenticate(token_from_request(headers, query))
        if identity is None:
            return False
        self._services.connections.add(
            connection_id=connection_id, user_sub=identity.sub, username=identity.username,
            groups=identity.groups, token_expires_at=identity.expires_at, endpoint=endpoint,
            now=self._clock(),
        )
        logger.info("connected", extra={"connectionId": connection_id, "sub": identity.sub})
        return True

    def message(self, *, connection_id: str, body: str | None, is_base64: bool, endpoint: str) -> None:
        """Parse, authorise and route one frame; every outcome is a frame to the client."""
        sender = self._services.sender(endpoint)
        request_id: str | None = None
        try:
            try:
                frame = protocol.parse_frame(body, is_base64=is_base64)
            except protocol.FrameRejected as rejected:
                request_id = rejected.request_id
                raise rejected.error from None
            request_id = frame.id
            connection = self._services.connections.get(connection_id)
            now = self._clock()
            if connection is None or connection.token_expired(now):
                self._refuse_expired(sender, connection_id, request_id)
                return
            action = self._actions.get(frame.action)
            if action is None:
                raise BadRequest(f"unknown action {frame.action[:64]!r}")
            if admission_of(action) is Admission.REQUEST:
                self._services.rate_limiter.admit(connection.user_sub, now, groups=connection.groups)
            reply = action(ActionContext(connection=connection, frame=frame, sender=sender,
                                         services=self._services, now=now))
            if reply is not None:
                sender.send(connection_id, reply)
        except ConnectionGone:
            logger.info("client gone before the answer", extra={"connectionId": connection_id})
        except AppError as error:
            self._send_quietly(sender, connection_id, protocol.error_frame(error, request_id))
        except Exception:
            logger.exception("unhandled error in message handler", extra={"connectionId": connection_id})
            self._send_quietly(sender, connection_id, protocol.error_frame(Internal(), request_id))

    def disconnect(self, *, connection_id: str) -> None:
        self._services.connections.remove(connection_id)
        logger.info("disconnected", extra={"connectionId": connection_id})

    def _refuse_expired(self, sender, connection_id: str, request_id: str | None) -> None:
        error = Unauthorized("the token has expired; reconnect with a new token")
        self._send_quietly(sender, connection_id, protocol.error_frame(error, request_id))
        sender.close(connection_id)

    @staticmethod
    def _send_quietly(sender, connection_id: str, frame: dict) -> None:
        try:
            sender.send(connection_id, frame)
        except ConnectionGone:
            logger.info("client gone before the error frame", extra={"connectionId": connection_id})
