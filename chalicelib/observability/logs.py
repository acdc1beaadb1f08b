"""Structured logs: one JSON object per line, redacted, with the invocation's context.

`bind(...)` attaches fields (the frame's `id`, the server's `requestId`,
`connectionId`, the user's `sub`, `action`) to
every line logged inside it, so a handler need not repeat them. Context
variables do not flow into new threads: wrap a thread's target with
`with_current_context` to keep them.

LOG_FORMAT=text renders the same records as short human lines, for the local
stack's console; every deployed stage logs JSON.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from chalicelib.observability.redact import exception_text, redact, scrub

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# The default is never mutated: bind() always sets a new dict.
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_context", default={})  # noqa: B039

T = TypeVar("T")


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields to every log line written inside the block (and in threads started with its context)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get())


def with_current_context(target: Callable[..., T]) -> Callable[..., T]:
    """`target`, run in a copy of the caller's context: for `threading.Thread(target=...)`,
    whose threads would otherwise start with none of the bound log fields."""
    context = contextvars.copy_context()

    @functools.wraps(target)
    def run(*args: Any, **kwargs: Any) -> T:
        return context.run(target, *args, **kwargs)
    return run


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's context and extra fields, redacted."""
    fields = dict(_context.get())
    fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and v is not None})
    return redact(fields)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        entry.update(_fields(record))
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = exception_text(record.exc_info[1])
        return json.dumps(entry, default=str, ensure_ascii=False)


def _short(value: Any, keep: int) -> str:
    text = str(value)
    return text if len(text) <= keep + 1 else text[:keep] + "…"


class TextFormatter(logging.Formatter):
    """`12:00:01 $default c=AbCdEf… sub=1a2b3c4d… chat.send id=c3 → ok 12 ms`: a frame's path at a glance."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        parts = [time.strftime("%H:%M:%S", time.localtime(record.created))]
        if record.levelno != logging.INFO:
            parts.append(record.levelname)
        if "handler" in fields:
            parts.append(str(fields.pop("handler")))
        if "connectionId" in fields:
            parts.append(f"c={_short(fields.pop('connectionId'), 6)}")
        if "sub" in fields:
            parts.append(f"sub={_short(fields.pop('sub'), 8)}")
        if "action" in fields:
            parts.append(str(fields.pop("action")))
        if "id" in fields:  # the frame's id
            parts.append(f"id={_short(fields.pop('id'), 24)}")
        if "requestId" in fields:  # the server's id of a chat
            parts.append(f"req={_short(fields.pop('requestId'), 8)}")
        message = scrub(record.getMessage())
        if message != "handled":
            parts.append(message)
        outcome, latency = fields.pop("outcome", None), fields.pop("latencyMs", None)
        for noise in ("apiRequestId", "lambdaRequestId"):
            fields.pop(noise, None)
        parts.extend(f"{key}={_short(value, 40)}" for key, value in fields.items())
        if outcome is not None:
            parts.append(f"→ {outcome}" + (f" {latency} ms" if latency is not None else ""))
        line = " ".join(parts)
        if record.exc_info and record.exc_info[1] is not None:
            line += "\n" + exception_text(record.exc_info[1])
        return line


_FORMATTERS = {"json": JsonFormatter, "text": TextFormatter}


def configure_logging(level: str, log_format: str = "json") -> None:
    """Send the app's logs to stdout (CloudWatch Logs in Lambda), one handler whatever the calls. Idempotent."""
    logger = logging.getLogger("chalicelib")
    handler = next((h for h in logger.handlers if getattr(h, "llm_ide", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stdout)
        handler.llm_ide = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    if not isinstance(handler.formatter, _FORMATTERS[log_format]):
        handler.setFormatter(_FORMATTERS[log_format]())
    logger.setLevel(level)
