"""Rate limits and token budgets against moto in server mode, with real threads and an injected clock."""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.config import load_settings
from chalicelib.errors import BudgetExceeded, RateLimited
from chalicelib.limits import LimitedMemory, RateLimiter, Reservation, TokenBudget, fallback_usage, limits_for, records
from chalicelib.limits.usage import UsageReport
from chalicelib.tokens import estimate_tokens as count_tokens

BASE = {"COGNITO_USER_POOL_ID": "us-east-1_Test1", "COGNITO_APP_CLIENT_IDS": "c"}
T0 = 1_790_000_000 - 1_790_000_000 % 3600 + 30 * 60 + 30  # half past an hour, 30 s into a minute


class Limits:
    """The limiters as the app builds them, for settings given as environment variables."""

    def __init__(self, dynamodb, table_name, memory=True, **env):
        self.settings = load_settings({**BASE, **{k: str(v) for k, v in env.items()}})
        retention = records.Retention(hourly_seconds=48 * 3600, daily_seconds=400 * 86400)
        policy = lambda groups: limits_for(groups, self.settings)
        self.rate = RateLimiter(dynamodb, table_name, limits_for=policy, retention=retention,
                                memory=LimitedMemory() if memory else None)
        self.budget = TokenBudget(dynamodb, table_name, rate_limiter=self.rate, limits_for=policy,
                                  retention=retention, floor=self.settings.token_reservation_floor,
                                  clock=lambda: T0)
        self.usage = UsageReport(dynamodb, table_name, limits_for=policy)
        self.dynamodb, self.table_name = dynamodb, table_name

    def record(self, user, sort_key):
        return self.dynamodb.get_item(TableName=self.table_name, ConsistentRead=True,
                                      Key={"pk": {"S": f"USER#{user}"}, "sk": {"S": sort_key}}).get("Item", {})


def user() -> str:
    return str(uuid.uuid4())


def crowd(n, task):
    """Run `task(i)` on n threads released at once; returns results or the exceptions raised."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            return task(i)
        except Exception as exc:  # collected and asserted on by the caller
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


@pytest.mark.parametrize("memory", [True, False])
def test_150_concurrent_requests_admit_exactly_100(dynamodb, table_name, memory):
    limits, sub = Limits(dynamodb, table_name, memory=memory), user()
    outcomes = crowd(150, lambda i: limits.rate.admit(sub, T0 + i / 1000))
    admitted = [o for o in outcomes if not isinstance(o, Exception)]
    rejected = [o for o in outcomes if isinstance(o, RateLimited)]
    assert len(admitted) == 100 and len(rejected) == 50
    assert {o.retry_after for o in rejected} == {30}
    assert sorted(100 - a.requests_used for a in admitted) == list(range(100))  # each saw its own count
    hour = limits.record(sub, records.hour_sort_key(T0))
    assert hour[records.minute_attribute(T0)] == {"N": "100"} and hour["requests"] == {"N": "100"}


def test_windows_roll_over_with_the_clock(dynamodb, table_name):
    limits, sub = Limits(dynamodb, table_name, RATE_LIMIT_REQUESTS_PER_MINUTE=3), user()
    for _ in range(3):
        limits.rate.admit(sub, T0)
    with pytest.raises(RateLimited) as limited:
        limits.rate.admit(sub, T0 + 29.5)
    assert limited.value.retry_after == 1
    snapshot = limits.rate.admit(sub, T0 + 30)  # the next minute: a new window
    assert snapshot.requests_used == 1 and snapshot.minute_start == T0 + 30
    assert snapshot.to_wire()["requests"] == {"limit": 3, "remaining": 2, "resetAt": T0 + 90}
    # A new hour is a new record, and its windows start empty too.
    next_hour = records.hour_start(T0) + 3600
    for _ in range(3):
        limits.rate.admit(sub, next_hour)
    assert limits.record(sub, records.hour_sort_key(T0))["requests"] == {"N": "4"}
    assert limits.record(sub, records.hour_sort_key(next_hour))["requests"] == {"N": "3"}


def test_two_users_never_share_counters(dynamodb, table_name):
    limits, alice, bob = Limits(dynamodb, table_name, RATE_LIMIT_REQUESTS_PER_MINUTE=5), user(), user()
    outcomes = crowd(20, lambda i: limits.rate.admit(alice if i % 2 else bob, T0))
    assert sum(not isinstance(o, Exception) for o in outcomes) == 10
    assert limits.record(alice, records.hour_sort_key(T0))["requests"] == {"N": "5"}
    assert limits.record(bob, records.hour_sort_key(T0))["requests"] == {"N": "5"}
    limits.budget.reserve(alice, T0 + 60, request_id="a1", estimated_input=100, max_tokens=100)
    assert limits.record(alice, records.hour_sort_key(T0))["tokens"] == {"N": "200"}
    assert "tokens" not in limits.record(bob, records.hour_sort_key(T0))


def test_group_overrides_apply_and_the_most_generous_wins(dynamodb, table_name):
    groups = '{"trial": {"requestsPerMinute": 2, "tokensPerHour": 500}, "power": {"requestsPerMinute": 4}}'
    limits = Limits(dynamodb, table_name, LIMITS_BY_GROUP=groups)
    assert limits_for((), limits.settings).requests_per_minute == 100
    trial, both = user(), user()
    admitted = [o for o in crowd(6, lambda i: limits.rate.admit(trial, T0, groups=("trial",)))
                if not isinstance(o, Exception)]
    assert len(admitted) == 2
    admitted = [o for o in crowd(6, lambda i: limits.rate.admit(both, T0, groups=("power", "trial", "x")))
                if not isinstance(o, Exception)]
    assert len(admitted) == 4
    # tokens: only "trial" names a budget, so it applies to a member of both
    with pytest.raises(BudgetExceeded):
        limits.budget.reserve(both, T0 + 60, groups=("power", "trial"), request_id="b1", estimated_input=400,
                              max_tokens=101)


def test_20_concurrent_reservations_that_fit_5_admit_exactly_5(dynamodb, table_name):
    limits, sub = Limits(dynamodb, table_name), user()
    outcomes = crowd(20, lambda i: limits.budget.reserve(sub, T0, request_id=f"r{i}", estimated_input=1000,
                                                         max_tokens=1000))
    reservations = [o for o in outcomes if isinstance(o, Reservation)]
    assert len(reservations) == 5
    assert all(isinstance(o, BudgetExceeded) and o.retry_after == 1770 for o in outcomes if o not in reservations)
    assert all(r.max_tokens == 1000 for r in reservations)
    assert limits.record(sub, records.hour_sort_key(T0))["tokens"] == {"N": "10000"}
    # Settling concurrently to the real, smaller usage frees the difference, never more.
    crowd(5, lambda i: limits.budget.settle(reservations[i], 900, 600, "m"))
    hour = limits.record(sub, records.hour_sort_key(T0))
    assert hour["tokens"] == {"N": "7500"} and hour["inputTokens"] == {"N": "4500"}
    assert hour["outputTokens"] == {"N": "3000"}


def test_max_tokens_is_lowered_to_fit_down_to_the_floor(dynamodb, table_name):
    limits, sub = Limits(dynamodb, table_name, TOKEN_RESERVATION_FLOOR=256), user()
    first = limits.budget.reserve(sub, T0, request_id="a", estimated_input=1000, max_tokens=6000)
    assert first.max_tokens == 6000 and first.limits.to_wire()["tokens"]["remaining"] == 3000
    lowered = limits.budget.reserve(sub, T0, request_id="b", estimated_input=1000, max_tokens=6000)
    assert lowered.max_tokens == 2000 and lowered.limits.tokens_used == 10000
    limits.budget.settle(lowered, 1000, 0, "m")  # frees 2000
    with pytest.raises(BudgetExceeded):  # 2000 left: 150 after the input, under the floor of 256
        limits.budget.reserve(sub, T0, request_id="c", estimated_input=1850, max_tokens=1000)
    small = limits.budget.reserve(sub, T0, request_id="d", estimated_input=1850, max_tokens=100)
    assert small.max_tokens == 100  # below the floor, but it is all that was asked and it fits
    with pytest.raises(BudgetExceeded) as exceeded:
        limits.budget.reserve(sub, T0 + 5, request_id="e", estimated_input=1, max_tokens=100)
    assert exceeded.value.retry_after == 1765 and exceeded.value.code == "BUDGET_EXCEEDED"


def test_a_full_minute_rejects_a_chat_as_rate_limited_and_reserves_nothing(dynamodb, table_name):
    limits, sub = Limits(dynamodb, table_name, RATE_LIMIT_REQUESTS_PER_MINUTE=2, memory=False), user()
    limits.rate.admit(sub, T0)
    limits.budget.reserve(sub, T0, request_id="x", estimated_input=10, max_tokens=10)
    with pytest.raises(RateLimited) as limited:
        limits.budget.reserve(sub, T0 + 10, request_id="y", estimated_input=10, max_tokens=10)
    assert limited.value.retry_after == 20
    assert limits.record(sub, records.hour_sort_key(T0))["tokens"] == {"N": "20"}


def test_the_token_window_rolls_over_with_the_hour_and_a_late_settlement_is_charged_to_its_own(
        dynamodb, table_name):
    limits, sub = Limits(dynamodb, table_name), user()
    held = limits.budget.reserve(sub, T0, request_id="held", estimated_input=1000, max_tokens=8000)
    with pytest.raises(BudgetExceeded) as exceeded:  # 1000 left in this hour: under the floor after the input
        limits.budget.reserve(sub, T0, request_id="refused", estimated_input=900, max_tokens=1000)
    next_hour = T0 - T0 % 3600 + 3600
    assert exceeded.value.retry_after == next_hour - T0
    fresh = limits.budget.reserve(sub, next_hour + 1, request_id="fresh", estimated_input=900, max_tokens=1000)
    assert fresh.max_tokens == 1000 and fresh.limits.to_wire()["tokens"]["remaining"] == 10000 - 1900
    # The held chat ends in the next hour: its usage counts in the hour (and day) it was admitted in.
    limits.budget.settle(held, 1000, 500, "m", now=next_hour + 30)
    assert limits.record(sub, records.hour_sort_key(T0))["tokens"] == {"N": "1500"}
    assert limits.record(sub, records.hour_sort_key(next_hour))["tokens"] == {"N": "1900"}  # only the fresh chat


def test_settlement_writes_hour_day_and_model_records_and_is_idempotent(dynamodb, table_name):
    limits, sub = Limits(dynamodb, table_name), user()
    reservation = limits.budget.reserve(sub, T0, request_id="chat-1", estimated_input=700, max_tokens=1300)
    settlement = limits.budget.settle(reservation, 800, 300, "anthropic.claude-3-haiku")
    assert settlement.usage_wire() == {"inputTokens": 800, "outputTokens": 300, "totalTokens": 1100,
                                       "cacheReadInputTokens": 0, "cacheWriteInputTokens": 0}
    assert settlement.limits.to_wire()["tokens"]["remaining"] == 10000 - 1100
    again = limits.budget.settle(Reservation.from_dict(reservation.to_dict()), 800, 300, "anthropic.claude-3-haiku")
    assert again.already_settled and not settlement.already_settled
    hour = limits.record(sub, records.hour_sort_key(T0))
    assert (hour["tokens"], hour["inputTokens"], hour["outputTokens"]) == ({"N": "1100"}, {"N": "800"}, {"N": "300"})
    day = limits.record(sub, records.day_sort_key(T0))
    assert day["day"] == {"S": records.day_name(T0)} and day["totalTokens"] == {"N": "1100"}
    assert day["chats"] == {"N": "1"} and day["userSub"] == {"S": sub}
    model = limits.record(sub, records.model_sort_key(T0, "anthropic.claude-3-haiku"))
    assert model["totalTokens"] == {"N": "1100"} and "day" not in model  # not in the byDay index
    assert int(hour["ttl"]["N"]) > T0 + 86400 and int(day["ttl"]["N"]) > T0 + 300 * 86400


def test_a_worker_that_raises_midstream_still_settles_what_it_served(dynamodb, table_name):
    limits, sub = Limits(dynamodb, table_name), user()
    reservation = limits.budget.reserve(sub, T0, request_id="boom", estimated_input=50, max_tokens=1000)
    served: list[str] = []

    def worker():
        try:
            for text in ("Hello, ", "wor"):
                served.append(text)
            raise RuntimeError("the stream broke before the metadata")
        finally:
            limits.budget.settle(reservation, *fallback_usage(reservation, "".join(served)), "m")

    with pytest.raises(RuntimeError):
        worker()
    hour = limits.record(sub, records.hour_sort_key(T0))
    assert hour["outputTokens"] == {"N": str(count_tokens("Hello, wor"))} and hour["inputTokens"] == {"N": "50"}
    assert hour["tokens"] == {"N": str(50 + 3)}


def test_a_settlement_that_failed_on_the_way_settles_on_retry_exactly_once(dynamodb, table_name):
    limits, sub = Limits(dynamodb, table_name), user()
    reservation = limits.budget.reserve(sub, T0, request_id="flaky", estimated_input=100, max_tokens=100)
    failures = {"left": 1}

    def fail_once(**_):
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("simulated network failure before DynamoDB")

    dynamodb.meta.events.register("before-send.dynamodb.TransactWriteItems", fail_once, unique_id="fail-once")
    try:
        with pytest.raises(ConnectionError):
            limits.budget.settle(reservation, 100, 20, "m")
        assert limits.record(sub, records.hour_sort_key(T0))["tokens"] == {"N": "200"}  # still reserved
        assert not limits.budget.settle(reservation, 100, 20, "m").already_settled
        assert limits.budget.settle(reservation, 100, 20, "m").already_settled
    finally:
        dynamodb.meta.events.unregister("before-send.dynamodb.TransactWriteItems", unique_id="fail-once")
    assert limits.record(sub, records.hour_sort_key(T0))["tokens"] == {"N": "120"}


def test_usage_report_sums_the_hour_and_the_day(dynamodb, table_name):
    limits, sub = Limits(dynamodb, table_name), user()
    earlier = T0 - 3600
    r1 = limits.budget.reserve(sub, earlier, request_id="u1", estimated_input=10, max_tokens=500)
    limits.budget.settle(r1, 12, 40, "m")
    r2 = limits.budget.reserve(sub, T0, request_id="u2", estimated_input=10, max_tokens=500)
    limits.budget.settle(r2, 11, 30, "m")
    limits.rate.admit(sub, T0)
    report = limits.usage.report(sub, T0 + 1)
    no_cache = {"cacheReadInputTokens": 0, "cacheWriteInputTokens": 0}
    assert report["usage"] == {"hour": {"requests": 2, "inputTokens": 11, "outputTokens": 30, **no_cache},
                               "day": {"requests": 3, "inputTokens": 23, "outputTokens": 70, **no_cache}}
    assert report["limits"] == {"requests": {"limit": 100, "remaining": 98, "resetAt": T0 + 30},
                                "tokens": {"limit": 10000, "remaining": 10000 - 41,
                                           "resetAt": records.hour_start(T0) + 3600}}
    assert limits.usage.report(user(), T0)["usage"]["day"] == {"requests": 0, "inputTokens": 0, "outputTokens": 0,
                                                               **no_cache}


def test_memory_spares_dynamodb_the_rejected_writes(dynamodb, table_name):
    limits, sub = Limits(dynamodb, table_name, RATE_LIMIT_REQUESTS_PER_MINUTE=1), user()
    calls: list[str] = []
    record = lambda model, **_: calls.append(model.name)
    dynamodb.meta.events.register("before-call.dynamodb", record, unique_id="count")
    try:
        limits.rate.admit(sub, T0)
        for _ in range(5):
            with pytest.raises(RateLimited):
                limits.rate.admit(sub, T0 + 1)
        assert calls == ["UpdateItem", "UpdateItem"]  # the first rejection wrote; the memory answered the rest
        limits.rate.admit(sub, T0 + 30)  # a new window: back to DynamoDB
        assert calls == ["UpdateItem"] * 3
    finally:
        dynamodb.meta.events.unregister("before-call.dynamodb", unique_id="count")


@pytest.mark.parametrize("text, tokens", [("", 0), ("abcd", 1), ("abcde", 2), ("é", 1), ("日本語", 3),
                                          ("x" * 4000, 1000)])
def test_count_tokens_is_one_per_four_bytes_rounded_up(text, tokens):
    assert count_tokens(text) == tokens


def test_fallback_usage_charges_input_only_once_something_was_served():
    from chalicelib.limits.snapshot import LimitsSnapshot
    snapshot = LimitsSnapshot(1, 0, 0, 1, 0, 0, 0.0)
    reservation = Reservation(user_sub="u", request_id="r", hour_start=0, estimated_input=70, max_tokens=9,
                              limits=snapshot)
    assert fallback_usage(reservation, "") == (0, 0)
    assert fallback_usage(reservation, "12345") == (70, 2)


def test_under_mixed_concurrent_reserves_and_settles_the_hour_never_exceeds_the_budget(dynamodb, table_name):
    import random

    limits, sub = Limits(dynamodb, table_name, TOKEN_BUDGET_PER_HOUR=20000, TOKEN_RESERVATION_FLOOR=100), user()
    rng = random.Random(4)
    sizes = [(rng.randint(0, 2000), rng.randint(50, 4000), rng.random()) for _ in range(40)]
    seen: list[int] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(int(limits.record(sub, records.hour_sort_key(T0)).get("tokens", {"N": "0"})["N"]))

    def chat(i):
        estimated, max_tokens, share = sizes[i]
        reservation = limits.budget.reserve(sub, T0, request_id=f"mix{i}", estimated_input=estimated,
                                            max_tokens=max_tokens)
        assert reservation.max_tokens <= max_tokens
        used_out = int(reservation.max_tokens * share)
        limits.budget.settle(reservation, estimated, used_out, "m")
        return estimated + used_out

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        outcomes = crowd(40, chat)
    finally:
        stop.set()
        watcher.join()
    assert all(isinstance(o, (int, BudgetExceeded)) for o in outcomes), outcomes
    assert any(isinstance(o, int) for o in outcomes) and any(isinstance(o, BudgetExceeded) for o in outcomes)
    assert seen and max(seen) <= 20000
    final = limits.record(sub, records.hour_sort_key(T0))
    assert int(final["tokens"]["N"]) == sum(o for o in outcomes if isinstance(o, int)) <= 20000


def test_cached_input_is_settled_in_its_own_counters_and_counts_against_the_budget(dynamodb, table_name):
    limits, sub = Limits(dynamodb, table_name), user()
    reservation = limits.budget.reserve(sub, T0, request_id="cached", estimated_input=6000, max_tokens=500)
    settlement = limits.budget.settle(reservation, 20, 100, "claude", cache_read=5000, cache_write=900, now=T0 + 5)
    assert settlement.usage_wire() == {"inputTokens": 20, "outputTokens": 100, "totalTokens": 6020,
                                       "cacheReadInputTokens": 5000, "cacheWriteInputTokens": 900}
    assert settlement.limits.to_wire()["tokens"]["remaining"] == 10000 - 6020  # the model read all of it
    for sort_key in (records.hour_sort_key(T0), records.day_sort_key(T0), records.model_sort_key(T0, "claude")):
        item = limits.record(sub, sort_key)
        counts = [records.read_number(item, name) for name in ("inputTokens", "cacheReadInputTokens",
                                                                "cacheWriteInputTokens")]
        assert counts == [20, 5000, 900], sort_key
    assert records.read_number(limits.record(sub, records.day_sort_key(T0)), "totalTokens") == 6020
    hour = limits.usage.report(sub, T0 + 6)["usage"]["hour"]
    assert (hour["cacheReadInputTokens"], hour["cacheWriteInputTokens"]) == (5000, 900)
