"""The protocol's `Limits` object, built in one place (ack, done and usage.get carry it)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from chalicelib.limits import records
from chalicelib.limits.policy import UserLimits
from chalicelib.limits.pricing import micros_to_usd

DAY, MONTH = "day", "month"
USER = "user"  # a CostWindow's scope: the user's own budget; a group's pool is "group:<name>"


@dataclass(frozen=True)
class CostWindow:
    """One money budget of a user and how much of its current window is used (micro-dollars)."""

    scope: str  # "user", or "group:<name>" for a group's pooled budget
    window: str  # "day" or "month"
    limit: int
    used: int  # settled plus reserved, in the window that starts at `start`
    start: int  # epoch seconds

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def reset_at(self) -> int:
        return self.start + 86400 if self.window == DAY else records.next_month_start(self.start)

    def at(self, now: float) -> CostWindow:
        start = records.day_start(now) if self.window == DAY else records.month_start(now)
        return self if start == self.start else replace(self, used=0, start=start)

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "window": self.window, "limit": self.limit, "used": self.used,
                "start": self.start}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostWindow:
        return cls(scope=str(data["scope"]), window=str(data["window"]), limit=int(data["limit"]),
                   used=int(data["used"]), start=int(data["start"]))


def cost_windows(limits: UserLimits, now: float, *, user_month: Mapping[str, Any] | None,
                 pool_months: Mapping[str, Mapping[str, Any] | None]) -> tuple[CostWindow, ...]:
    """The user's money budgets as of `now`, from the low-level month records read (None: nothing used yet)."""
    windows: list[CostWindow] = []
    if limits.cost_per_day is not None:
        windows.append(CostWindow(USER, DAY, limits.cost_per_day,
                                  records.read_number(user_month, records.day_cost_attribute(now)),
                                  records.day_start(now)))
    if limits.cost_per_month is not None:
        windows.append(CostWindow(USER, MONTH, limits.cost_per_month,
                                  records.read_number(user_month, records.MONTH_COST), records.month_start(now)))
    for group, limit in limits.pools:
        windows.append(CostWindow(f"group:{group}", MONTH, limit,
                                  records.read_number(pool_months.get(group), records.MONTH_COST),
                                  records.month_start(now)))
    return tuple(windows)


@dataclass(frozen=True)
class LimitsSnapshot:
    """A user's limits and how much of the current windows is used, as of `taken_at`."""

    requests_limit: int
    requests_used: int  # in the minute window that starts at minute_start
    minute_start: int
    tokens_limit: int
    tokens_used: int  # settled plus reserved, in the hour window that starts at hour_start
    hour_start: int
    taken_at: float
    cost: tuple[CostWindow, ...] = ()  # the money budgets that apply (none configured: empty)

    @classmethod
    def from_hour_record(cls, item: Mapping[str, Any] | None, limits: UserLimits, now: float, *,
                         cost: tuple[CostWindow, ...] = ()) -> LimitsSnapshot:
        """From a low-level hour record read (or written) at `now`; None: nothing used yet."""
        return cls(
            requests_limit=limits.requests_per_minute,
            requests_used=records.read_number(item, records.minute_attribute(now)),
            minute_start=records.minute_start(now),
            tokens_limit=limits.tokens_per_hour,
            tokens_used=records.read_number(item, "tokens"),
            hour_start=records.hour_start(now),
            taken_at=now,
            cost=cost,
        )

    def with_tokens_changed(self, delta: int, cost_delta: int = 0) -> LimitsSnapshot:
        """After a settlement: the hour's tokens, and every money budget (each held the same reservation)."""
        return replace(self, tokens_used=self.tokens_used + delta,
                       cost=tuple(replace(window, used=window.used + cost_delta) for window in self.cost))

    def at(self, now: float) -> LimitsSnapshot:
        """The snapshot seen from a later time: a window that has ended starts again empty."""
        snapshot = self
        if records.minute_start(now) != self.minute_start:
            snapshot = replace(snapshot, requests_used=0, minute_start=records.minute_start(now))
        if records.hour_start(now) != self.hour_start:
            snapshot = replace(snapshot, tokens_used=0, hour_start=records.hour_start(now))
        return replace(snapshot, taken_at=now, cost=tuple(window.at(now) for window in snapshot.cost))

    def tightest_cost(self) -> CostWindow | None:
        """The money budget with the least remaining (ties: the one that resets last): what `Limits.cost` shows."""
        return min(self.cost, key=lambda w: (w.remaining, -w.reset_at), default=None)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "requests": {"limit": self.requests_limit,
                         "remaining": max(0, self.requests_limit - self.requests_used),
                         "resetAt": self.minute_start + 60},
            "tokens": {"limit": self.tokens_limit,
                       "remaining": max(0, self.tokens_limit - self.tokens_used),
                       "resetAt": self.hour_start + 3600},
        }
        tightest = self.tightest_cost()
        if tightest is not None:
            wire["cost"] = {"limit": micros_to_usd(tightest.limit), "remaining": micros_to_usd(tightest.remaining),
                            "resetAt": tightest.reset_at, "window": tightest.window}
        return wire

    def to_dict(self) -> dict[str, Any]:
        return {"requestsLimit": self.requests_limit, "requestsUsed": self.requests_used,
                "minuteStart": self.minute_start, "tokensLimit": self.tokens_limit,
                "tokensUsed": self.tokens_used, "hourStart": self.hour_start, "takenAt": self.taken_at,
                "cost": [window.to_dict() for window in self.cost]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LimitsSnapshot:
        return cls(requests_limit=int(data["requestsLimit"]), requests_used=int(data["requestsUsed"]),
                   minute_start=int(data["minuteStart"]), tokens_limit=int(data["tokensLimit"]),
                   tokens_used=int(data["tokensUsed"]), hour_start=int(data["hourStart"]),
                   taken_at=float(data["takenAt"]),
                   cost=tuple(CostWindow.from_dict(window) for window in data.get("cost") or ()))
