"""A user's usage and limits: what `usage.get` and `GET /usage` answer."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.aws.dynamo import items
from chalicelib.limits import records
from chalicelib.limits.policy import UserLimits
from chalicelib.limits.snapshot import LimitsSnapshot

_COUNTERS = ("requests", "inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")


class UsageReport:
    """Reads the current hour's and day's usage with one Query over the day's hour records.

    The hour records carry the day's whole story (requests, settled tokens, the
    current windows); the day record exists for the operators' `byDay` index.
    A chat's tokens count in the hour it was admitted in.
    """

    def __init__(self, client: Any, table_name: str, *, limits_for: Callable[[tuple[str, ...]], UserLimits]) -> None:
        self._client = client
        self._table = table_name
        self._limits_for = limits_for

    def report(self, user_sub: str, now: float, *, groups: tuple[str, ...] = ()) -> dict[str, Any]:
        hours = self._day_hour_records(user_sub, now)
        current = next((item for item in hours if item["sk"]["S"] == records.hour_sort_key(now)), None)
        limits = LimitsSnapshot.from_hour_record(current, self._limits_for(groups), now)
        return {
            "limits": limits.to_wire(),
            "usage": {
                "hour": {name: records.read_number(current, name) for name in _COUNTERS},
                "day": {name: sum(records.read_number(item, name) for item in hours) for name in _COUNTERS},
            },
        }

    def _day_hour_records(self, user_sub: str, now: float) -> list[dict[str, Any]]:
        return list(items(
            self._client.query,
            TableName=self._table,
            ConsistentRead=True,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :hours)",
            ExpressionAttributeValues={":pk": {"S": records.partition(user_sub)},
                                       ":hours": {"S": records.day_hours_prefix(now)}},
        ))  # at most 24 small items: one page, but never assume it
