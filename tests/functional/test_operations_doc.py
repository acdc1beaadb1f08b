"""The operator's queries in docs/OPERATIONS.md, run as written against moto."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import uuid

import pytest

from chalicelib.limits import RateLimiter, TokenBudget, UserLimits, records
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "OPERATIONS.md").read_text()
T0 = 1_777_000_000  # a day no other test writes usage on: the query reads the whole day


def documented_block(language: str) -> str:
    blocks = re.findall(r"<!-- tested by tests/functional/test_operations_doc.py -->\n```(\w+)\n(.*?)```", DOC, re.S)
    return next(code for lang, code in blocks if lang == language)


@pytest.fixture(scope="module")
def day_of_three_users(moto_url, provisioned, boto_module):
    """Three users' chats on one day (T0), the heaviest last, and one on the next day."""
    dynamodb, table = boto_module("dynamodb"), provisioned.names["USAGE_TABLE"]
    retention = records.Retention(hourly_seconds=48 * 3600, daily_seconds=86400)
    policy = lambda groups: UserLimits(100, 100000)
    rate = RateLimiter(dynamodb, table, limits_for=policy, retention=retention)
    budget = TokenBudget(dynamodb, table, rate_limiter=rate, limits_for=policy, retention=retention, floor=1)
    users = [f"ops-{uuid.uuid4()}" for _ in range(3)]
    for rank, sub in enumerate(users):
        for chat in range(rank + 1):
            reservation = budget.reserve(sub, T0, request_id=f"{sub}-{chat}", input_tokens=100, max_tokens=1000)
            budget.settle(reservation, reservation.charge(100, 300 * (rank + 1)), "model-a")
    next_day = budget.reserve(users[0], T0 + 86400, request_id="tomorrow", input_tokens=1, max_tokens=90000)
    budget.settle(next_day, next_day.charge(1, 90000), "model-a")
    return table, records.day_name(T0), users


@pytest.fixture(scope="module")
def boto_module(moto_url):
    from devserver import aws as dev_aws
    return lambda service: dev_aws.aws_client(service, moto_url)


def expected(users):
    # user k (0-based) had k+1 chats of 100 + 300(k+1) tokens
    return [(users[k], (k + 1) * (100 + 300 * (k + 1)), k + 1) for k in (2, 1, 0)]


def test_the_python_query_lists_the_days_heaviest_users_first(day_of_three_users, boto_module):
    table, day, users = day_of_three_users
    namespace: dict = {}
    exec(documented_block("python"), namespace)
    top = namespace["heaviest_users"](table, day, top=10, dynamodb=boto_module("dynamodb"))
    ours = [(u["userSub"], u["totalTokens"], u["chats"]) for u in top if u["userSub"] in users]
    assert ours == expected(users)
    assert [u["totalTokens"] for u in top] == sorted((u["totalTokens"] for u in top), reverse=True)


def test_the_cli_query_lists_the_days_heaviest_users_first(day_of_three_users, moto_url, aws_cli, aws_env):
    table, day, users = day_of_three_users
    command = documented_block("sh").replace("\\\n", " ")
    command = command.replace("llm-ide-prod-usage", table).replace("2026-11-26", day)
    program, *arguments = shlex.split(command)
    assert program == "aws", command
    result = subprocess.run([aws_cli, *arguments, "--endpoint-url", moto_url, "--output", "json"],
                            capture_output=True, text=True, env=aws_env, timeout=60, check=True)
    items = json.loads(result.stdout)["Items"]
    ours = [(i["userSub"]["S"], int(i["totalTokens"]["N"]), int(i["chats"]["N"])) for i in items
            if i["userSub"]["S"] in users]
    assert ours == expected(users)
