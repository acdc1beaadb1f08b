"""Requests per user per minute: fixed windows, one conditional write per admitted action."""
from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.aws.dynamo import error_code, retry_conflicts
from chalicelib.errors import RateLimited
from chalicelib.limits import records
from chalicelib.limits.policy import UserLimits
from chalicelib.limits.snapshot import LimitsSnapshot

logger = logging.getLogger(__name__)


class LimitedMemory:
    """Per container: users known to be over their limit until the end of their window.

    A full window cannot empty before it ends, so remembering it spares DynamoDB
    the rejected writes of a client that keeps trying. Shared by every thread.
    """

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._until: dict[str, int] = {}
        self._lock = threading.Lock()

    def limited_until(self, user_sub: str, now: float) -> int | None:
        with self._lock:
            until = self._until.get(user_sub)
        return until if until is not None and now < until else None

    def remember(self, user_sub: str, until: int, now: float) -> None:
        with self._lock:
            if len(self._until) >= self.MAX_ENTRIES:
                self._until = {sub: t for sub, t in self._until.items() if t > now}
            self._until[user_sub] = until


def rate_limited(until: int, now: float) -> RateLimited:
    retry_after = max(1, math.ceil(until - now))
    return RateLimited(f"request limit reached for this minute; retry in {retry_after} s", retry_after=retry_after)


class RateLimiter:
    """Admits a user's action if their current minute window has room, in one UpdateItem."""

    def __init__(self, client: Any, table_name: str, *, limits_for: Callable[[tuple[str, ...]], UserLimits],
                 retention: records.Retention, memory: LimitedMemory | None = None) -> None:
        self._client = client
        self._table = table_name
        self._limits_for = limits_for
        self._retention = retention
        self.memory = memory

    def admit(self, user_sub: str, now: float, *, groups: tuple[str, ...] = ()) -> LimitsSnapshot:
        """Count one action, or raise RateLimited with retryAfter = seconds to the window's end."""
        limits = self._limits_for(groups)
        self.check_memory(user_sub, now)
        minute = records.minute_attribute(now)
        try:
            response = retry_conflicts(lambda: self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": records.partition(user_sub)}, "sk": {"S": records.hour_sort_key(now)}},
                UpdateExpression="SET #ttl = :ttl ADD #minute :one, requests :one",
                ConditionExpression="attribute_not_exists(#minute) OR #minute < :limit",
                ExpressionAttributeNames={"#minute": minute, "#ttl": "ttl"},
                ExpressionAttributeValues={":one": records.number(1),
                                           ":limit": records.number(limits.requests_per_minute),
                                           ":ttl": records.number(self._retention.hour_expiry(now))},
                ReturnValues="ALL_NEW",
            ))
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                raise self.reject(user_sub, now) from None
            raise
        return LimitsSnapshot.from_hour_record(response["Attributes"], limits, now)

    def check_memory(self, user_sub: str, now: float) -> None:
        if self.memory is not None:
            until = self.memory.limited_until(user_sub, now)
            if until is not None:
                raise rate_limited(until, now)

    def reject(self, user_sub: str, now: float) -> RateLimited:
        """The error for a full window, remembered until the window ends."""
        until = records.minute_start(now) + 60
        logger.info("rate limited", extra={"sub": user_sub, "until": until})
        if self.memory is not None:
            self.memory.remember(user_sub, until, now)
        return rate_limited(until, now)
