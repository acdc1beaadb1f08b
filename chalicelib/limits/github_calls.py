"""GitHub calls per user per hour: each user's share of the GitHub App's limits, which all users share.

GitHub limits the app, not our users: 5,000 requests an hour per installation, and
secondary limits on writes (80 a minute) for the whole app. So that one user cannot
spend them for everyone, the github_worker reserves an action's usual number of calls
(operations.CALLS_RESERVED) before it calls GitHub, in one conditional UpdateItem that
keeps the user's hour record's `githubCalls` within GITHUB_CALLS_PER_HOUR (or the user's
groups' `githubCallsPerHour` in LIMITS_BY_GROUP, the most generous), and then settles the
counter to the calls the run really made (retries included) with one more UpdateItem.
A run that needs more calls than it holds (retries, pages, a file found under another
spelling) holds one more before each, in the same conditional way (`CallHold`), so no run
and no number of concurrent runs passes the limit: the call that would is not sent, and the
run ends RATE_LIMITED. Only the calls that deal with a pull request's write already sent may
pass it (a few calls): finding out whether GitHub opened the pull request after a lost answer,
and undoing the branch of a failed one, so that nothing is left behind on GitHub and no pull
request GitHub opened is closed. They hold nothing and so write nothing before they are sent
(they do not depend on the table being reachable); settling charges them with the rest. A
refused request is RATE_LIMITED with retryAfter, the seconds until the next hour.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
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
    limit: int  # the user's calls per hour when it was reserved: what holding more is checked against


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
        if not self._add(user_sub, now, calls, limit=limit):
            raise self._spent(user_sub, limit, now)
        return CallReservation(user_sub=user_sub, hour_start=records.hour_start(now), calls=calls, limit=limit)

    def extend(self, reservation: CallReservation, calls: int) -> CallReservation:
        """Hold `calls` more in the reservation's hour, within its limit (RATE_LIMITED when that is spent)."""
        if not self._add(reservation.user_sub, reservation.hour_start, calls, limit=reservation.limit):
            raise self._spent(reservation.user_sub, reservation.limit, self._clock())
        return replace(reservation, calls=reservation.calls + calls)

    def _add(self, user_sub: str, hour: float, calls: int, *, limit: int) -> bool:
        """Add `calls` to the hour's counter, if it stays within `limit`."""
        return update_if(
            lambda **given: retry_conflicts(lambda: self._client.update_item(**given)),
            TableName=self._table, Key=self._key(user_sub, hour),
            UpdateExpression="SET #ttl = :ttl ADD #calls :calls",
            ConditionExpression="attribute_not_exists(#calls) OR #calls <= :room",
            ExpressionAttributeNames={"#calls": COUNTER, "#ttl": "ttl"},
            ExpressionAttributeValues={":calls": records.number(calls), ":room": records.number(limit - calls),
                                       ":ttl": records.number(self._retention.hour_expiry(hour))})

    @staticmethod
    def _spent(user_sub: str, limit: int, now: float) -> RateLimited:
        retry_after = max(1, math.ceil(records.hour_start(now) + 3600 - now))
        logger.info("GitHub call budget spent", extra={"sub": user_sub, "limit": limit})
        return RateLimited(f"the GitHub calls of this hour ({limit}) are spent; retry in {retry_after} s",
                           retry_after=retry_after)

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


class CallHold:
    """One run's hold on its user's GitHub calls: `before_call` (GitHubClient's) holds one more call before
    each call past what the run holds, so the run sends none the hour's limit does not cover."""

    def __init__(self, budget: GitHubCallBudget, reservation: CallReservation) -> None:
        self._budget = budget
        self.reservation = reservation

    def before_call(self, calls_made: int, *, undoing: bool) -> None:
        """About to send call number `calls_made + 1`: RATE_LIMITED if it is not held and cannot be.

        A call that deals with a write already sent (`undoing`: finding out what it did, or undoing it) is
        sent whatever the budget, so it holds nothing and writes nothing to the table first: a throttled or
        unreachable DynamoDB cannot stop it and leave the run's branch behind. settle charges it, as every
        call made; the next call held also holds those made unheld before it."""
        if not undoing and calls_made >= self.reservation.calls:
            self.reservation = self._budget.extend(self.reservation, calls_made + 1 - self.reservation.calls)
