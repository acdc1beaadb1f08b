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
- `M#<YYYY-MM>`, the month record: the money budget counters, `cost` (the month's cost in
  micro-dollars, settled plus reservations not yet settled) and `d01`..`d31` (the same for each
  day: the daily budget's windows; one item for both, so a chat's money is reserved against the
  day and the month by ONE conditional update of it), and the month's settled usage: the day
  record's counters and `costMicros`.
- `S#<requestId>`, the marker that a chat's reservation was settled (idempotency).

Every record with usage also carries `costMicros` (settled cost in micro-dollars; 0 for a model
without a price). Per Cognito group named in LIMITS_BY_GROUP (partition `GROUP#<name>`):

- `M#<YYYY-MM>`, the group's month record: `cost` (settled plus reserved: a pooled budget's
  counter, `pooledCostUsdPerMonth`) and the settled usage of its members, counted once per
  member's chat.

The month, day and day-per-model records (and the groups' month records) carry `month` and
`entry`, which put them in the sparse `byMonth` index (partition `month`, sort `entry`): a
month's records are a few Queries, never a Scan (infra/usage_report.py). `entry` is `U#<sub>`
(a user's month), `G#<group>`, `D#<YYYY-MM-DD>#<sub>` (a user's day) or
`M#<model>#<YYYY-MM-DD>#<sub>` (a user's day of one model), so a report by user, group, day or
model reads only its own kind (`begins_with(entry, ...)`).

All times are UTC; windows are aligned to the minute, the hour, the day and the month.
"""
from __future__ import annotations

import calendar
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PARTITION_PREFIX = "USER#"
GROUP_PREFIX = "GROUP#"
HOUR_PREFIX = "H#"
DAY_PREFIX = "D#"
MONTH_PREFIX = "M#"
MODEL_INFIX = "#M#"
SETTLED_PREFIX = "S#"
# `entry` (the byMonth index's sort key) of each kind of record.
USER_ENTRY, GROUP_ENTRY, DAY_ENTRY, MODEL_ENTRY = "U#", "G#", "D#", "M#"
MONTH_COST = "cost"  # the month record's budget counter (settled + reserved, micro-dollars)


def minute_start(now: float) -> int:
    return int(now // 60) * 60


def hour_start(now: float) -> int:
    return int(now // 3600) * 3600


def day_start(now: float) -> int:
    return int(now // 86400) * 86400


def day_name(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def month_start(now: float) -> int:
    moment = time.gmtime(now)
    return calendar.timegm((moment.tm_year, moment.tm_mon, 1, 0, 0, 0))


def next_month_start(now: float) -> int:
    moment = time.gmtime(now)
    year, month = (moment.tm_year + 1, 1) if moment.tm_mon == 12 else (moment.tm_year, moment.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


def month_name(now: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(now))


def month_sort_key(now: float) -> str:
    return f"{MONTH_PREFIX}{month_name(now)}"


def day_cost_attribute(now: float) -> str:
    """The month record's budget counter of `now`'s day: d01..d31."""
    return f"d{time.gmtime(now).tm_mday:02d}"


def group_partition(group: str) -> str:
    return f"{GROUP_PREFIX}{group}"


def user_entry(user_sub: str) -> str:
    return f"{USER_ENTRY}{user_sub}"


def group_entry(group: str) -> str:
    return f"{GROUP_ENTRY}{group}"


def day_entry(now: float, user_sub: str) -> str:
    return f"{DAY_ENTRY}{day_name(now)}#{user_sub}"


def model_entry(now: float, model: str, user_sub: str) -> str:
    return f"{MODEL_ENTRY}{model}#{day_name(now)}#{user_sub}"


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

    def month_expiry(self, now: float) -> int:
        """Month records live as long after their month as day records after their day."""
        return next_month_start(now) + self.daily_seconds
