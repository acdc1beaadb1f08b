"""The layout of the usage table: one place that knows keys, attribute names and windows.

Per user (partition `USER#<sub>`):

- `H#<YYYY-MM-DDTHH>`, the hour record: `m00`..`m59` (requests admitted in each
  minute: the rate-limit windows), `requests` (the hour's requests), `tokens` (the
  budget counter: settled usage plus reservations not yet settled), `inputTokens`,
  `outputTokens`, `cacheReadInputTokens`, `cacheWriteInputTokens` (settled usage, as
  Bedrock reports it: `inputTokens` is the input neither read from nor written to the
  prompt cache, and the budget counts all three inputs). Keeping the minute windows and
  the token window in one item lets a chat be admitted and its tokens reserved by ONE conditional
  UpdateItem: no transaction, so concurrent admissions of one user never abort each
  other with TransactionConflict, and the write costs one unit instead of four.
  `githubCalls`: GitHub calls made or reserved in the hour (github_calls.py).
- `D#<YYYY-MM-DD>`, the day record: `inputTokens`, `outputTokens`, `cacheReadInputTokens`,
  `cacheWriteInputTokens`, `totalTokens` (all four), `chats`, and `day`, which puts it
  (and only it) in the sparse `byDay` index (partition `day`, sort `totalTokens`): a day's
  heaviest users.
- `D#<YYYY-MM-DD>#M#<model>`, the day's usage of one model (same counters, no `day`).
- `S#<requestId>`, the marker that a chat's reservation was settled (idempotency).

All times are UTC; windows are aligned to the minute, the hour and the day.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PARTITION_PREFIX = "USER#"
HOUR_PREFIX = "H#"
DAY_PREFIX = "D#"
MODEL_INFIX = "#M#"
SETTLED_PREFIX = "S#"


def minute_start(now: float) -> int:
    return int(now // 60) * 60


def hour_start(now: float) -> int:
    return int(now // 3600) * 3600


def day_start(now: float) -> int:
    return int(now // 86400) * 86400


def day_name(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def partition(user_sub: str) -> str:
    return f"{PARTITION_PREFIX}{user_sub}"


def hour_sort_key(now: float) -> str:
    return f"{HOUR_PREFIX}{time.strftime('%Y-%m-%dT%H', time.gmtime(now))}"


def day_hours_prefix(now: float) -> str:
    """The sort-key prefix shared by the hour records of `now`'s day."""
    return f"{HOUR_PREFIX}{day_name(now)}T"


def day_sort_key(now: float) -> str:
    return f"{DAY_PREFIX}{day_name(now)}"


def model_sort_key(now: float, model: str) -> str:
    return f"{DAY_PREFIX}{day_name(now)}{MODEL_INFIX}{model}"


def settled_sort_key(request_id: str) -> str:
    return f"{SETTLED_PREFIX}{request_id}"


def minute_attribute(now: float) -> str:
    """The hour record's counter for `now`'s minute: m00..m59."""
    return f"m{int(now // 60) % 60:02d}"


def number(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


def read_number(item: Mapping[str, Any] | None, name: str) -> int:
    """A numeric attribute of a low-level item; an absent one is 0."""
    value = (item or {}).get(name)
    return int(value["N"]) if value else 0


@dataclass(frozen=True)
class Retention:
    """How long records live (DynamoDB's TTL deletes them, within a couple of days)."""

    hourly_seconds: int
    daily_seconds: int

    def hour_expiry(self, now: float) -> int:
        return hour_start(now) + 3600 + self.hourly_seconds

    def day_expiry(self, now: float) -> int:
        return day_start(now) + 86400 + self.daily_seconds
