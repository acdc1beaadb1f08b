"""Budgets per user (tokens an hour, money a day and a month) and per group (a pooled monthly budget):
reserve the worst case before the model runs, settle to the truth after.

Each budget's counter holds settled usage plus open reservations, and a reservation is only
written if it keeps every counter within its budget, so no number of concurrent chats can take a
user (or a group) past any of them. Admission is ONE conditional write: an UpdateItem of the hour
record when only the token budget applies, else one TransactWriteItems of the hour record, the
user's month record (the day's and the month's money counters in one item) and each pool's month
record, after one BatchGetItem that learns the counters (so that `maxTokens` can be lowered to
fit, and the `ack` says what is left). Settlement replaces the reservation by the charge
(`Reservation.charge`: never more than was reserved) in one transaction that is idempotent per
request.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.aws.dynamo import cancellation_codes, error_code, get_many, retry_conflicts
from chalicelib.errors import BadRequest, BudgetExceeded, Internal
from chalicelib.limits import records
from chalicelib.limits.policy import UserLimits
from chalicelib.limits.pricing import Rates, reserved_input_tokens
from chalicelib.limits.rate import RateLimiter
from chalicelib.limits.reservation import Charge, Reservation
from chalicelib.limits.snapshot import USER, CostWindow, LimitsSnapshot, cost_windows
from chalicelib.models import ModelSpec
from chalicelib.tokens import token_bound

logger = logging.getLogger(__name__)

RESERVE_ATTEMPTS = 3  # each failed attempt learns the current counters, so this is plenty
MAX_MODEL_ID_LENGTH = 256
_NAMES = {"#ttl": "ttl", "#month": "month", "#entry": "entry", "#cost": records.MONTH_COST}


@dataclass(frozen=True)
class Pricing:
    """What a chat's model costs, for its reservation: its rates, and whether it may write or read the cache."""

    rates: Rates | None = None
    prompt_cache: bool = False

    @classmethod
    def of(cls, model: ModelSpec) -> Pricing:
        return cls(Rates.of(model.price), model.prompt_cache)


@dataclass(frozen=True)
class Settlement:
    charge: Charge
    already_settled: bool  # a retried settlement: nothing was counted again
    limits: LimitsSnapshot  # the admission snapshot plus this chat's own settlement

    def usage_wire(self) -> dict[str, Any]:
        """The `usage` object of the `done` frame."""
        return self.charge.usage_wire()


@dataclass(frozen=True)
class _Refusal:
    what: str  # "the hourly token budget", "the daily cost budget", ...
    reset_at: int


def fallback_usage(reservation: Reservation, generated_text: str, *, model_read: bool) -> tuple[int, int]:
    """(input, output) to charge when the stream ended without Bedrock's usage metadata.

    The input is what the model read, whatever came of the chat: the reservation's count (or bound) once
    Bedrock accepted the request, 0 if it never did. The output is the bound of what was read from the model
    (a token holds at least a byte): what was handed out, and a tool call too large for a frame; never more
    than the granted maxTokens: nothing generated is free, and the charge never passes the reservation.
    """
    output = min(reservation.max_tokens, token_bound(generated_text))
    return (reservation.input_tokens if model_read else 0), output


def budget_exceeded(now: float, refusals: list[_Refusal] | None = None) -> BudgetExceeded:
    refusals = refusals or [_Refusal("the hourly token budget", records.hour_start(now) + 3600)]
    retry_after = max(1, math.ceil(max(r.reset_at for r in refusals) - now))
    what = " and ".join(r.what for r in refusals)
    return BudgetExceeded(f"{what} cannot cover this request; retry in {retry_after} s", retry_after=retry_after)


def _window_name(window: CostWindow) -> str:
    period = "daily" if window.window == "day" else "monthly"
    if window.scope == USER:
        return f"the {period} cost budget"
    return f"the {period} cost budget of group {window.scope.split(':', 1)[1]!r}"


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

    # --- admission --------------------------------------------------------------------------

    def reserve(self, user_sub: str, now: float, *, groups: tuple[str, ...] = (), request_id: str,
                input_tokens: int, max_tokens: int, pricing: Pricing = Pricing()) -> Reservation:
        """Admit a chat (it counts as a request) and reserve its worst case against every budget, in ONE write.

        `input_tokens` is what the model may be charged for its input (Bedrock's count or an upper bound);
        `max_tokens` is lowered to what every budget can still cover when that is at least the floor
        (TOKEN_RESERVATION_FLOOR) or the request's own max_tokens; otherwise BudgetExceeded, whose
        retryAfter is when the last of the budgets that refused starts a new window. A full minute window
        raises RateLimited.
        """
        if not 1 <= len(request_id) <= 128:
            raise BadRequest("request id must be 1-128 characters")
        if input_tokens < 0 or max_tokens < 1:
            raise BadRequest("input tokens must be >= 0 and max tokens >= 1")
        limits = self._limits_for(groups)
        self._rate.check_memory(user_sub, now)
        held_input = reserved_input_tokens(pricing.rates, input_tokens, prompt_cache=pricing.prompt_cache)
        if limits.has_money:
            if pricing.rates is None:  # the settings refuse a money budget beside a model without a price
                raise Internal("a money budget applies, but the model has no price")
            return self._reserve_with_money(user_sub, now, limits, request_id=request_id, input_tokens=input_tokens,
                                            held_input=held_input, max_tokens=max_tokens, pricing=pricing)
        known_used = 0  # optimistic: a failed attempt tells the real counter
        for _ in range(RESERVE_ATTEMPTS):
            granted = min(max_tokens, limits.tokens_per_hour - known_used - held_input)
            if granted < min(max_tokens, self._floor) or granted < 1:
                logger.info("budget exceeded", extra={"sub": user_sub, "requestId": request_id,
                                                      "tokensUsed": known_used, "wanted": held_input + max_tokens})
                raise budget_exceeded(now)
            try:
                item = self._admit_and_reserve(user_sub, now, limits, held_input + granted)
            except ClientError as error:
                if error_code(error) != "ConditionalCheckFailedException":
                    raise
                old = error.response.get("Item")
                if records.read_number(old, records.minute_attribute(now)) >= limits.requests_per_minute:
                    raise self._rate.reject(user_sub, now) from None
                known_used = records.read_number(old, "tokens")
                continue
            return Reservation(user_sub=user_sub, request_id=request_id, hour_start=records.hour_start(now),
                               input_tokens=input_tokens, max_tokens=granted, reserved_tokens=held_input + granted,
                               rates=pricing.rates, groups=limits.groups,
                               limits=LimitsSnapshot.from_hour_record(item, limits, now))
        logger.warning("budget reservation kept conflicting", extra={"sub": user_sub, "requestId": request_id})
        raise budget_exceeded(now)

    def _admit_and_reserve(self, user_sub: str, now: float, limits: UserLimits, amount: int) -> dict[str, Any]:
        response = retry_conflicts(lambda: self._client.update_item(
            TableName=self._table, ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD",
            **self._hour_reservation(user_sub, now, limits, amount)))
        return response["Attributes"]

    def _hour_reservation(self, user_sub: str, now: float, limits: UserLimits, amount: int) -> dict[str, Any]:
        """The hour record's update: one more request in the minute (if it has room), `amount` more tokens (if the
        hour's budget covers them)."""
        return {
            "Key": {"pk": {"S": records.partition(user_sub)}, "sk": {"S": records.hour_sort_key(now)}},
            "UpdateExpression": "SET #ttl = :ttl ADD #minute :one, requests :one, tokens :amount",
            "ConditionExpression": "(attribute_not_exists(#minute) OR #minute < :requests) "
                                   "AND (attribute_not_exists(tokens) OR tokens <= :room)",
            "ExpressionAttributeNames": {"#minute": records.minute_attribute(now), "#ttl": "ttl"},
            "ExpressionAttributeValues": {":one": records.number(1), ":amount": records.number(amount),
                                          ":requests": records.number(limits.requests_per_minute),
                                          ":room": records.number(limits.tokens_per_hour - amount),
                                          ":ttl": records.number(self._retention.hour_expiry(now))},
        }

    def _reserve_with_money(self, user_sub: str, now: float, limits: UserLimits, *, request_id: str,
                            input_tokens: int, held_input: int, max_tokens: int, pricing: Pricing) -> Reservation:
        rates = pricing.rates
        assert rates is not None
        state = self._read_counters(user_sub, now, limits)
        for _ in range(RESERVE_ATTEMPTS):
            hour = state.get("hour")
            if records.read_number(hour, records.minute_attribute(now)) >= limits.requests_per_minute:
                raise self._rate.reject(user_sub, now)
            windows = cost_windows(limits, now, user_month=state.get("month"),
                                   pool_months={group: state.get(f"pool:{group}") for group, _ in limits.pools})
            token_room = limits.tokens_per_hour - records.read_number(hour, "tokens") - held_input
            rooms = [(token_room, _Refusal("the hourly token budget", records.hour_start(now) + 3600))]
            rooms += [(rates.output_tokens_within(w.limit - w.used, input_tokens=input_tokens,
                                                  prompt_cache=pricing.prompt_cache),
                       _Refusal(_window_name(w), w.reset_at)) for w in windows]
            granted = min([max_tokens, *(room for room, _ in rooms)])
            needed = max(1, min(max_tokens, self._floor))
            if granted < needed:
                refusals = [refusal for room, refusal in rooms if room < needed]
                logger.info("budget exceeded", extra={"sub": user_sub, "requestId": request_id,
                                                      "refusedBy": [r.what for r in refusals]})
                raise budget_exceeded(now, refusals)
            cost = rates.worst_cost_micros(input_tokens=input_tokens, max_tokens=granted,
                                           prompt_cache=pricing.prompt_cache)
            items = self._money_reservation(user_sub, now, limits, amount=held_input + granted, cost=cost,
                                            windows=windows)
            try:
                self._transact(items)
            except ClientError as error:
                if error_code(error) != "TransactionCanceledException" \
                        or "ConditionalCheckFailed" not in cancellation_codes(error):
                    raise
                state = _learned(state, error, [name for name, _ in self._money_keys(user_sub, now, limits)])
                continue
            snapshot = LimitsSnapshot.from_hour_record(hour, limits, now, cost=windows)
            snapshot = snapshot.with_tokens_changed(held_input + granted, cost)
            return Reservation(user_sub=user_sub, request_id=request_id, hour_start=records.hour_start(now),
                               input_tokens=input_tokens, max_tokens=granted, reserved_tokens=held_input + granted,
                               rates=rates, cost_micros=cost, pools=tuple(group for group, _ in limits.pools),
                               groups=limits.groups,
                               limits=_with_request(snapshot))
        logger.warning("budget reservation kept conflicting", extra={"sub": user_sub, "requestId": request_id})
        raise budget_exceeded(now)

    def _money_keys(self, user_sub: str, now: float, limits: UserLimits) -> list[tuple[str, dict[str, Any]]]:
        """The items a money reservation writes, named: the hour record, the user's month record, each pool's."""
        month = {"S": records.month_sort_key(now)}
        keys = [("hour", {"pk": {"S": records.partition(user_sub)}, "sk": {"S": records.hour_sort_key(now)}}),
                ("month", {"pk": {"S": records.partition(user_sub)}, "sk": month})]
        keys += [(f"pool:{group}", {"pk": {"S": records.group_partition(group)}, "sk": month})
                 for group, _ in limits.pools]
        return keys

    def _read_counters(self, user_sub: str, now: float, limits: UserLimits) -> dict[str, dict[str, Any] | None]:
        """The hour record, the user's month record and the pools' month records, in one consistent BatchGetItem."""
        return get_many(self._client, self._table, self._money_keys(user_sub, now, limits))

    def _money_reservation(self, user_sub: str, now: float, limits: UserLimits, *, amount: int, cost: int,
                           windows: tuple[CostWindow, ...]) -> list[dict[str, Any]]:
        keys = dict(self._money_keys(user_sub, now, limits))
        ttl, month = records.number(self._retention.month_expiry(now)), {"S": records.month_name(now)}
        conditions: list[str] = []
        values: dict[str, Any] = {":cost": records.number(cost), ":ttl": ttl, ":month": month,
                                  ":entry": {"S": records.user_entry(user_sub)}, ":sub": {"S": user_sub}}
        for window in windows:
            if window.scope != USER:
                continue
            name = "#dayCost" if window.window == "day" else "#cost"
            conditions.append(f"(attribute_not_exists({name}) OR {name} <= :{name[1:]}Room)")
            values[f":{name[1:]}Room"] = records.number(window.limit - cost)
        user_month: dict[str, Any] = {
            "TableName": self._table, "Key": keys["month"],
            "UpdateExpression": "SET #ttl = :ttl, #month = :month, #entry = :entry, userSub = :sub "
                                "ADD #cost :cost, #dayCost :cost",
            "ExpressionAttributeNames": {**_NAMES, "#dayCost": records.day_cost_attribute(now)},
            "ExpressionAttributeValues": values, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        if conditions:
            user_month["ConditionExpression"] = " AND ".join(conditions)
        items = [{"Update": {"TableName": self._table, "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                             **self._hour_reservation(user_sub, now, limits, amount)}},
                 {"Update": user_month}]
        for group, limit in limits.pools:
            items.append({"Update": {
                "TableName": self._table, "Key": keys[f"pool:{group}"],
                "UpdateExpression": "SET #ttl = :ttl, #month = :month, #entry = :entry, #group = :group "
                                    "ADD #cost :cost",
                "ConditionExpression": "attribute_not_exists(#cost) OR #cost <= :room",
                "ExpressionAttributeNames": {**_NAMES, "#group": "group"},
                "ExpressionAttributeValues": {":cost": records.number(cost), ":ttl": ttl, ":month": month,
                                              ":entry": {"S": records.group_entry(group)}, ":group": {"S": group},
                                              ":room": records.number(limit - cost)},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}})
        return items

    def _transact(self, items: list[dict[str, Any]]) -> None:
        retry_conflicts(lambda: self._client.transact_write_items(TransactItems=items))

    # --- settlement -------------------------------------------------------------------------

    def release(self, reservation: Reservation, model: str, *, now: float | None = None) -> Settlement:
        """Settle a chat that never reached the model to nothing."""
        return self.settle(reservation, reservation.charge(0, 0), model, now=now)

    def settle(self, reservation: Reservation, charge: Charge, model: str, *, now: float | None = None) -> Settlement:
        """Replace the reservation by the charge: marker, hour, day, model, month and group records in ONE transaction.

        `charge` is `reservation.charge(...)` of what the model reported (never more than was reserved).
        Idempotent per request: the transaction also creates the request's settled marker, on condition that
        it does not exist, so a retry counts nothing twice.
        """
        now = self._clock() if now is None else now
        charged = reservation.hour_start  # the hour, day and month the chat was admitted in
        key = records.partition(reservation.user_sub)
        model = model[:MAX_MODEL_ID_LENGTH] or "unknown"
        cost = charge.cost_micros or 0
        delta = charge.budget_tokens - reservation.reserved
        held_delta = cost - reservation.cost_micros  # for the counters that held the reserved cost
        counters = {":in": records.number(charge.input_tokens), ":out": records.number(charge.output_tokens),
                    ":cread": records.number(charge.cache_read_input_tokens),
                    ":cwrite": records.number(charge.cache_write_input_tokens),
                    ":total": records.number(charge.total_tokens), ":one": records.number(1),
                    ":costMicros": records.number(cost), ":ttl": records.number(self._retention.day_expiry(charged)),
                    ":month": {"S": records.month_name(charged)}}
        usage_update = ("ADD inputTokens :in, outputTokens :out, cacheReadInputTokens :cread, "
                        "cacheWriteInputTokens :cwrite, totalTokens :total, chats :one, costMicros :costMicros")
        names = {"#ttl": "ttl", "#month": "month", "#entry": "entry"}
        sub = {"S": reservation.user_sub}
        month_ttl = records.number(self._retention.month_expiry(charged))
        items: list[dict[str, Any]] = [
            {"Put": {
                "TableName": self._table,
                "Item": {"pk": {"S": key}, "sk": {"S": records.settled_sort_key(reservation.request_id)},
                         "inputTokens": counters[":in"], "outputTokens": counters[":out"],
                         "cacheReadInputTokens": counters[":cread"], "cacheWriteInputTokens": counters[":cwrite"],
                         "costMicros": counters[":costMicros"], "model": {"S": model},
                         "ttl": records.number(self._retention.hour_expiry(charged))},
                "ConditionExpression": "attribute_not_exists(pk)",
            }},
            {"Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": key}, "sk": {"S": records.hour_sort_key(charged)}},
                "UpdateExpression": "ADD tokens :delta, inputTokens :in, outputTokens :out, cacheReadInputTokens "
                                    ":cread, cacheWriteInputTokens :cwrite, costMicros :costMicros",
                "ExpressionAttributeValues": {":delta": records.number(delta), ":in": counters[":in"],
                                              ":out": counters[":out"], ":cread": counters[":cread"],
                                              ":cwrite": counters[":cwrite"], ":costMicros": counters[":costMicros"]},
            }},
            {"Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": key}, "sk": {"S": records.day_sort_key(charged)}},
                "UpdateExpression": f"SET #day = :day, userSub = :sub, #ttl = :ttl, #month = :month, "
                                    f"#entry = :entry {usage_update}",
                "ExpressionAttributeNames": {**names, "#day": "day"},
                "ExpressionAttributeValues": {**counters, ":day": {"S": records.day_name(charged)}, ":sub": sub,
                                              ":entry": {"S": records.day_entry(charged, reservation.user_sub)}},
            }},
            {"Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": key}, "sk": {"S": records.model_sort_key(charged, model)}},
                "UpdateExpression": f"SET model = :model, userSub = :sub, #ttl = :ttl, #month = :month, "
                                    f"#entry = :entry {usage_update}",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {**counters, ":model": {"S": model}, ":sub": sub, ":entry": {
                    "S": records.model_entry(charged, model, reservation.user_sub)}},
            }},
            {"Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": key}, "sk": {"S": records.month_sort_key(charged)}},
                "UpdateExpression": f"SET userSub = :sub, #ttl = :ttl, #month = :month, #entry = :entry "
                                    f"{usage_update}, #cost :held, #dayCost :held",
                "ExpressionAttributeNames": {**names, "#cost": records.MONTH_COST,
                                             "#dayCost": records.day_cost_attribute(charged)},
                "ExpressionAttributeValues": {**counters, ":ttl": month_ttl, ":sub": sub,
                                              ":held": records.number(held_delta),
                                              ":entry": {"S": records.user_entry(reservation.user_sub)}},
            }},
        ]
        for group in reservation.groups:
            pooled = group in reservation.pools
            items.append({"Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": records.group_partition(group)}, "sk": {"S": records.month_sort_key(charged)}},
                "UpdateExpression": f"SET #group = :group, #ttl = :ttl, #month = :month, #entry = :entry "
                                    f"{usage_update}, #cost :held",
                "ExpressionAttributeNames": {**names, "#cost": records.MONTH_COST, "#group": "group"},
                "ExpressionAttributeValues": {**counters, ":ttl": month_ttl, ":group": {"S": group},
                                              ":held": records.number(held_delta if pooled else cost),
                                              ":entry": {"S": records.group_entry(group)}},
            }})
        already = False
        try:
            self._transact(items)
        except ClientError as error:
            reasons = cancellation_codes(error)
            if not (error_code(error) == "TransactionCanceledException" and reasons[:1] == ["ConditionalCheckFailed"]):
                raise
            already = True
            logger.info("reservation already settled", extra={"requestId": reservation.request_id})
        limits = reservation.limits if already else reservation.limits.with_tokens_changed(delta, held_delta)
        return Settlement(charge=charge, already_settled=already, limits=limits.at(now))


def _with_request(snapshot: LimitsSnapshot) -> LimitsSnapshot:
    """The snapshot read before the admission, with the admitted request counted in its minute."""
    return replace(snapshot, requests_used=snapshot.requests_used + 1)


def _learned(state: dict[str, dict[str, Any] | None], error: ClientError,
             names: list[str]) -> dict[str, dict[str, Any] | None]:
    """The counters a cancelled reservation learned: each item whose condition failed, as it was (ALL_OLD)."""
    learned = dict(state)
    for name, reason in zip(names, error.response.get("CancellationReasons", []), strict=False):
        if reason.get("Code") == "ConditionalCheckFailed":
            learned[name] = reason.get("Item")
    return learned
