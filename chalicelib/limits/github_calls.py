"""GitHub calls per user per hour: each user's share of the GitHub App's limits, which all users share.

GitHub limits the app, not our users: 5,000 requests an hour per installation, and
secondary limits on writes (80 a minute) for the whole app. So that one user cannot
spend them for everyone, the github_worker reserves an action's usual number of calls
(operations.CALLS_RESERVED) before it calls GitHub, in one conditional UpdateItem that
keeps the user's hour record's `githubCalls` within GITHUB_CALLS_PER_HOUR (or the user's
groups' `githubCallsPerHour` in LIMITS_BY_GROUP, the most generous), and then settles the
counter to the calls the run really made (retries included) with one more UpdateItem.
Concurrent requests cannot pass the limit together; a run that made more calls than it
reserved can take the counter past it, and the next request is refused until the hour ends.
A refused request is RATE_LIMITED with retryAfter, the seconds until the next hour.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from chalicelib.aws.dynamo import retry_conflicts, update_if
from chalicelib.config import Settings
from chalicelib.errors import RateLimited
from chalicelib.limits import records

logger = logging.getLogger(__name__)

COUNTER = "githubCalls"  # in the hour record (records.py)


def github_calls_per_hour(groups: Iterable[str], settings: Settings) -> int:
    """A user's GitHub calls per hour: the most generous `githubCallsPerHour` of their groups in
    LIMITS_BY_GROUP, else GITHUB_CALLS_PER_HOUR."""
    overrides = [settings.limits_by_group[g]["githubCallsPerHour"] for g in groups
                 if "githubCallsPerHour" in settings.limits_by_group.get(g, {})]
    return max(overrides) if overrides else settings.github_calls_per_hour


@dataclass(frozen=True)
class CallReservation:
    user_sub: str
    hour_start: int  # the window charged, at reservation and at settlement
    calls: int


class GitHubCallBudget:
    def __init__(self, client: Any, table_name: str, *, limit_for: Callable[[tuple[str, ...]], int],
                 retention: records.Retention, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table_name
        self._limit_for = limit_for
        self._retention = retention
        self._clock = clock

    def reserve(self, user_sub: str, *, groups: tuple[str, ...], calls: int) -> CallReservation:
        """Hold `calls` (at most the whole limit) of the user's current hour, or RATE_LIMITED."""
        now = self._clock()
        limit = self._limit_for(groups)
        calls = max(0, min(calls, limit))
        admitted = update_if(
            lambda **request: retry_conflicts(lambda: self._client.update_item(**request)),
            TableName=self._table,
            Key=self._key(user_sub, now),
            UpdateExpression="SET #ttl = :ttl ADD #calls :calls",
            ConditionExpression="attribute_not_exists(#calls) OR #calls <= :room",
            ExpressionAttributeNames={"#calls": COUNTER, "#ttl": "ttl"},
            ExpressionAttributeValues={":calls": records.number(calls), ":room": records.number(limit - calls),
                                       ":ttl": records.number(self._retention.hour_expiry(now))},
        )
        if not admitted:
            retry_after = max(1, math.ceil(records.hour_start(now) + 3600 - now))
            logger.info("GitHub call budget spent", extra={"sub": user_sub, "limit": limit})
            raise RateLimited(f"the GitHub calls of this hour ({limit}) are spent; retry in {retry_after} s",
                              retry_after=retry_after)
        return CallReservation(user_sub=user_sub, hour_start=records.hour_start(now), calls=calls)

    def settle(self, reservation: CallReservation, calls_made: int) -> None:
        """Replace the reservation by the calls the run made, in the hour it was charged to."""
        delta = calls_made - reservation.calls
        if delta == 0:
            return
        retry_conflicts(lambda: self._client.update_item(
            TableName=self._table,
            Key=self._key(reservation.user_sub, reservation.hour_start),
            UpdateExpression="ADD #calls :delta",
            ExpressionAttributeNames={"#calls": COUNTER},
            ExpressionAttributeValues={":delta": records.number(delta)},
        ))

    @staticmethod
    def _key(user_sub: str, now: float) -> dict[str, Any]:
        return {"pk": {"S": records.partition(user_sub)}, "sk": {"S": records.hour_sort_key(now)}}
