"""Times as a person reads them: the local time zone, never epoch seconds."""
from __future__ import annotations

import time
from datetime import UTC, datetime


def _parse(value: str | int | float) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))  # the protocol's ISO 8601 UTC


def local_time(value: str | int | float | None, *, now: float | None = None) -> str:
    """`2025-03-04 14:05:09 CET (in 12 min)`: an ISO 8601 time or epoch seconds, in local time."""
    if value is None or value == "":
        return "-"
    try:
        moment = _parse(value).astimezone()
    except (ValueError, OverflowError, OSError):
        return str(value)  # not a time after all: shown as it came
    return f"{moment:%Y-%m-%d %H:%M:%S %Z} ({relative(moment.timestamp(), now=now)})"


def relative(epoch: float, *, now: float | None = None) -> str:
    """`in 5 min`, `3 h ago`, `now`."""
    delta = epoch - (time.time() if now is None else now)
    size = abs(delta)
    if size < 1:
        return "now"
    for unit, seconds in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if size >= seconds:
            amount = f"{int(size // seconds)} {unit}"
            return f"in {amount}" if delta > 0 else f"{amount} ago"
    return "now"
