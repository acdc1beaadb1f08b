"""One exception hierarchy for everything a client can be told.

Each class carries its protocol error code; `protocol.error_frame` turns any of
them into the wire format in one place. Anything that is not an AppError is a
bug and reaches the client only as INTERNAL, with no detail.
"""
from __future__ import annotations


class AppError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class BadRequest(AppError):
    code = "BAD_REQUEST"


class PayloadTooLarge(AppError):
    code = "PAYLOAD_TOO_LARGE"


class Unauthorized(AppError):
    code = "UNAUTHORIZED"


class Forbidden(AppError):
    code = "FORBIDDEN"


class NotFound(AppError):
    code = "NOT_FOUND"


class QuotaExceeded(AppError):
    code = "QUOTA_EXCEEDED"


class ModelNotAllowed(AppError):
    code = "MODEL_NOT_ALLOWED"


class RateLimited(AppError):
    code = "RATE_LIMITED"


class BudgetExceeded(AppError):
    code = "BUDGET_EXCEEDED"


class UpstreamThrottled(AppError):
    code = "UPSTREAM_THROTTLED"


class UpstreamError(AppError):
    code = "UPSTREAM_ERROR"


class Timeout(AppError):
    code = "TIMEOUT"


class Internal(AppError):
    code = "INTERNAL"

    def __init__(self, message: str = "internal error") -> None:
        super().__init__(message)


class ConnectionGone(Exception):
    """The client's WebSocket is closed: nothing more can be sent to it."""
