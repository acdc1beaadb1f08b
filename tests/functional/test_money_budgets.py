"""Money budgets against moto: a user's daily and monthly budget and a group's pooled one, reserved in one
transaction after one read, refused with the window's retryAfter, lowered to fit, settled in one transaction,
and never outrun by concurrent chats, of one user or of a group's members."""
from __future__ import annotations

import json
import uuid

import pytest

from chalicelib.config import load_settings
from chalicelib.errors import BudgetExceeded, RateLimited
from chalicelib.limits import LimitedMemory, Pricing, RateLimiter, Reservation, TokenBudget, limits_for, records
from chalicelib.limits.pricing import Rates
from chalicelib.limits.usage import UsageReport
from chalicelib.models import ModelPrice
from tests.functional.test_limits import BASE, T0, crowd, user

SONNET = Pricing(Rates.of(ModelPrice(3.0, 15.0, 0.3, 3.75)), prompt_cache=True)  # 3.75 $/M for a cache write
HAIKU = Pricing(Rates.of(ModelPrice(0.25, 1.25, 0.25, 0.25)), prompt_cache=False)


class Money:
    """The budgets as the app builds them, with money budgets in the settings."""

    def __init__(self, dynamodb, table_name, **env):
        self.settings = load_settings({**BASE, "TOKEN_BUDGET_PER_HOUR": "100000000",
                                       **{k: str(v) for k, v in env.items()}})
        retention = records.Retention(hourly_seconds=48 * 3600, daily_seconds=400 * 86400)
        policy = lambda groups: limits_for(groups, self.settings)
        self.rate = RateLimiter(dynamodb, table_name, limits_for=policy, retention=retention, memory=LimitedMemory())
        self.budget = TokenBudget(dynamodb, table_name, rate_limiter=self.rate, limits_for=policy,
                                  retention=retention, floor=self.settings.token_reservation_floor, clock=lambda: T0)
        self.usage = UsageReport(dynamodb, table_name, limits_for=policy)
        self.dynamodb, self.table_name = dynamodb, table_name

    def item(self, pk, sk):
        return self.dynamodb.get_item(TableName=self.table_name, ConsistentRead=True,
                                      Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item", {})

    def month(self, sub):
        return self.item(records.partition(sub), records.month_sort_key(T0))

    def pool(self, group):
        return self.item(records.group_partition(group), records.month_sort_key(T0))

    def reserve(self, sub, request_id, *, input_tokens=10_000, max_tokens=1000, groups=(), pricing=SONNET, now=T0):
        return self.budget.reserve(sub, now, groups=groups, request_id=request_id, input_tokens=input_tokens,
                                   max_tokens=max_tokens, pricing=pricing)


def calls_of(dynamodb):
    seen: list[str] = []
    dynamodb.meta.events.register("before-call.dynamodb", lambda model, **_: seen.append(model.name),
                                  unique_id="money-calls")
    return seen


def test_a_money_reservation_is_one_read_and_one_transaction_and_holds_the_worst_case(dynamodb, table_name):
    money, sub = Money(dynamodb, table_name, COST_BUDGET_USD_PER_DAY=1, COST_BUDGET_USD_PER_MONTH=20), user()
    seen = calls_of(dynamodb)
    try:
        held = money.reserve(sub, "m1")
        assert seen == ["BatchGetItem", "TransactWriteItems"]
        seen.clear()
        money.budget.settle(held, held.charge(2000, 300, cache_read=6000, cache_write=2000), "m")
        assert seen == ["TransactWriteItems"]
    finally:
        dynamodb.meta.events.unregister("before-call.dynamodb", unique_id="money-calls")
    # Worst case: 10,000 input at the cache-write price (3.75 $/M) and 1,000 output at 15 $/M.
    assert held.cost_micros == 37_500 + 15_000
    assert held.limits.to_wire()["cost"] == {"limit": 1.0, "remaining": 1.0 - 0.0525,
                                             "resetAt": records.day_start(T0) + 86400, "window": "day"}
    month = money.month(sub)
    # Settled: 2,000 x 3 + 300 x 15 + 6,000 x 0.3 + 2,000 x 3.75 = 19,800 micro-dollars, in the day and the month.
    assert records.read_number(month, "costMicros") == 19_800 == records.read_number(month, records.MONTH_COST)
    assert records.read_number(month, records.day_cost_attribute(T0)) == 19_800
    assert records.read_number(month, "chats") == 1 and month["month"] == {"S": records.month_name(T0)}
    assert records.read_number(money.item(records.partition(sub), records.hour_sort_key(T0)), "costMicros") == 19_800


@pytest.mark.parametrize("env, window, resets", [
    ({"COST_BUDGET_USD_PER_DAY": "0.1"}, "daily", records.day_start(T0) + 86400),
    ({"COST_BUDGET_USD_PER_MONTH": "0.1"}, "monthly", records.next_month_start(T0)),
])
def test_a_worst_case_the_budget_cannot_cover_is_lowered_then_refused_until_its_window_ends(dynamodb, table_name, env,
                                                                                            window, resets):
    money, sub = Money(dynamodb, table_name, **env), user()
    # 20,000 input at 3.75 $/M (75,000 micro-dollars) leaves 25,000 of the 100,000 for output: 1,666 tokens at 15 $/M.
    first = money.reserve(sub, "a", input_tokens=20_000, max_tokens=2000)
    assert first.max_tokens == 1666 and first.cost_micros == 75_000 + 24_990
    with pytest.raises(BudgetExceeded) as refused:
        money.reserve(sub, "b", input_tokens=10, max_tokens=2000)
    assert refused.value.retry_after == resets - T0 and f"the {window} cost budget" in refused.value.message


def test_max_tokens_is_lowered_to_the_money_left_then_the_chat_is_refused_until_the_window_ends(dynamodb, table_name):
    money, sub = Money(dynamodb, table_name, COST_BUDGET_USD_PER_DAY="0.1"), user()
    first = money.reserve(sub, "a", input_tokens=10_000, max_tokens=2000)  # 37,500 + 30,000
    assert first.max_tokens == 2000 and first.cost_micros == 67_500
    lowered = money.reserve(sub, "b", input_tokens=4000, max_tokens=2000)  # 15,000 in: 17,500 left for output
    assert lowered.max_tokens == 1166 and lowered.cost_micros == 15_000 + 17_490
    assert lowered.limits.to_wire()["cost"]["remaining"] == pytest.approx(0.00001)
    with pytest.raises(BudgetExceeded) as refused:
        money.reserve(sub, "c", input_tokens=10, max_tokens=2000)
    assert refused.value.retry_after == records.day_start(T0) + 86400 - T0
    assert "the daily cost budget" in refused.value.message
    money.budget.release(lowered, "m")  # gives its 32,490 back
    assert money.reserve(sub, "d", input_tokens=10, max_tokens=2000).max_tokens == 2000


def test_a_refusal_by_several_budgets_waits_for_the_last_to_reset(dynamodb, table_name):
    money, sub = Money(dynamodb, table_name, COST_BUDGET_USD_PER_DAY="0.05", COST_BUDGET_USD_PER_MONTH="0.05"), user()
    money.reserve(sub, "a", input_tokens=10_000, max_tokens=500)  # 37,500 + 7,500
    with pytest.raises(BudgetExceeded) as refused:
        money.reserve(sub, "b", input_tokens=10_000, max_tokens=500)
    assert refused.value.retry_after == records.next_month_start(T0) - T0
    assert "daily" in refused.value.message and "monthly" in refused.value.message


def test_a_full_minute_is_rate_limited_before_any_money_is_written(dynamodb, table_name):
    money, sub = Money(dynamodb, table_name, COST_BUDGET_USD_PER_DAY=1, RATE_LIMIT_REQUESTS_PER_MINUTE=1), user()
    money.reserve(sub, "a", input_tokens=100, max_tokens=100)
    before = money.month(sub)
    with pytest.raises(RateLimited):
        money.reserve(sub, "b", input_tokens=100, max_tokens=100)
    assert money.month(sub) == before


def test_concurrent_chats_never_take_a_user_past_a_money_budget(dynamodb, table_name):
    money, sub = Money(dynamodb, table_name, COST_BUDGET_USD_PER_DAY="0.5", TOKEN_RESERVATION_FLOOR=100), user()
    # 8 chats of 20,000 input (75,000) and up to 10,000 output (150,000): 3 fit at their worst case.
    outcomes = crowd(8, lambda i: money.reserve(sub, f"c{i}", input_tokens=20_000, max_tokens=10_000))
    held = [o for o in outcomes if isinstance(o, Reservation)]
    assert all(isinstance(o, (Reservation, BudgetExceeded)) for o in outcomes), outcomes
    assert len(held) == 2  # 225,000 each: a third would pass 500,000 with its input alone
    month = money.month(sub)
    assert records.read_number(month, records.day_cost_attribute(T0)) == sum(r.cost_micros for r in held) <= 500_000
    # Each settles to the most its model could have read and written: the day's counter stays within the budget.
    crowd(len(held), lambda i: money.budget.settle(held[i], held[i].charge(0, held[i].max_tokens,
                                                                         cache_write=20_000), "m"))
    settled = money.month(sub)
    assert records.read_number(settled, records.day_cost_attribute(T0)) <= 500_000
    assert records.read_number(settled, "costMicros") == records.read_number(settled, records.MONTH_COST)


def test_a_pooled_group_budget_is_shared_by_its_members_and_never_outrun(dynamodb, table_name):
    team = f"team-{uuid.uuid4().hex[:8]}"
    money = Money(dynamodb, table_name, LIMITS_BY_GROUP=json.dumps({team: {"pooledCostUsdPerMonth": 0.3}}),
                  TOKEN_RESERVATION_FLOOR=100)
    alice, bob = user(), user()
    # Each chat's worst case: 10,000 x 0.25 + 20,000 x 1.25 = 27,500; the pool of 300,000 holds 10 of 16, and an
    # eleventh whose output is lowered to what is left.
    outcomes = crowd(16, lambda i: money.reserve(alice if i % 2 else bob, f"p{i}", input_tokens=10_000,
                                                 max_tokens=20_000, groups=(team,), pricing=HAIKU))
    held = [o for o in outcomes if isinstance(o, Reservation)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    assert len(held) + len(refused) == 16 and 10 <= len(held) <= 11
    assert {r.user_sub for r in held} == {alice, bob}
    assert all(f"group {team!r}" in r.message for r in refused)
    assert records.read_number(money.pool(team), records.MONTH_COST) == sum(r.cost_micros for r in held) <= 300_000
    crowd(len(held), lambda i: money.budget.settle(held[i], held[i].charge(10_000, 5000), "m"))
    pool = money.pool(team)
    assert records.read_number(pool, records.MONTH_COST) == len(held) * (2500 + 6250) <= 300_000
    assert records.read_number(pool, "costMicros") == len(held) * 8750
    assert records.read_number(pool, "chats") == len(held)
    assert pool["entry"] == {"S": records.group_entry(team)} and pool["group"] == {"S": team}
    # Another member of the group, a new user with no spending of their own, finds the pool's remainder.
    newcomer = money.reserve(user(), "late", input_tokens=10_000, max_tokens=20_000, groups=(team,), pricing=HAIKU)
    assert newcomer.limits.to_wire()["cost"]["window"] == "month"
    assert newcomer.limits.to_wire()["cost"]["remaining"] == pytest.approx(
        (300_000 - len(held) * 8750 - newcomer.cost_micros) / 1e6)


def test_usage_get_shows_cost_and_the_tightest_money_budget(dynamodb, table_name):
    team = f"team-{uuid.uuid4().hex[:8]}"
    money, sub = Money(dynamodb, table_name, COST_BUDGET_USD_PER_MONTH=5,
                       LIMITS_BY_GROUP=json.dumps({team: {"pooledCostUsdPerMonth": 1}})), user()
    held = money.reserve(sub, "u1", groups=(team,), input_tokens=1000, max_tokens=100)
    money.budget.settle(held, held.charge(1000, 100, cache_read=0), "m")  # 3,000 + 1,500 micro-dollars
    report = money.usage.report(sub, T0 + 1, groups=(team,))
    assert report["usage"]["hour"]["costUsd"] == report["usage"]["day"]["costUsd"] == 0.0045
    assert report["limits"]["cost"] == {"limit": 1.0, "remaining": 1.0 - 0.0045,
                                        "resetAt": records.next_month_start(T0), "window": "month"}
