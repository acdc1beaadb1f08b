"""Structured logs: one JSON object per line, redacted, with the invocation's context.

`bind(...)` attaches fields (request id, connection id, user sub, action) to
every line logged inside it, so a handler need not repeat them.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from typing import Any, Iterator

from chalicelib.observability.redact import redact, scrub

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_context", default={})


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields to every log line written inside the block (and in threads copied from it)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        entry.update(_context.get())
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(redact(entry), default=str, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """Send the app's logs as JSON lines to stdout (CloudWatch Logs in Lambda). Idempotent."""
    logger = logging.getLogger("chalicelib")
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
