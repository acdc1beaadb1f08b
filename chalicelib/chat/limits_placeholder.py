"""PLACEHOLDER for the limits issue (#4): the `Limits` shape, from the protocol's defaults.

Nothing is counted here: `remaining` always equals `limit`. The lead replaces
this module's one function with the real TokenBudget / rate-limit view when
issue 4 is merged; `chat.send`'s ack and the worker's `done` call only this.
"""
from __future__ import annotations

from typing import Any

REQUESTS_PER_MINUTE = 100  # RATE_LIMIT_REQUESTS_PER_MINUTE's default in the protocol
TOKENS_PER_HOUR = 10000  # TOKEN_BUDGET_PER_HOUR's default in the protocol


def current_limits(*, user_sub: str, now: float) -> dict[str, Any]:
    minute_end = (int(now) // 60 + 1) * 60
    hour_end = (int(now) // 3600 + 1) * 3600
    return {
        "requests": {"limit": REQUESTS_PER_MINUTE, "remaining": REQUESTS_PER_MINUTE, "resetAt": minute_end},
        "tokens": {"limit": TOKENS_PER_HOUR, "remaining": TOKENS_PER_HOUR, "resetAt": hour_end},
    }
