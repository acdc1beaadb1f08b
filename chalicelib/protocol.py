"""The wire protocol: parsing client frames, building server frames, and their size rules.

docs/PROTOCOL.md is the contract. Every server frame is built by a function here
(`pong`, `ack`, `delta`, `toolUse`, `done`, `result`, `resumed`, `error_frame`), and every limit on a
frame's size is a constant here.
"""
from __future__ import annotations

import json
import math
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
# How deep a frame's JSON may nest: deep enough for any tool's input schema, far from the parser's limit.
MAX_NESTING = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
# How a surrogate can get into a parsed string: as a JSON escape (UTF-8 cannot encode one).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


class FrameRejected(Exception):
    """A client frame that cannot be served, with the id to echo if one was readable."""

    def __init__(self, error: AppError, request_id: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id


class NestedTooDeeply(BadRequest):
    def __init__(self) -> None:
        super().__init__(f"the frame is nested too deeply (more than {MAX_NESTING} levels)")


@dataclass(frozen=True)
class ClientFrame:
    action: str
    id: str
    params: Params


def parse_frame(body: str | bytes | None, *, is_base64: bool = False) -> ClientFrame:
    """Validate a raw frame per the protocol, or raise FrameRejected."""
    if is_base64:
        raise FrameRejected(BadRequest("frames must be UTF-8 JSON text, not binary"), None)
    # A str body with a lone surrogate is not UTF-8: kept as such, it fails to decode below.
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else (body or b"")
    data, problem = parse_json(raw)
    request_id = _readable_id(data)
    if isinstance(problem, NestedTooDeeply):  # whatever its size: the issue the client must fix is its shape
        raise FrameRejected(problem, request_id)
    if len(raw) > MAX_FRAME_BYTES:
        raise FrameRejected(
            PayloadTooLarge(f"frame is {len(raw)} bytes; the limit is {MAX_FRAME_BYTES}"), request_id
        )
    if problem is not None:
        raise FrameRejected(problem, request_id)
    if not isinstance(data, dict):
        raise FrameRejected(BadRequest("a frame must be a JSON object"), None)
    if request_id is None:
        raise FrameRejected(BadRequest("'id' must be 1-64 characters of [A-Za-z0-9_.:-]"), None)
    action = data.get("action")
    if not isinstance(action, str) or not action:
        raise FrameRejected(BadRequest("'action' must be a non-empty string"), request_id)
    params = {k: v for k, v in data.items() if k not in ("action", "id")}
    return ClientFrame(action=action, id=request_id, params=Params(params))


class _Unreadable:
    """A number in a document that is no JSON number or that no Python number holds: what the parser put in
    its place, so that the document's other fields (its `id`) can still be read and the error can name it."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def parse_json(raw: bytes) -> tuple[Any, AppError | None]:
    """A JSON document that every part of the app can handle, or the BAD_REQUEST that says why not.

    Besides malformed JSON and bytes that are not UTF-8 (each said so), this refuses what the
    JSON parser accepts but the app could not survive: nesting deeper than MAX_NESTING (Python's
    parser fails with RecursionError past about a thousand levels), strings with a lone
    surrogate (`"\\ud800"`), which no store, log or frame can encode, and numbers that are no
    JSON (`NaN`, `Infinity`: RFC 8259 has none, Bedrock refuses them) or that Python cannot hold
    (`1e400` would be infinity; an integer of more than 4300 digits fails to parse). The error
    names the field. Returns (None, error) for a document that is refused; its id may still be read.
    """
    unreadable: list[_Unreadable] = []

    def refuse(problem: str) -> _Unreadable:
        unreadable.append(_Unreadable(problem))
        return unreadable[-1]

    def constant(name: str) -> _Unreadable:  # NaN, Infinity, -Infinity
        return refuse(f"{name}, which is no JSON number")

    def integer(text: str) -> int | _Unreadable:
        try:
            return int(text)
        except ValueError:  # past sys.get_int_max_str_digits()
            return refuse(f"a number of {len(text.lstrip('-'))} digits, too large to read")

    try:
        # utf-8-sig: UTF-8, with or without the byte order mark RFC 8259 lets a parser ignore (json.loads
        # would also take UTF-16 and UTF-32, which frames and request bodies are not).
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, BadRequest(f"the frame is not UTF-8 text (byte {exc.start})")
    try:
        try:
            data = json.loads(text, parse_constant=constant)
        except json.JSONDecodeError:
            raise
        except ValueError:  # an integer too long for int(): parsed again, each integer by `integer` (slower)
            data = json.loads(text, parse_constant=constant, parse_int=integer)
    except RecursionError:
        return None, NestedTooDeeply()
    except json.JSONDecodeError as exc:
        return None, BadRequest(f"the frame is not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})")
    # Without a surrogate escape in the raw bytes, no string can hold one: only the depth is checked
    # (scanning every string of a body of megabytes costs tens of milliseconds).
    problem = _check_document(data, strings=_SURROGATE_ESCAPE.search(raw) is not None, numbers=bool(unreadable))
    return (data if problem is None else _top_level_only(data)), problem


def _check_document(data: Any, *, strings: bool = True, numbers: bool = True) -> AppError | None:
    """The first fault of a parsed document, walked iteratively (no recursion, however deep);
    `strings=False` skips the search for lone surrogates in strings, `numbers=False` the one for
    unreadable numbers (none can be there)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if numbers and isinstance(value, _Unreadable):
            return BadRequest(f"{_field(path)} is {value.problem}")
        if isinstance(value, float) and not math.isfinite(value):  # 1e400: NaN and Infinity are _Unreadable
            return BadRequest(f"{_field(path)} is a number too large to read")
        if isinstance(value, str):
            if strings and _SURROGATE.search(value):
                return BadRequest(f"{_field(path)} is not valid Unicode (it holds a lone surrogate)")
        elif isinstance(value, (dict, list)):
            if depth >= MAX_NESTING:
                return NestedTooDeeply()
            if isinstance(value, dict):
                for key, item in value.items():
                    if strings and _SURROGATE.search(key):
                        return BadRequest(f"a key of {_field(path)} is not valid Unicode (it holds a lone surrogate)")
                    stack.append((item, f"{path}.{key}" if path else key, depth + 1))
            else:
                stack.extend((item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value))
    return None


def _field(path: str) -> str:
    return f"'{path}'" if path else "the frame"


def _top_level_only(data: Any) -> Any:
    """What of a refused document may still be read: its top-level scalars (the `id` to echo)."""
    if not isinstance(data, dict):
        return None
    return {key: value for key, value in data.items() if isinstance(value, (str, int, float, bool))
            and not (isinstance(value, str) and _SURROGATE.search(value))}


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
    """Typed access to a frame's parameters; every mistake is a BAD_REQUEST naming the field.

    `at` is where an object nested in a frame is (`files[2]`): its fields are named from there (`files[2].path`).
    """

    def __init__(self, values: dict[str, Any], *, at: str = "") -> None:
        self._values = values
        self._at = at

    def _field(self, name: str) -> str:
        return f"{self._at}.{name}" if self._at else name

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def raw(self, name: str) -> Any:
        """A parameter as sent (None if absent), for a caller that checks its shape itself."""
        return self._values.get(name)

    def values(self) -> dict[str, Any]:
        """Every parameter as sent (a copy)."""
        return dict(self._values)

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
            raise BadRequest(f"'{self._field(name)}' must be a string")
        if not value and not allow_empty:
            raise BadRequest(f"'{self._field(name)}' must not be empty")
        if max_length is not None and len(value) > max_length:
            raise BadRequest(f"'{self._field(name)}' is longer than {max_length} characters")
        return value

    @overload
    def text(self, name: str, *, required: Literal[True], max_bytes: int) -> str: ...

    @overload
    def text(self, name: str, *, required: bool = False, max_bytes: int) -> str | None: ...

    def text(self, name: str, *, required: bool = False, max_bytes: int) -> str | None:
        """A text the model reads (`check_text`): BAD_REQUEST if blank, PAYLOAD_TOO_LARGE past `max_bytes`."""
        value = self.string(name, required=required, allow_empty=True)
        return None if value is None else check_text(value, self._field(name), max_bytes=max_bytes)

    @overload
    def integer(self, name: str, *, minimum: int, maximum: int | None, required: Literal[True]) -> int: ...

    @overload
    def integer(self, name: str, *, minimum: int, maximum: int | None, required: bool = False) -> int | None: ...

    def integer(self, name: str, *, minimum: int, maximum: int | None, required: bool = False) -> int | None:
        """An integer from `minimum` to `maximum` (None: no upper bound; the parser reads at most 4300 digits)."""
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"'{self._field(name)}' must be an integer")
        if maximum is None and value < minimum:
            raise BadRequest(f"'{self._field(name)}' must be at least {minimum}")
        if maximum is not None and not minimum <= value <= maximum:
            raise BadRequest(f"'{self._field(name)}' must be between {minimum} and {maximum}")
        return value

    def number(self, name: str, *, minimum: float, maximum: float, required: bool = False) -> float | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"'{self._field(name)}' must be a number")
        if not minimum <= value <= maximum:
            raise BadRequest(f"'{self._field(name)}' must be between {minimum} and {maximum}")
        return float(value)

    @overload
    def path(self, name: str, *, required: Literal[True]) -> str: ...

    @overload
    def path(self, name: str, *, required: bool = False) -> str | None: ...

    def path(self, name: str, *, required: bool = False) -> str | None:
        value = self.string(name, required=required)
        return None if value is None else validate_path(value, field=self._field(name))

    @overload
    def list_of(self, name: str, *, max_items: int, required: Literal[True]) -> list[Any]: ...

    @overload
    def list_of(self, name: str, *, max_items: int, required: bool = False) -> list[Any] | None: ...

    def list_of(self, name: str, *, max_items: int, required: bool = False) -> list[Any] | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, list):
            raise BadRequest(f"'{self._field(name)}' must be a list")
        if len(value) > max_items:
            raise BadRequest(f"'{self._field(name)}' has more than {max_items} items")
        return value

    def _get(self, name: str, required: bool) -> Any:
        value = self._values.get(name)
        if value is None and required:
            raise BadRequest(f"'{self._field(name)}' is required")
        return value


def check_text(value: str, field: str, *, max_bytes: int | None = None) -> str:
    """A text for the model, or the error naming `field`: Bedrock refuses an empty or blank text
    block, and with it the whole request, so such a text is BAD_REQUEST here, before anything is
    reserved; one over `max_bytes` of UTF-8 is PAYLOAD_TOO_LARGE."""
    if not value.strip():
        raise BadRequest(f"'{field}' must not be empty or only whitespace")
    if max_bytes is not None:
        size = len(value.encode("utf-8"))
        if size > max_bytes:
            raise PayloadTooLarge(f"'{field}' is {size} bytes; the limit is {max_bytes}")
    return value


def validate_path(path: str, *, field: str = "path") -> str:
    """A relative, '/'-separated path with no way out of its root, or BAD_REQUEST.

    The path is NFC-normalised first, so a look-alike spelling of a name and the
    name itself address the same object and are checked the same way.
    """
    normalized = unicodedata.normalize("NFC", path)
    if len(normalized.encode("utf-8")) > MAX_PATH_BYTES:
        raise BadRequest(f"'{field}' is longer than {MAX_PATH_BYTES} bytes")
    if any(unicodedata.category(ch) == "Cc" for ch in normalized):  # C0, DEL and C1 (U+009B is a terminal's CSI)
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


def tool_use(request_id: str, *, seq: int, tool_use_id: str, name: str, input: dict[str, Any]) -> dict[str, Any]:
    """One complete tool call of the model, numbered with the chat's deltas."""
    return {"type": "toolUse", "id": request_id, "seq": seq, "toolUseId": tool_use_id, "name": name, "input": input}


def done(request_id: str, *, stop_reason: str | None, usage: dict[str, Any],
         limits: dict[str, Any]) -> dict[str, Any]:
    return {"type": "done", "id": request_id, "stopReason": stop_reason, "usage": usage, "limits": limits}


def resumed(request_id: str, *, chat_id: str, status: str, last_seq: int) -> dict[str, Any]:
    """The answer to `chat.resume` (`request_id` is the resume's own `id`): the chat's `status` (`running`,
    `done`, `cancelled` or `error`) and the `seq` of its last stream frame so far (-1: none yet). The
    replayed and live frames that follow carry the chat's own `id`."""
    return result(request_id, {"requestId": chat_id, "status": status, "lastSeq": last_seq})


def chat_status(final_frame: dict[str, Any] | None) -> str:
    """A chat's status as `chat.resume` names it, from the frame that ended it (None: still running)."""
    if final_frame is None:
        return "running"
    if final_frame.get("type") == "error":
        return "error"
    return "cancelled" if final_frame.get("stopReason") == "cancelled" else "done"


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
