"""The wire protocol: parsing client frames, building server frames, and their size rules.

docs/PROTOCOL.md is the contract. Every server frame is built by a function here
(`pong`, `ack`, `delta`, `done`, `result`, `error_frame`), and every limit on a
frame's size is a constant here.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal, overload

from chalicelib.errors import AppError, BadRequest, PayloadTooLarge

# API Gateway's limits on a WebSocket message: 32 KiB per frame from a client (the protocol's
# PAYLOAD_TOO_LARGE), 128 KiB per message posted to a connection through the Management API.
MAX_FRAME_BYTES = 32 * 1024
MAX_SERVER_FRAME_BYTES = 128 * 1024
# What a `result` frame's data may take, leaving room for the envelope under MAX_SERVER_FRAME_BYTES.
RESULT_BUDGET_BYTES = 120 * 1024
# A text returned inline in a `result` (a context file, a GitHub file or tree), JSON escaping included.
INLINE_TEXT_BYTES = 96 * 1024
# The text of one `delta` frame: a reply's text is cut into frames of at most this many bytes.
MAX_DELTA_TEXT_BYTES = 32 * 1024
MAX_PATH_BYTES = 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


class FrameRejected(Exception):
    """A client frame that cannot be served, with the id to echo if one was readable."""

    def __init__(self, error: AppError, request_id: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id


@dataclass(frozen=True)
class ClientFrame:
    action: str
    id: str
    params: Params


def parse_frame(body: str | bytes | None, *, is_base64: bool = False) -> ClientFrame:
    """Validate a raw frame per the protocol, or raise FrameRejected."""
    if is_base64:
        raise FrameRejected(BadRequest("frames must be UTF-8 JSON text, not binary"), None)
    raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        data = None
    request_id = _readable_id(data)
    if len(raw) > MAX_FRAME_BYTES:
        raise FrameRejected(
            PayloadTooLarge(f"frame is {len(raw)} bytes; the limit is {MAX_FRAME_BYTES}"), request_id
        )
    if not isinstance(data, dict):
        raise FrameRejected(BadRequest("a frame must be a JSON object"), None)
    if request_id is None:
        raise FrameRejected(BadRequest("'id' must be 1-64 characters of [A-Za-z0-9_.:-]"), None)
    action = data.get("action")
    if not isinstance(action, str) or not action:
        raise FrameRejected(BadRequest("'action' must be a non-empty string"), request_id)
    params = {k: v for k, v in data.items() if k not in ("action", "id")}
    return ClientFrame(action=action, id=request_id, params=Params(params))


def _readable_id(data: Any) -> str | None:
    if isinstance(data, dict):
        value = data.get("id")
        if is_request_id(value):
            return value
    return None


def is_request_id(value: Any) -> bool:
    """1-64 characters of [A-Za-z0-9_.:-]: a client's `id`, or a reference to one."""
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None  # no trailing newline


class Params:
    """Typed access to a frame's parameters; every mistake is a BAD_REQUEST naming the field."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __contains__(self, name: str) -> bool:
        return name in self._values

    @overload
    def string(self, name: str, *, required: Literal[True], max_length: int | None = None,
               allow_empty: bool = False) -> str: ...

    @overload
    def string(self, name: str, *, required: bool = False, max_length: int | None = None,
               allow_empty: bool = False) -> str | None: ...

    def string(self, name: str, *, required: bool = False, max_length: int | None = None,
               allow_empty: bool = False) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise BadRequest(f"'{name}' must be a string")
        if not value and not allow_empty:
            raise BadRequest(f"'{name}' must not be empty")
        if max_length is not None and len(value) > max_length:
            raise BadRequest(f"'{name}' is longer than {max_length} characters")
        return value

    @overload
    def integer(self, name: str, *, minimum: int, maximum: int, required: Literal[True]) -> int: ...

    @overload
    def integer(self, name: str, *, minimum: int, maximum: int, required: bool = False) -> int | None: ...

    def integer(self, name: str, *, minimum: int, maximum: int, required: bool = False) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"'{name}' must be an integer")
        if not minimum <= value <= maximum:
            raise BadRequest(f"'{name}' must be between {minimum} and {maximum}")
        return value

    def number(self, name: str, *, minimum: float, maximum: float, required: bool = False) -> float | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"'{name}' must be a number")
        if not minimum <= value <= maximum:
            raise BadRequest(f"'{name}' must be between {minimum} and {maximum}")
        return float(value)

    @overload
    def path(self, name: str, *, required: Literal[True]) -> str: ...

    @overload
    def path(self, name: str, *, required: bool = False) -> str | None: ...

    def path(self, name: str, *, required: bool = False) -> str | None:
        value = self.string(name, required=required)
        return None if value is None else validate_path(value, field=name)

    @overload
    def list_of(self, name: str, *, max_items: int, required: Literal[True]) -> list[Any]: ...

    @overload
    def list_of(self, name: str, *, max_items: int, required: bool = False) -> list[Any] | None: ...

    def list_of(self, name: str, *, max_items: int, required: bool = False) -> list[Any] | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, list):
            raise BadRequest(f"'{name}' must be a list")
        if len(value) > max_items:
            raise BadRequest(f"'{name}' has more than {max_items} items")
        return value

    def _get(self, name: str, required: bool) -> Any:
        value = self._values.get(name)
        if value is None and required:
            raise BadRequest(f"'{name}' is required")
        return value


def validate_path(path: str, *, field: str = "path") -> str:
    """A relative, '/'-separated path with no way out of its root, or BAD_REQUEST.

    The path is NFC-normalised first, so a look-alike spelling of a name and the
    name itself address the same object and are checked the same way.
    """
    normalized = unicodedata.normalize("NFC", path)
    if len(normalized.encode("utf-8")) > MAX_PATH_BYTES:
        raise BadRequest(f"'{field}' is longer than {MAX_PATH_BYTES} bytes")
    if any(ord(ch) < 0x20 or ch == "\x7f" for ch in normalized):
        raise BadRequest(f"'{field}' must not contain NUL or control characters")
    if "\\" in normalized:
        raise BadRequest(f"'{field}' must use '/' as its separator")
    if normalized.startswith("/"):
        raise BadRequest(f"'{field}' must be relative")
    parts = normalized.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BadRequest(f"'{field}' must not contain empty, '.' or '..' segments")
    # Look-alikes (fullwidth solidus, one-dot leaders...) become separators or dot segments
    # under compatibility normalisation, which some tool downstream may well apply.
    compatible = unicodedata.normalize("NFKC", normalized)
    if compatible.count("/") != normalized.count("/") or "\\" in compatible or \
            any(part in ("", ".", "..") for part in compatible.split("/")):
        raise BadRequest(f"'{field}' must not contain characters that look like '/', '\\' or '..'")
    return normalized


# --- server frames --------------------------------------------------------


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def encoded_size(value: Any) -> int:
    """The bytes `value` takes in a frame (compact JSON, UTF-8)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def pong(request_id: str) -> dict[str, Any]:
    return {"type": "pong", "id": request_id}


def ack(request_id: str, *, chat_id: str, session_id: str | None, model: str, max_tokens: int,
        limits: dict[str, Any]) -> dict[str, Any]:
    """A chat was admitted: `chat_id` is the server's `requestId` (chat.cancel, chat.resume); `max_tokens` what
    was granted, after the model's cap and the budget."""
    return {"type": "ack", "id": request_id, "requestId": chat_id, "sessionId": session_id, "model": model,
            "maxTokens": max_tokens, "limits": limits}


def delta(request_id: str, *, seq: int, text: str) -> dict[str, Any]:
    return {"type": "delta", "id": request_id, "seq": seq, "text": text}


def done(request_id: str, *, stop_reason: str | None, usage: dict[str, Any],
         limits: dict[str, Any]) -> dict[str, Any]:
    return {"type": "done", "id": request_id, "stopReason": stop_reason, "usage": usage, "limits": limits}


def result(request_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "result", "id": request_id, "data": data}


def error_frame(error: AppError, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.retry_after is not None:
        body["retryAfter"] = error.retry_after
    frame: dict[str, Any] = {"type": "error", "error": body}
    if request_id is not None:
        frame["id"] = request_id
    return frame
