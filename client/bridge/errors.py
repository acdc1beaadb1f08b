"""Errors as each HTTP API states them (IDE-BRIDGE.md, "Errors").

One exception, ApiError, carries an HTTP status, the protocol's code (or the bridge's own) and
the message; `openai_body` and `anthropic_body` give the two APIs' shapes of it.
"""
from __future__ import annotations

from typing import Any

# protocol code -> HTTP status
STATUS = {
    "BAD_REQUEST": 400, "MODEL_NOT_ALLOWED": 400, "PAYLOAD_TOO_LARGE": 413,
    "UNAUTHORIZED": 401, "FORBIDDEN": 403, "NOT_FOUND": 404,
    "RATE_LIMITED": 429, "BUDGET_EXCEEDED": 429, "QUOTA_EXCEEDED": 429, "UPSTREAM_THROTTLED": 429,
    "UPSTREAM_ERROR": 502, "TIMEOUT": 504, "INTERNAL": 500,
}

# The longest wait an SDK's retry should sit through in silence: the `openai` SDK's own limit (MAX_RETRY_AFTER_DELAY,
# 60 s), beyond which it does not retry; the `anthropic` SDK has none.
SDK_MAX_RETRY_AFTER_SECONDS = 60

# HTTP status -> error.type, the same in both APIs but for a request too large (Anthropic's own).
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "invalid_request_error", 429: "rate_limit_error"}
_ANTHROPIC_TYPES = {**_TYPES, 413: "request_too_large"}


class ApiError(Exception):
    """An answer other than success: `status`, `code` (protocol code or the bridge's), `message`."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after, self.param = retry_after, param

    @classmethod
    def from_protocol(cls, error: dict[str, Any]) -> ApiError:
        """An `error` frame's `error` object; an unknown code is the backend's failure (502)."""
        code = str(error.get("code") or "INTERNAL")
        retry_after = error.get("retryAfter")
        return cls(STATUS.get(code, 502), code, str(error.get("message") or code),
                   retry_after=int(retry_after) if isinstance(retry_after, (int, float)) else None)

    def headers(self) -> dict[str, str]:
        """Retry-After from the protocol's retryAfter; with a wait over SDK_MAX_RETRY_AFTER_SECONDS, also
        `x-should-retry: false`, which both SDKs obey: the caller has the 429 and its wait at once. (The `anthropic`
        SDK slept through any Retry-After, an hour's spent budget too, in silence, then retried.)"""
        if self.retry_after is None:
            return {}
        headers = {"Retry-After": str(max(0, self.retry_after))}
        if self.retry_after > SDK_MAX_RETRY_AFTER_SECONDS:
            headers["x-should-retry"] = "false"
        return headers


def invalid(param: str, message: str) -> ApiError:
    """A 400 naming the request's field, as both APIs do."""
    return ApiError(400, "BAD_REQUEST", f"{param}: {message}", param=param)


def _type(types: dict[int, str], status: int) -> str:
    """The error.type of a status: another 4xx (405, ...) is the caller's mistake too, a 5xx the server's."""
    return types.get(status, "invalid_request_error" if 400 <= status < 500 else "api_error")


def openai_body(error: ApiError) -> dict[str, Any]:
    return {"error": {"message": error.message, "type": _type(_TYPES, error.status),
                      "param": error.param, "code": error.code.lower()}}


def anthropic_body(error: ApiError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _type(_ANTHROPIC_TYPES, error.status), "message": error.message}}
