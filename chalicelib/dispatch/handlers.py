"""What happens on $connect, $default and $disconnect, independent of Chalice.

app.py turns API Gateway's events into calls here (the composition root builds
the handlers). Each event ends in one "handled" log line (outcome, latencyMs)
with the connection, user, action and request id bound, and its metrics.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib import protocol
from chalicelib.auth import count_refusal, token_from_request, verify
from chalicelib.auth.errors import JwtInvalid
from chalicelib.aws.management_api import Sender
from chalicelib.dispatch.connections import ConnectionQuotaExceeded, ConnectionStore, FrameCount
from chalicelib.dispatch.contract import ActionContext, ActionEntry, Admission
from chalicelib.errors import (
    AppError,
    BadRequest,
    ConnectionGone,
    Forbidden,
    Internal,
    QuotaExceeded,
    RateLimited,
    Unauthorized,
)
from chalicelib.observability import bind, tracing
from chalicelib.observability import metric_names as metric
from chalicelib.observability.metrics import MetricsWriter, count_error, get_metrics

if TYPE_CHECKING:
    from chalicelib.auth.verifier import Identity
    from chalicelib.limits import RateLimiter

logger = logging.getLogger(__name__)

FLOOD_CLOSE_FACTOR = 2  # frames past this many times the limit in one window close the connection


@dataclass(frozen=True)
class Refusal:
    """How a handshake is refused: API Gateway answers the client with this status."""

    status: int
    message: str


UNAUTHORIZED = Refusal(401, "Unauthorized")
TOO_MANY_CONNECTIONS = Refusal(429, "Too many open connections for this user")
INVALID_ACTION = "invalid"  # the metrics' action for frames that name no known action (bounded cardinality)
GONE = "gone"  # the outcome when the client left before its answer


class WebsocketHandlers:
    def __init__(self, *, connections: ConnectionStore, rate_limiter: RateLimiter,
                 actions: Callable[[str], ActionEntry | None], sender_for: Callable[[str], Sender],
                 frame_limit: int, verify_token: Callable[[str | None], Identity] = verify,
                 check_revocation: Callable[[str], None] | None = None, clock: Callable[[], float] = time.time,
                 metrics: MetricsWriter | None = None) -> None:
        self._connections = connections
        self._frame_limit = frame_limit  # CONNECTION_FRAME_LIMIT frames per connection per window
        self._rate_limiter = rate_limiter
        self._actions = actions  # the action table's lookup: an action's entry by name, or None
        self._sender_for = sender_for  # the Management API sender for an endpoint
        self._verify_token = verify_token
        self._check_revocation = check_revocation  # Cognito's word on a verified token (TokenRevoked), or off
        self._clock = clock
        self._metrics = metrics or get_metrics()

    def connect(self, *, connection_id: str, headers: Mapping[str, str] | None,
                query: Mapping[str, str] | None, endpoint: str) -> Refusal | None:
        """Store the connection if its token verifies, Cognito still honours it and the user may open
        one more; else the refusal the handshake is answered with (401, or 429 past MAX_CONNECTIONS_PER_USER)."""
        started = time.perf_counter()
        with bind(connectionId=connection_id):
            token = token_from_request(headers, query)
            try:
                identity = self._verify_token(token)
                if self._check_revocation is not None and token is not None:
                    self._check_revocation(token)  # after the offline checks: a forged token costs no call
            except JwtInvalid as refused:
                # The reason, never the token: it is a bearer credential.
                logger.info("handled", extra={"outcome": "refused", "reason": refused.reason,
                                              "detail": str(refused), "latencyMs": _ms_since(started)})
                count_refusal(refused, metrics=self._metrics)
                return UNAUTHORIZED
            try:
                self._connections.add(
                    connection_id=connection_id, user_sub=identity.sub, username=identity.username,
                    groups=identity.groups, token_expires_at=identity.expires_at, endpoint=endpoint,
                    now=self._clock(),
                )
            except ConnectionQuotaExceeded as full:
                logger.info("handled", extra={"sub": identity.sub, "outcome": "refused", "reason": "connection_quota",
                                              "detail": str(full), "latencyMs": _ms_since(started)})
                count_error(self._metrics, QuotaExceeded.code)
                return TOO_MANY_CONNECTIONS
            self._metrics.emit(metric.CONNECTIONS, 1)
            logger.info("handled", extra={"sub": identity.sub, "outcome": "accepted",
                                          "latencyMs": _ms_since(started)})
            return None

    def message(self, *, connection_id: str, body: str | None, is_base64: bool, endpoint: str) -> None:
        """Parse, authorise and route one frame; every outcome is a frame to the client."""
        started = time.perf_counter()
        with contextlib.ExitStack() as scope:
            scope.enter_context(bind(connectionId=connection_id))
            action, outcome = self._route(scope, connection_id=connection_id, body=body, is_base64=is_base64,
                                          endpoint=endpoint)
            self._metrics.emit(metric.REQUESTS, 1, dimensions={metric.ACTION: action},
                               properties={"outcome": outcome})
            logger.info("handled", extra={"outcome": outcome, "latencyMs": _ms_since(started)})

    def disconnect(self, *, connection_id: str) -> None:
        started = time.perf_counter()
        with bind(connectionId=connection_id):
            self._connections.remove(connection_id)
            logger.info("handled", extra={"outcome": "ok", "latencyMs": _ms_since(started)})

    def _route(self, scope: contextlib.ExitStack, *, connection_id: str, body: str | None, is_base64: bool,
               endpoint: str) -> tuple[str, str]:
        """(the action's metric name, the outcome): "ok", an error code, or "gone"."""
        sender = self._sender_for(endpoint)
        request_id: str | None = None
        action = INVALID_ACTION
        try:
            frame: protocol.ClientFrame | None = None
            rejection: AppError | None = None
            try:
                frame = protocol.parse_frame(body, is_base64=is_base64)
                request_id = frame.id
            except protocol.FrameRejected as rejected:
                request_id, rejection = rejected.request_id, rejected.error
            entry = self._actions(frame.action) if frame is not None else None
            action = frame.action if frame is not None and entry is not None else INVALID_ACTION
            scope.enter_context(bind(id=request_id, action=action))
            # Every frame counts in its connection's window, by the one call that finds the connection.
            # The token is checked before the frame is judged: an expired connection gets UNAUTHORIZED
            # and is closed whatever it sends, a malformed frame included.
            now = self._clock()
            counted = self._connections.count_frame(connection_id, now)
            connection = counted.connection
            if connection is None or connection.token_expired(now):
                return action, self._refuse_expired(sender, connection_id, request_id)
            scope.enter_context(bind(sub=connection.user_sub))
            if counted.frames > self._frame_limit:
                return action, self._refuse_flood(sender, connection_id, counted, request_id, now, action)
            if frame is None or entry is None:
                # A refused frame still counts as a request, like any action but ping: a client
                # sending garbage or unknown actions is rate-limited like any other.
                with tracing.subsegment("admission", action=action):
                    self._rate_limiter.admit(connection.user_sub, now, groups=connection.groups)
                if frame is None:
                    raise rejection or Internal()
                raise BadRequest(f"unknown action {frame.action[:64]!r}")
            if entry.admission is Admission.REQUEST:
                with tracing.subsegment("admission", action=action):
                    self._rate_limiter.admit(connection.user_sub, now, groups=connection.groups)
            reply = entry.action(ActionContext(connection=connection, frame=frame, sender=sender, now=now))
            if reply is not None:
                sender.send(connection_id, reply)
            return action, "ok"
        except ConnectionGone:
            logger.info("client gone before the answer")
            return action, GONE
        except AppError as error:
            if isinstance(error, RateLimited):  # by the dispatch, or by an action that admits itself
                self._metrics.emit(metric.RATE_LIMITED, 1, dimensions={metric.ACTION: action})
            elif isinstance(error, Forbidden):  # a verified user asked for what they are not granted
                self._metrics.emit(metric.FORBIDDEN, 1, dimensions={metric.ACTION: action})
            return action, self._send_error(sender, connection_id, error, request_id)
        except Exception:
            logger.exception("unhandled error in message handler")
            return action, self._send_error(sender, connection_id, Internal(), request_id)

    def _refuse_flood(self, sender: Sender, connection_id: str, counted: FrameCount, request_id: str | None,
                      now: float, action: str) -> str:
        """RATE_LIMITED for a frame over the connection's window; a connection that keeps sending
        (FLOOD_CLOSE_FACTOR times the limit in one window) is closed as well."""
        self._metrics.emit(metric.RATE_LIMITED, 1, dimensions={metric.ACTION: action})
        retry_after = max(1, math.ceil(counted.window_ends - now))
        closing = counted.frames > FLOOD_CLOSE_FACTOR * self._frame_limit
        message = (f"this connection sent more than {self._frame_limit} frames in its window; "
                   + ("closing it" if closing else f"retry in {retry_after} s"))
        outcome = self._send_error(sender, connection_id, RateLimited(message, retry_after=retry_after), request_id)
        if closing:
            logger.warning("connection flooding: closed", extra={"frames": counted.frames})
            sender.close(connection_id)
        return outcome

    def _refuse_expired(self, sender: Sender, connection_id: str, request_id: str | None) -> str:
        error = Unauthorized("the token has expired; reconnect with a new token")
        outcome = self._send_error(sender, connection_id, error, request_id)
        sender.close(connection_id)
        return outcome

    def _send_error(self, sender: Sender, connection_id: str, error: AppError, request_id: str | None) -> str:
        """Send the error frame (a client already gone is not an error); its code is the outcome."""
        count_error(self._metrics, error.code)
        try:
            sender.send(connection_id, protocol.error_frame(error, request_id))
        except ConnectionGone:
            logger.info("client gone before the error frame")
        return error.code


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
