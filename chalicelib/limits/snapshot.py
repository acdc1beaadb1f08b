"""The protocol's `Limits` object, built in one place (ack, done and usage.get carry it)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from chalicelib.limits import records
from chalicelib.limits.policy import UserLimits


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

    @classmethod
    def from_hour_record(cls, item: Mapping[str, Any] | None, limits: UserLimits, now: float) -> LimitsSnapshot:
        """From a low-level hour record read (or written) at `now`; None: nothing used yet."""
        return cls(
            requests_limit=limits.requests_per_minute,
            requests_used=records.read_number(item, records.minute_attribute(now)),
            minute_start=records.minute_start(now),
            tokens_limit=limits.tokens_per_hour,
            tokens_used=records.read_number(item, "tokens"),
            hour_start=records.hour_start(now),
            taken_at=now,
        )

    def with_tokens_changed(self, delta: int) -> LimitsSnapshot:
        return replace(self, tokens_used=self.tokens_used + delta)

    def at(self, now: float) -> LimitsSnapshot:
        """The snapshot seen from a later time: a window that has ended starts again empty."""
        snapshot = self
        if records.minute_start(now) != self.minute_start:
            snapshot = replace(snapshot, requests_used=0, minute_start=records.minute_start(now))
        if records.hour_start(now) != self.hour_start:
            snapshot = replace(snapshot, tokens_used=0, hour_start=records.hour_start(now))
        return replace(snapshot, taken_at=now)

    def to_wire(self) -> dict[str, Any]:
        return {
            "requests": {"limit": self.requests_limit,
                         "remaining": max(0, self.requests_limit - self.requests_used),
                         "resetAt": self.minute_start + 60},
            "tokens": {"limit": self.tokens_limit,
                       "remaining": max(0, self.tokens_limit - self.tokens_used),
                       "resetAt": self.hour_start + 3600},
        }

    def to_dict(self) -> dict[str, Any]:
        return {"requestsLimit": self.requests_limit, "requestsUsed": self.requests_used,
                "minuteStart": self.minute_start, "tokensLimit": self.tokens_limit,
                "tokensUsed": self.tokens_used, "hourStart": self.hour_start, "takenAt": self.taken_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LimitsSnapshot:
        return cls(requests_limit=int(data["requestsLimit"]), requests_used=int(data["requestsUsed"]),
                   minute_start=int(data["minuteStart"]), tokens_limit=int(data["tokensLimit"]),
                   tokens_used=int(data["tokensUsed"]), hour_start=int(data["hourStart"]),
                   taken_at=float(data["takenAt"]))
