"""Tokens per user per hour: reserve the worst case before the model runs, settle to the truth after.

The hour record's `tokens` counter holds settled usage plus open reservations, and
a reservation is only written if it keeps that counter within the budget, so no
number of concurrent chats can take a user past it. Settlement replaces the
reservation by the real usage in one transaction that is idempotent per request.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.aws.dynamo import cancellation_codes, error_code, retry_conflicts
from chalicelib.errors import BadRequest, BudgetExceeded
from chalicelib.limits import records
from chalicelib.limits.policy import UserLimits
from chalicelib.limits.rate import RateLimiter
from chalicelib.limits.snapshot import LimitsSnapshot
from chalicelib.tokens import estimate_tokens

logger = logging.getLogger(__name__)

RESERVE_ATTEMPTS = 3  # each failed attempt learns the current counter, so this is plenty
MAX_MODEL_ID_LENGTH = 256


@dataclass(frozen=True)
class Reservation:
    """Tokens held for one chat; serialisable, so the worker that settles can receive it."""

    user_sub: str
    request_id: str
    hour_start: int  # the window charged, at reservation and at settlement
    estimated_input: int
    max_tokens: int  # what the model may generate: the request's, or lowered to fit
    limits: LimitsSnapshot  # as of admission: what the `ack` frame carries

    @property
    def reserved(self) -> int:
        return self.estimated_input + self.max_tokens

    def to_dict(self) -> dict[str, Any]:
        return {"userSub": self.user_sub, "requestId": self.request_id, "hourStart": self.hour_start,
                "estimatedInput": self.estimated_input, "maxTokens": self.max_tokens,
                "limits": self.limits.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reservation:
        return cls(user_sub=data["userSub"], request_id=data["requestId"], hour_start=int(data["hourStart"]),
                   estimated_input=int(data["estimatedInput"]), max_tokens=int(data["maxTokens"]),
                   limits=LimitsSnapshot.from_dict(data["limits"]))


@dataclass(frozen=True)
class Settlement:
    input_tokens: int
    output_tokens: int
    already_settled: bool  # a retried settlement: nothing was counted again
    limits: LimitsSnapshot  # the admission snapshot plus this chat's own settlement
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0

    def usage_wire(self) -> dict[str, int]:
        """The `usage` object of the `done` frame."""
        return {"inputTokens": self.input_tokens, "outputTokens": self.output_tokens,
                "totalTokens": self.input_tokens + self.output_tokens + self.cache_read_input_tokens
                + self.cache_write_input_tokens,
                "cacheReadInputTokens": self.cache_read_input_tokens,
                "cacheWriteInputTokens": self.cache_write_input_tokens}


def fallback_usage(reservation: Reservation, served_text: str) -> tuple[int, int]:
    """(input, output) to settle when the stream ended without Bedrock's usage metadata.

    The output is counted from the text actually sent to the client, so nothing
    served is free; the input is the reservation's estimate once anything was
    generated (the model read the prompt), and 0 when nothing was.
    """
    output = estimate_tokens(served_text)
    return (reservation.estimated_input if output else 0), output


def budget_exceeded(now: float) -> BudgetExceeded:
    retry_after = max(1, math.ceil(records.hour_start(now) + 3600 - now))
    return BudgetExceeded(f"the hourly token budget cannot cover this request; retry in {retry_after} s",
                          retry_after=retry_after)


class TokenBudget:
    def __init__(self, client: Any, table_name: str, *, rate_limiter: RateLimiter,
                 limits_for: Callable[[tuple[str, ...]], UserLimits], retention: records.Retention,
                 floor: int, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table_name
        self._rate = rate_limiter
        self._limits_for = limits_for
        self._retention = retention
        self._floor = floor
        self._clock = clock

    def reserve(self, user_sub: str, now: float, *, groups: tuple[str, ...] = (), request_id: str,
                estimated_input: int, max_tokens: int) -> Reservation:
        """Admit a chat (it counts as a request) and reserve its worst case, in ONE UpdateItem.

        `max_tokens` is lowered to what is left of the hour's budget when that is at
        least the floor (TOKEN_RESERVATION_FLOOR) or the request's own max_tokens;
        otherwise BudgetExceeded. A full minute window raises RateLimited.
        """
        if not 1 <= len(request_id) <= 128:
            raise BadRequest("request id must be 1-128 characters")
        if estimated_input < 0 or max_tokens < 1:
            raise BadRequest("estimated input must be >= 0 and max tokens >= 1")
        limits = self._limits_for(groups)
        self._rate.check_memory(user_sub, now)
        known_used = 0  # optimistic: a failed attempt tells the real counter
        for _ in range(RESERVE_ATTEMPTS):
            granted = min(max_tokens, limits.tokens_per_hour - known_used - estimated_input)
            if granted < min(max_tokens, self._floor) or granted < 1:
                logger.info("budget exceeded", extra={"sub": user_sub, "requestId": request_id,
                                                      "tokensUsed": known_used, "wanted": estimated_input + max_tokens})
                raise budget_exceeded(now)
            try:
                item = self._admit_and_reserve(user_sub, now, limits, estimated_input + granted)
            except ClientError as error:
                if error_code(error) != "ConditionalCheckFailedException":
                    raise
                old = error.response.get("Item")
                if records.read_number(old, records.minute_attribute(now)) >= limits.requests_per_minute:
                    raise self._rate.reject(user_sub, now) from None
                known_used = records.read_number(old, "tokens")
                continue
            return Reservation(user_sub=user_sub, request_id=request_id, hour_start=records.hour_start(now),
                               estimated_input=estimated_input, max_tokens=granted,
                               limits=LimitsSnapshot.from_hour_record(item, limits, now))
        logger.warning("budget reservation kept conflicting", extra={"sub": user_sub, "requestId": request_id})
        raise budget_exceeded(now)

    def _admit_and_reserve(self, user_sub: str, now: float, limits: UserLimits, amount: int) -> dict[str, Any]:
        response = retry_conflicts(lambda: self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": records.partition(user_sub)}, "sk": {"S": records.hour_sort_key(now)}},
            UpdateExpression="SET #ttl = :ttl ADD #minute :one, requests :one, tokens :amount",
            ConditionExpression="(attribute_not_exists(#minute) OR #minute < :requests) "
                                "AND (attribute_not_exists(tokens) OR tokens <= :room)",
            ExpressionAttributeNames={"#minute": records.minute_attribute(now), "#ttl": "ttl"},
            ExpressionAttributeValues={":one": records.number(1), ":amount": records.number(amount),
                                       ":requests": records.number(limits.requests_per_minute),
                                       ":room": records.number(limits.tokens_per_hour - amount),
                                       ":ttl": records.number(self._retention.hour_expiry(now))},
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        ))
        return response["Attributes"]

    def settle(self, reservation: Reservation, actual_input: int, actual_output: int, model: str, *,
               cache_read: int = 0, cache_write: int = 0, now: float | None = None) -> Settlement:
        """Replace the reservation by the real usage: hour, day and model records in ONE transaction.

        `actual_input` is the input Bedrock read neither from nor into the prompt cache; `cache_read` and
        `cache_write` the input it did. The budget counts all three: the model read every one.
        Idempotent per request: the transaction also creates the request's settled
        marker, on condition that it does not exist, so a retry counts nothing twice.
        """
        now = self._clock() if now is None else now
        actual_input, actual_output = max(0, int(actual_input)), max(0, int(actual_output))
        cache_read, cache_write = max(0, int(cache_read)), max(0, int(cache_write))
        total = actual_input + actual_output + cache_read + cache_write
        delta = total - reservation.reserved
        charged = reservation.hour_start  # the hour (and day) the chat was admitted in
        key = records.partition(reservation.user_sub)
        model = model[:MAX_MODEL_ID_LENGTH] or "unknown"
        counters = {":in": records.number(actual_input), ":out": records.number(actual_output),
                    ":cread": records.number(cache_read), ":cwrite": records.number(cache_write),
                    ":total": records.number(total), ":one": records.number(1)}
        usage_update = ("ADD inputTokens :in, outputTokens :out, cacheReadInputTokens :cread, "
                        "cacheWriteInputTokens :cwrite, totalTokens :total, chats :one")
        items = [
            {"Put": {
                "TableName": self._table,
                "Item": {"pk": {"S": key}, "sk": {"S": records.settled_sort_key(reservation.request_id)},
                         "inputTokens": counters[":in"], "outputTokens": counters[":out"],
                         "model": {"S": model}, "ttl": records.number(self._retention.hour_expiry(charged))},
                "ConditionExpression": "attribute_not_exists(pk)",
            }},
            {"Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": key}, "sk": {"S": records.hour_sort_key(charged)}},
                "UpdateExpression": "ADD tokens :delta, inputTokens :in, outputTokens :out, "
                                    "cacheReadInputTokens :cread, cacheWriteInputTokens :cwrite",
                "ExpressionAttributeValues": {":delta": records.number(delta), ":in": counters[":in"],
                                              ":out": counters[":out"], ":cread": counters[":cread"],
                                              ":cwrite": counters[":cwrite"]},
            }},
            {"Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": key}, "sk": {"S": records.day_sort_key(charged)}},
                "UpdateExpression": f"SET #day = :day, userSub = :sub, #ttl = :ttl {usage_update}",
                "ExpressionAttributeNames": {"#day": "day", "#ttl": "ttl"},
                "ExpressionAttributeValues": {**counters, ":day": {"S": records.day_name(charged)},
                                              ":sub": {"S": reservation.user_sub},
                                              ":ttl": records.number(self._retention.day_expiry(charged))},
            }},
            {"Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": key}, "sk": {"S": records.model_sort_key(charged, model)}},
                "UpdateExpression": f"SET model = :model, #ttl = :ttl {usage_update}",
                "ExpressionAttributeNames": {"#ttl": "ttl"},
                "ExpressionAttributeValues": {**counters, ":model": {"S": model},
                                              ":ttl": records.number(self._retention.day_expiry(charged))},
            }},
        ]
        already = False
        try:
            retry_conflicts(lambda: self._client.transact_write_items(TransactItems=items))
        except ClientError as error:
            reasons = cancellation_codes(error)
            if not (error_code(error) == "TransactionCanceledException" and reasons[:1] == ["ConditionalCheckFailed"]):
                raise
            already = True
            logger.info("reservation already settled", extra={"requestId": reservation.request_id})
        return Settlement(input_tokens=actual_input, output_tokens=actual_output, already_settled=already,
                          limits=reservation.limits.with_tokens_changed(0 if already else delta).at(now),
                          cache_read_input_tokens=cache_read, cache_write_input_tokens=cache_write)
