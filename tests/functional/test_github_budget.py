"""Each user's GitHub call budget against moto: reserved before GitHub is called, settled to the calls
made, never passed by concurrent requests, and answered RATE_LIMITED by the worker once spent."""
from __future__ import annotations

import time
import uuid

import pytest

from chalicelib.config import load_settings
from chalicelib.errors import RateLimited
from chalicelib.github import worker
from chalicelib.github.credentials import AppJwt, InstallationTokens, RepoInstallations, SecretSource
from chalicelib.limits import records
from chalicelib.limits.github_calls import COUNTER, CallHold, GitHubCallBudget, github_calls_per_hour
from devserver.github import new_app_key, secret_document
from tests import fakes
from tests.fakes import FakeMetrics, RecordingSender
from tests.functional.test_github_access import worker_event
from tests.functional.test_limits import T0, crowd

BASE = {"COGNITO_USER_POOL_ID": "us-east-1_Test1", "COGNITO_APP_CLIENT_IDS": "c"}
RETENTION = records.Retention(hourly_seconds=48 * 3600, daily_seconds=400 * 86400)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def budget(dynamodb, table_name, clock=None, **env) -> GitHubCallBudget:
    settings = load_settings({**BASE, **{k: str(v) for k, v in env.items()}})
    return GitHubCallBudget(dynamodb, table_name, limit_for=lambda groups: github_calls_per_hour(groups, settings),
                            retention=RETENTION, clock=clock or Clock())


def counter(dynamodb, table_name, sub: str, now: float = T0) -> int:
    item = dynamodb.get_item(TableName=table_name, ConsistentRead=True,
                             Key={"pk": {"S": records.partition(sub)}, "sk": {"S": records.hour_sort_key(now)}})
    return records.read_number(item.get("Item"), COUNTER)


def test_concurrent_reservations_never_pass_the_limit(dynamodb, table_name):
    calls, sub = budget(dynamodb, table_name, GITHUB_CALLS_PER_HOUR=40), str(uuid.uuid4())
    outcomes = crowd(30, lambda i: calls.reserve(sub, groups=(), calls=3))
    refused = [o for o in outcomes if isinstance(o, RateLimited)]
    assert len(outcomes) - len(refused) == 13 and counter(dynamodb, table_name, sub) == 39
    assert {o.retry_after for o in refused} == {1800 - 30}  # T0 is 30 min 30 s into its hour


def test_settling_charges_the_calls_made_in_the_hour_reserved(dynamodb, table_name):
    clock = Clock()
    calls, sub = budget(dynamodb, table_name, clock, GITHUB_CALLS_PER_HOUR=100), str(uuid.uuid4())
    more = calls.reserve(sub, groups=(), calls=9)
    fewer = calls.reserve(sub, groups=(), calls=9)
    clock.now = T0 + 3600  # settled in the next hour: charged to the one reserved in
    calls.settle(more, 14)  # retries
    calls.settle(fewer, 1)  # a refusal after the first call
    assert counter(dynamodb, table_name, sub) == 15 and counter(dynamodb, table_name, sub, T0 + 3600) == 0


def test_a_run_that_made_more_calls_than_reserved_is_charged_them_all(dynamodb, table_name):
    calls, sub = budget(dynamodb, table_name, GITHUB_CALLS_PER_HOUR=10), str(uuid.uuid4())
    calls.settle(calls.reserve(sub, groups=(), calls=9), 12)
    with pytest.raises(RateLimited):
        calls.reserve(sub, groups=(), calls=1)
    assert counter(dynamodb, table_name, sub) == 12


def test_a_reservation_larger_than_the_limit_is_held_to_it(dynamodb, table_name):
    calls, sub = budget(dynamodb, table_name, GITHUB_CALLS_PER_HOUR=5), str(uuid.uuid4())
    assert calls.reserve(sub, groups=(), calls=9).calls == 5
    with pytest.raises(RateLimited):
        calls.reserve(sub, groups=(), calls=1)


def test_groups_may_have_more_and_the_most_generous_wins(dynamodb, table_name):
    env = {"GITHUB_CALLS_PER_HOUR": 1,
           "LIMITS_BY_GROUP": '{"bots": {"githubCallsPerHour": 3}, "ci": {"githubCallsPerHour": 2}}'}
    calls, sub = budget(dynamodb, table_name, **env), str(uuid.uuid4())
    for _ in range(3):
        calls.reserve(sub, groups=("ci", "bots"), calls=1)
    with pytest.raises(RateLimited):
        calls.reserve(sub, groups=("ci", "bots"), calls=1)


def test_the_worker_answers_rate_limited_before_github_once_the_budget_is_spent(app_env, dynamodb, table_name,
                                                                                  monkeypatch):
    monkeypatch.setattr(SecretSource, "_fetch", lambda self: pytest.fail("GitHub must not be called"))
    calls, sub = budget(dynamodb, table_name, GITHUB_CALLS_PER_HOUR=2), str(uuid.uuid4())
    calls.reserve(sub, groups=(), calls=2)
    sender, metrics = RecordingSender(), FakeMetrics()
    settings = load_settings({**BASE, "GITHUB_CALLS_PER_HOUR": "2"})
    event = worker_event([])
    event["user"]["sub"] = sub
    worker.handle(event, settings=settings, sender_for=lambda endpoint: sender, budget=calls, metrics=metrics)
    [frame] = sender.frames["conn-w="]
    assert frame["error"]["code"] == "RATE_LIMITED" and frame["error"]["retryAfter"] == 1800 - 30
    assert ("Errors", 1, {"code": "RATE_LIMITED"}) in metrics.emitted


def test_a_run_holds_each_call_past_its_reservation_and_stops_where_the_limit_does(app_env, dynamodb, table_name,
                                                                                     monkeypatch):
    """github.repos holds one call, but a long list takes a call a page: each call past the hold is held first,
    and the one the hour cannot cover is not sent (the old code sent all 11 against a limit of 3, so concurrent
    runs passed the limit together by every page each of them read)."""
    private, public = new_app_key()
    pages = [fakes.reply(200, {"repositories": [{"full_name": f"o/r{n}"}]},
                         link=f'<{fakes.GITHUB_API}/installation/repositories?page={n + 2}>; rel="next"')
             for n in range(9)] + [fakes.reply(200, {"repositories": [{"full_name": "o/last"}]})]
    github = fakes.FakeGitHub(fakes.Clock(), public, *pages)
    caches = worker.ContainerCaches(
        transport=github, secrets=SecretSource(fakes.FakeSecrets(secret_document(private)), "arn:gh"),
        app_jwt=AppJwt(clock=time.time), tokens=InstallationTokens(clock=time.time),
        routes=RepoInstallations(clock=time.time))
    monkeypatch.setattr(worker, "container_caches", lambda: caches)
    calls, sub = budget(dynamodb, table_name, clock=time.time, GITHUB_CALLS_PER_HOUR=3), str(uuid.uuid4())
    sender = RecordingSender()
    event = worker_event([])
    event["user"]["sub"] = sub
    worker.handle(event, settings=load_settings({**BASE, "GITHUB_CALLS_PER_HOUR": "3"}),
                  sender_for=lambda endpoint: sender, budget=calls, metrics=FakeMetrics())
    [frame] = sender.frames["conn-w="]
    assert frame["error"]["code"] == "RATE_LIMITED"
    assert len(github.calls) == 3 and counter(dynamodb, table_name, sub, time.time()) == 3  # the token, two pages


def test_concurrent_runs_holding_more_never_pass_the_limit_and_an_undo_always_may(dynamodb, table_name):
    calls, sub = budget(dynamodb, table_name, GITHUB_CALLS_PER_HOUR=20), str(uuid.uuid4())
    holds = [CallHold(calls, calls.reserve(sub, groups=(), calls=1)) for _ in range(8)]

    def run(i: int) -> int:
        made = 0
        for _ in range(5):  # each run wants 5 calls
            try:
                holds[i].before_call(made, undoing=False)
            except RateLimited:
                break
            made += 1
        return made

    made = crowd(8, run)
    assert sum(made) == 20 and counter(dynamodb, table_name, sub) == 20
    holds[0].before_call(made[0], undoing=True)  # undoing a failed write: sent past the limit, holding nothing
    assert counter(dynamodb, table_name, sub) == 20
    calls.settle(holds[0].reservation, made[0] + 1)  # and charged with the run's other calls
    assert counter(dynamodb, table_name, sub) == 21
