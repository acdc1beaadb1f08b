"""A user's usage and limits: what `usage.get` and `GET /usage` answer."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.aws.dynamo import get_many, items
from chalicelib.limits import records
from chalicelib.limits.policy import UserLimits
from chalicelib.limits.pricing import micros_to_usd
from chalicelib.limits.snapshot import CostWindow, LimitsSnapshot, cost_windows

_COUNTERS = ("requests", "inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
_COST = "costMicros"


class UsageReport:
    """Reads the current hour's and day's usage with one Query over the day's hour records, and, for a user
    with money budgets, their month records (the user's and each pool's) with one BatchGetItem.

    The hour records carry the day's whole story (requests, settled tokens and cost, the
    current windows); the day record exists for the operators' `byDay` index. A chat's
    tokens and cost count in the hour it was admitted in.
    """

    def __init__(self, client: Any, table_name: str, *, limits_for: Callable[[tuple[str, ...]], UserLimits]) -> None:
        self._client = client
        self._table = table_name
        self._limits_for = limits_for

    def report(self, user_sub: str, now: float, *, groups: tuple[str, ...] = ()) -> dict[str, Any]:
        hours = self._day_hour_records(user_sub, now)
        current = next((item for item in hours if item["sk"]["S"] == records.hour_sort_key(now)), None)
        limits = self._limits_for(groups)
        snapshot = LimitsSnapshot.from_hour_record(current, limits, now, cost=self._cost(user_sub, now, limits))
        return {
            "limits": snapshot.to_wire(),
            "usage": {
                "hour": _usage([current] if current else []),
                "day": _usage(hours),
            },
        }

    def _cost(self, user_sub: str, now: float, limits: UserLimits) -> tuple[CostWindow, ...]:
        if not limits.has_money:
            return ()
        month = {"S": records.month_sort_key(now)}
        named = [("month", {"pk": {"S": records.partition(user_sub)}, "sk": month})]
        named += [(group, {"pk": {"S": records.group_partition(group)}, "sk": month}) for group, _ in limits.pools]
        found = get_many(self._client, self._table, named)
        return cost_windows(limits, now, user_month=found["month"],
                            pool_months={group: found[group] for group, _ in limits.pools})

    def _day_hour_records(self, user_sub: str, now: float) -> list[dict[str, Any]]:
        return list(items(
            self._client.query,
            TableName=self._table,
            ConsistentRead=True,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :hours)",
            ExpressionAttributeValues={":pk": {"S": records.partition(user_sub)},
                                       ":hours": {"S": records.day_hours_prefix(now)}},
        ))  # at most 24 small items: one page, but never assume it


def _usage(hours: list[dict[str, Any]]) -> dict[str, Any]:
    """usage.get's `hour` or `day`: the counters summed over these hour records, and their cost in USD."""
    usage: dict[str, Any] = {name: sum(records.read_number(item, name) for item in hours) for name in _COUNTERS}
    usage["costUsd"] = micros_to_usd(sum(records.read_number(item, _COST) for item in hours))
    return usage
