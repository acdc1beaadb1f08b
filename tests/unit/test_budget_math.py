"""The arithmetic of budgets, pure: prices in integers, what a chat is charged, the input bound against the
emulator's tokenizer, the `Limits` object's money budget, the settings that configure them."""
from __future__ import annotations

import json
import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.chat.input_bound import IMAGE_TOKENS, TOOL_PROMPT, history_bound, input_bound
from chalicelib.config import ConfigError, load_settings
from chalicelib.limits import UserLimits, limits_for, records
from chalicelib.limits.pricing import Rates, budget_tokens, reserved_input_tokens, usd_to_micros
from chalicelib.limits.reservation import Reservation
from chalicelib.limits.snapshot import CostWindow, LimitsSnapshot, cost_windows
from chalicelib.models import ModelPrice, builtin
from chalicelib.tokens import estimate_tokens, token_bound
from devserver.bedrock_model import read_request
from devserver.tokenizer import count_tokens

BASE = {"COGNITO_USER_POOL_ID": "eu-west-1_AbC123", "COGNITO_APP_CLIENT_IDS": "c"}


def rates_of(price: ModelPrice) -> Rates:
    rates = Rates.of(price)
    assert rates is not None
    return rates


HAIKU_35 = rates_of(ModelPrice(0.8, 4.0, 0.08, 1.0))  # Claude 3.5 Haiku on Bedrock, USD per million tokens
SONNET_4 = rates_of(ModelPrice(3.0, 15.0, 0.3, 3.75))
T = 1_800_000_000  # 2027-01-15T08:00:00Z


def snapshot(cost=()) -> LimitsSnapshot:
    return LimitsSnapshot(requests_limit=100, requests_used=1, minute_start=T, tokens_limit=10_000, tokens_used=0,
                          hour_start=T, taken_at=T, cost=cost)


def reservation(**fields) -> Reservation:
    return Reservation(**{"user_sub": "u", "request_id": "r", "hour_start": T, "input_tokens": 20_000,
                          "max_tokens": 1000, "limits": snapshot(), "rates": HAIKU_35, **fields})


# --- prices and costs ----------------------------------------------------------------------------------------


def test_rates_are_exact_pico_dollars_per_token():
    assert Rates(input=800_000, output=4_000_000, cache_read=80_000, cache_write=1_000_000) == HAIKU_35
    assert Rates.of(ModelPrice(0.035, 0.14, 0.00875, 0.035)) == Rates(35_000, 140_000, 8_750, 35_000)  # Nova Micro
    assert Rates.of(None) is None


def test_a_chats_cost_is_the_hand_computed_figure_rounded_up_to_the_micro_dollar():
    # 1,001 in at $0.80/M, 333 out at $4/M, 12,345 cache reads at $0.08/M, 2,222 cache writes at $1/M:
    # 800.8 + 1,332 + 987.6 + 2,222 = 5,342.4 micro-dollars, charged 5,343 ($0.005343).
    hand = (Decimal(1001) * Decimal("0.8") + 333 * 4 + Decimal(12345) * Decimal("0.08") + 2222 * 1)
    assert hand == Decimal("5342.4")
    assert HAIKU_35.cost_micros(input_tokens=1001, output_tokens=333, cache_read=12345, cache_write=2222) == 5343
    charge = reservation().charge(1001, 333, cache_read=12345, cache_write=2222)
    assert charge.cost_micros == 5343 and charge.usage_wire()["costUsd"] == 0.005343
    assert HAIKU_35.cost_micros(input_tokens=1, output_tokens=0) == 1  # anything read costs something
    assert HAIKU_35.cost_micros(input_tokens=0, output_tokens=0) == 0


@given(st.lists(st.tuples(*[st.integers(0, 200_000)] * 4), min_size=1, max_size=30))
@settings(max_examples=50, deadline=None)
def test_costs_in_micro_dollars_sum_exactly_and_never_below_the_true_figure(chats):
    costs = [SONNET_4.cost_micros(input_tokens=a, output_tokens=b, cache_read=c, cache_write=d) for a, b, c, d in chats]
    exact = [Decimal(a) * 3 + Decimal(b) * 15 + Decimal(c) * Decimal("0.3") + Decimal(d) * Decimal("3.75")
             for a, b, c, d in chats]
    assert all(cost == math.ceil(true) for cost, true in zip(costs, exact, strict=True))
    assert sum(costs) - sum(exact) < len(chats)  # at most a micro-dollar a chat above the truth


def test_the_worst_case_prices_every_input_token_at_the_highest_price_it_can_be_charged():
    # A cache write costs 1.25 times the input: the reservation prices the input at it.
    assert SONNET_4.worst_input(prompt_cache=True) == SONNET_4.cache_write == 3_750_000
    assert SONNET_4.worst_input(prompt_cache=False) == SONNET_4.input
    worst = SONNET_4.worst_cost_micros(input_tokens=10_000, max_tokens=1000, prompt_cache=True)
    assert worst == 10_000 * 3.75 + 1000 * 15
    for split in ((10_000, 0, 0), (0, 10_000, 0), (0, 0, 10_000), (3000, 3000, 4000)):
        plain, read, write = split
        assert SONNET_4.cost_micros(input_tokens=plain, output_tokens=1000, cache_read=read, cache_write=write) <= worst
    # The output that fits a budget, with the input at its worst.
    assert SONNET_4.output_tokens_within(worst, input_tokens=10_000, prompt_cache=True) == 1000
    assert SONNET_4.output_tokens_within(37_499, input_tokens=10_000, prompt_cache=True) == -1  # not even the input


def test_the_token_budget_counts_cache_reads_at_their_price_ratio():
    assert budget_tokens(SONNET_4, input_tokens=10, output_tokens=20, cache_read=5000, cache_write=900) == 1430
    assert budget_tokens(SONNET_4, input_tokens=0, output_tokens=0, cache_read=1, cache_write=0) == 1  # rounded up
    assert budget_tokens(None, input_tokens=10, output_tokens=20, cache_read=5000, cache_write=900) == 5930
    assert reserved_input_tokens(SONNET_4, 1000, prompt_cache=True) == 1000
    pricey_reads = Rates(1_000_000, 1_000_000, 2_000_000, 1_000_000)  # a table may price reads above input
    assert reserved_input_tokens(pricey_reads, 1000, prompt_cache=True) == 2000


def test_a_charge_never_passes_the_reservation_and_says_what_it_left_out():
    charge = reservation(input_tokens=100, max_tokens=50).charge(60, 80, cache_read=30, cache_write=25)
    # 115 input reported: 15 cut from the cache reads first; 80 output reported, 50 granted.
    assert (charge.input_tokens, charge.cache_write_input_tokens, charge.cache_read_input_tokens) == (60, 25, 15)
    assert charge.output_tokens == 50 and (charge.uncovered_input_tokens, charge.uncovered_output_tokens) == (15, 30)
    assert charge.total_tokens == 150 and charge.budget_tokens <= 150
    within = reservation().charge(300, 40, cache_read=2000, cache_write=100)
    assert within.uncovered_input_tokens == within.uncovered_output_tokens == 0
    assert within.usage_wire() == {"inputTokens": 300, "outputTokens": 40, "totalTokens": 2440,
                                   "cacheReadInputTokens": 2000, "cacheWriteInputTokens": 100, "costUsd": 0.00066}
    assert "costUsd" not in reservation(rates=None).charge(1, 1).usage_wire()  # a model without a price


def test_a_reservation_round_trips_through_the_workers_event():
    held = reservation(cost_micros=42, pools=("team",), groups=("team", "power"), reserved_tokens=25_000,
                       limits=snapshot((CostWindow("user", "day", 5_000_000, 42, T - T % 86400),)))
    assert Reservation.from_dict(json.loads(json.dumps(held.to_dict()))) == held
    assert held.reserved == 25_000 and reservation().reserved == 21_000


# --- the input bound against a tokenizer ---------------------------------------------------------------------


@given(st.text(max_size=400))
@settings(max_examples=200, deadline=None)
def test_no_text_has_more_tokens_than_bytes(text):
    assert count_tokens(text) <= token_bound(text)


@given(st.lists(st.text(min_size=1, max_size=200).filter(str.strip), min_size=1, max_size=6),
       st.text(max_size=80).filter(str.strip), st.booleans())
@settings(max_examples=80, deadline=None)
def test_the_bound_covers_the_emulators_count_of_any_conversation(texts, system, tools):
    messages = [{"role": "user" if n % 2 == 0 else "assistant", "content": [{"text": text}]}
                for n, text in enumerate(texts)]
    if len(messages) % 2 == 0:
        messages.append({"role": "user", "content": [{"text": "and?"}]})
    request: dict = {"messages": messages, "system": [{"text": system}]}
    if tools:
        request["toolConfig"] = {"tools": [{"toolSpec": {"name": "ls", "description": "list, files; dirs!",
                                                         "inputSchema": {"json": {"type": "object"}}}}]}
    assert read_request("anthropic.claude-3-haiku-20240307-v1:0", request).tokens <= input_bound(request)


def test_token_dense_text_is_where_four_bytes_a_token_fell_short():
    dense = "a,b;c!" * 100 + "漢字テスト😀" * 50
    assert count_tokens(dense) > 2 * estimate_tokens(dense)  # the old reservation's measure
    assert count_tokens(dense) <= token_bound(dense)


def test_the_bound_counts_the_structure_around_the_text():
    one = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    image = {"image": {"format": "png", "source": {"bytes": b"\x89PNG..."}}}
    with_image = {"messages": [{"role": "user", "content": [image, {"text": "hi"}]}]}
    assert input_bound(with_image) - input_bound(one) >= IMAGE_TOKENS
    tools = {**one, "toolConfig": {"tools": [{"toolSpec": {"name": "ls", "inputSchema": {"json": {}}}}]}}
    assert input_bound(tools) - input_bound(one) > TOOL_PROMPT
    cached = {"messages": [{"role": "user", "content": [{"text": "hi"}, {"cachePoint": {"type": "default"}}]}]}
    assert input_bound(cached) == input_bound(one)  # a cache point reads nothing
    assert history_bound(100, 4) >= 4 * 100 + 4  # the history's bytes, and a message's wrapping each


# --- the Limits object's money budget --------------------------------------------------------------------------


def test_limits_cost_shows_the_budget_with_least_remaining_and_when_it_resets():
    day = records.day_start(T)
    windows = (CostWindow("user", "day", 5_000_000, 4_000_000, day),
               CostWindow("user", "month", 100_000_000, 10_000_000, records.month_start(T)),
               CostWindow("group:team", "month", 50_000_000, 49_500_000, records.month_start(T)))
    wire = snapshot(windows).to_wire()
    assert wire["cost"] == {"limit": 50.0, "remaining": 0.5, "resetAt": records.next_month_start(T), "window": "month"}
    assert "cost" not in snapshot().to_wire()  # none configured
    # A day later the day's window starts empty; the month's do not.
    later = snapshot(windows).at(T + 86400)
    assert [w.used for w in later.cost] == [0, 10_000_000, 49_500_000]
    assert records.next_month_start(records.month_start(T) + 31 * 86400 - 1) == records.month_start(T) + 31 * 86400


def test_cost_windows_read_the_month_records_counters():
    limits = UserLimits(100, 10_000, cost_per_day=2_000_000, cost_per_month=None, pools=(("team", 9_000_000),))
    month = {records.day_cost_attribute(T): {"N": "150"}, records.MONTH_COST: {"N": "900"}}
    windows = cost_windows(limits, T, user_month=month, pool_months={"team": {records.MONTH_COST: {"N": "7"}}})
    assert [(w.scope, w.window, w.limit, w.used) for w in windows] == [
        ("user", "day", 2_000_000, 150), ("group:team", "month", 9_000_000, 7)]


# --- the settings ------------------------------------------------------------------------------------------------


def test_money_budgets_are_read_in_micro_dollars_and_groups_override_or_pool_them():
    groups = {"power": {"costUsdPerDay": 20, "costUsdPerMonth": 250.5}, "trial": {"costUsdPerDay": 0.25},
              "team-a": {"pooledCostUsdPerMonth": 1000}, "team-b": {"pooledCostUsdPerMonth": 0.000001}}
    loaded = load_settings({**BASE, "COST_BUDGET_USD_PER_DAY": "5", "COST_BUDGET_USD_PER_MONTH": "50.123456",
                            "LIMITS_BY_GROUP": json.dumps(groups)})
    assert (loaded.cost_budget_per_day, loaded.cost_budget_per_month) == (5_000_000, 50_123_456)
    member = limits_for(("trial", "power", "team-b", "team-a", "other"), loaded)
    assert (member.cost_per_day, member.cost_per_month) == (20_000_000, 250_500_000)  # the most generous
    assert member.pools == (("team-a", 1_000_000_000), ("team-b", 1)) and member.has_money
    assert member.groups == ("power", "team-a", "team-b", "trial")  # their usage is recorded per group
    assert limits_for((), loaded).cost_per_day == 5_000_000
    none = limits_for((), load_settings(BASE))
    assert not none.has_money and none.cost_per_day is None and none.pools == ()
    assert usd_to_micros(0.1) == 100_000


@pytest.mark.parametrize("env, words", [
    ({"COST_BUDGET_USD_PER_DAY": "0"}, "COST_BUDGET_USD_PER_DAY must be a number of USD above 0"),
    ({"COST_BUDGET_USD_PER_DAY": "ten"}, "COST_BUDGET_USD_PER_DAY='ten' is not a number"),
    ({"COST_BUDGET_USD_PER_MONTH": "0.0000001"}, "COST_BUDGET_USD_PER_MONTH has more than six decimals"),
    ({"LIMITS_BY_GROUP": '{"t": {"pooledCostUsdPerMonth": "5"}}'}, "LIMITS_BY_GROUP: 't'.pooledCostUsdPerMonth"),
    ({"LIMITS_BY_GROUP": '{"t": {"costUsdPerWeek": 5}}'}, "unknown limit 'costUsdPerWeek'"),
    ({"LIMITS_BY_GROUP": json.dumps({f"g{n}": {"tokensPerHour": 1} for n in range(91)})}, "at most 90"),
    ({"COST_BUDGET_USD_PER_DAY": "5", "ALLOWED_MODELS": "acme.model-v1:0",
      "MODELS": '{"acme.model-v1:0": {"name": "Acme", "maxOutputTokens": 100, "contextTokens": 1000, "tools": false,'
                ' "images": false, "promptCache": false, "minCacheTokens": 1, "countTokens": false, "aliases": [],'
                ' "price": null}}'}, "COST_BUDGET_USD_PER_DAY set a money budget, but MODELS gives no price"),
    ({"MODELS": '{"anthropic.claude-3-haiku-20240307-v1:0": {"price": {"input": 0.0000001, "output": 1, '
                '"cacheRead": 1, "cacheWrite": 1}}}'}, "at most six decimals"),
])
def test_bad_money_settings_name_the_variable(env, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_settings({**BASE, **env})


def test_every_built_in_price_is_a_whole_number_of_pico_dollars():
    for model_id in ("anthropic.claude-sonnet-4-20250514-v1:0", "amazon.nova-micro-v1:0",
                     "anthropic.claude-3-5-haiku-20241022-v1:0"):
        spec = builtin(model_id)
        assert spec is not None and spec.price is not None
        rates = Rates.of(spec.price)
        assert rates is not None and rates.input * 10**-6 == pytest.approx(spec.price.input)
