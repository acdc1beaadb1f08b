"""The cost report against moto: a scripted month of chats through the Chalice handlers (the message handler,
then the bedrock_worker with the event it was started with, against the Bedrock emulator), and the report's
totals, by user, group, model and day, equal to the sum of the chats' `done` frames' usage; read with boto3
(`python -m infra.usage_report`, in-process and as a command) and with the AWS CLI (the byMonth index)."""
from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import uuid
from decimal import Decimal

import pytest

import app as chalice_app
from chalicelib import process
from chalicelib.root import get_clock
from infra import resources, usage_report
from tests.conftest import ROOT
from tests.fakes import LambdaContext
from tests.handler_calls import connect, login, message

MONTH_START = 1_685_577_600  # 2023-06-01T00:00:00Z: a month no other test writes usage in
MONTH = "2023-06"
DAYS = (0, 8, 16, 29)  # the 1st, 9th, 17th and 30th
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"  # Bedrock cannot count it: the bound is reserved
SONNET = "anthropic.claude-sonnet-4-20250514-v1:0"  # counted, and it caches prompts
TEAM = "report-team"
# Claude Sonnet 4's prices as this stage configures them (MODELS overrides the built-in table), USD per million.
PRICES = {"input": Decimal("3.3"), "output": Decimal("16.5"), "cacheRead": Decimal("0.33"),
          "cacheWrite": Decimal("4.125")}


def system_prompt() -> str:
    """1,400 tokens and more: a prefix Bedrock caches; one no other chat sent (the emulator's cache is shared)."""
    return " ".join(f"rule{n % 97} applies" for n in range(700)) + f" ({uuid.uuid4().hex})"

COUNTS = ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens", "totalTokens")


@pytest.fixture
def month(app_env, boto, sender, started, monkeypatch):
    """The app with a team (user 0 in it), Sonnet 4 at the configured prices, and a clock to move through June."""
    cognito, pool = boto("cognito-idp"), app_env.user_pool_id
    if TEAM not in {g["GroupName"] for g in cognito.list_groups(UserPoolId=pool)["Groups"]}:
        cognito.create_group(GroupName=TEAM, UserPoolId=pool)
    cognito.admin_add_user_to_group(UserPoolId=pool, Username=app_env.users[0][0], GroupName=TEAM)
    for name, value in {"ALLOWED_MODELS": f"{HAIKU},{SONNET}", "TOKEN_BUDGET_PER_HOUR": "100000000",
                        "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000",
                        "LIMITS_BY_GROUP": json.dumps({TEAM: {"tokensPerHour": 100000000}}),
                        "MODELS": json.dumps({SONNET: {"price": {k: float(v) for k, v in PRICES.items()}}})}.items():
        monkeypatch.setenv(name, value)
    now = [float(MONTH_START)]
    process.reset()
    process.install(get_clock, lambda: now[0])
    try:
        for index in (0, 1):
            connect(f"conn-report-{index}=", headers={"Authorization": f"Bearer {login(boto, app_env, index)}"})
        yield now
    finally:
        cognito.admin_remove_user_from_group(UserPoolId=pool, Username=app_env.users[0][0], GroupName=TEAM)


def run_chat(connection, sender, started, **params) -> dict:
    """chat.send through the message handler, then its worker as Lambda runs it; the chat's final frame."""
    before = len(sender.frames.get(connection, []))
    message(connection, json.dumps({"action": "chat.send", "id": "c", **params}))
    assert started, sender.frames[connection][before:]  # admitted: no answer from the handler, a worker started
    name, event = started.pop()
    assert name == chalice_app.app.app_name + "-test-bedrock_worker" or name.endswith("bedrock_worker")
    chalice_app.bedrock_worker(json.loads(json.dumps(event)), LambdaContext(900_000))
    ack, *_, final = sender.frames[connection][before:]
    assert ack["type"] == "ack", ack  # the worker's first frame
    assert final["type"] == "done", final
    return final


def hand_cost(usage: dict) -> int:
    """The chat's cost in micro-dollars from the configured prices, rounded up."""
    usd = (usage["inputTokens"] * PRICES["input"] + usage["outputTokens"] * PRICES["output"]
           + usage["cacheReadInputTokens"] * PRICES["cacheRead"]
           + usage["cacheWriteInputTokens"] * PRICES["cacheWrite"]) / 10**6
    return math.ceil(usd * 10**6)


def test_a_chat_that_reads_and_writes_the_cache_costs_the_hand_computed_figure(month, sender, started):
    month[0] = MONTH_START - 10 * 86400  # in May: the month the report below reads is only its own chats
    conversation = [{"role": "user", "content": " ".join(f"fact{n} holds" for n in range(800))},
                    {"role": "assistant", "content": "Noted."}, {"role": "user", "content": "And so?"}]
    # The first chat writes the system prompt's prefix to the cache; the second reads it and writes its own
    # conversation's prefix.
    system = system_prompt()
    first = run_chat("conn-report-1=", sender, started, prompt="Hello there.", system=system, model=SONNET,
                     maxTokens=50)["usage"]
    assert first["cacheWriteInputTokens"] > 1024 and first["cacheReadInputTokens"] == 0
    usage = run_chat("conn-report-1=", sender, started, messages=conversation, system=system, model=SONNET,
                     maxTokens=50)["usage"]
    assert usage["cacheReadInputTokens"] == first["cacheWriteInputTokens"] and usage["cacheWriteInputTokens"] > 1024
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0
    assert usage["costUsd"] == hand_cost(usage) / 10**6
    # To the micro-dollar: the figure by hand, for these counts, in words.
    micro_dollars = (Decimal(usage["inputTokens"]) * Decimal("3.3") + usage["outputTokens"] * Decimal("16.5")
                     + usage["cacheReadInputTokens"] * Decimal("0.33")
                     + usage["cacheWriteInputTokens"] * Decimal("4.125"))
    assert round(usage["costUsd"] * 10**6) == math.ceil(micro_dollars)


def report(by: str, boto, capsys) -> dict:
    capsys.readouterr()  # what the chats wrote (their metrics) before
    assert usage_report.main(["--stage", "test", "--month", MONTH, "--by", by, "--format", "json"],
                             dynamodb=boto("dynamodb")) == 0
    return json.loads(capsys.readouterr().out)


def test_the_reports_totals_are_the_sum_of_the_done_frames_for_a_scripted_month(
        month, app_env, sender, started, boto, capsys, moto_url, aws_cli, aws_env):
    assert resources.table("usage").physical_name("test") == app_env.names["USAGE_TABLE"]
    done: list[tuple[int, str, dict]] = []  # (user, model, usage)
    system = system_prompt()
    for day in DAYS:
        for hour, user in ((9, 0), (15, 1)):
            month[0] = MONTH_START + day * 86400 + hour * 3600
            connection = f"conn-report-{user}="
            chats = [{"prompt": f"Day {day}: a,b;c! 漢字 {user}", "model": HAIKU, "maxTokens": 100},
                     {"prompt": f"Summarise day {day} for user {user} at length", "model": SONNET,
                      "maxTokens": 5},  # cut at maxTokens
                     {"prompt": f"What does rule{day} say?", "system": system, "model": SONNET, "maxTokens": 60}]
            for params in chats:
                final = run_chat(connection, sender, started, **params)
                done.append((user, str(params["model"]), final["usage"]))
    assert any(u["cacheReadInputTokens"] for _, _, u in done) and any(u["cacheWriteInputTokens"] for _, _, u in done)

    def summed(chosen) -> dict:
        usages = [u for _, _, u in chosen]
        return {**{name: sum(u[name] for u in usages) for name in COUNTS}, "chats": len(usages),
                "costUsd": sum(round(u["costUsd"] * 10**6) for u in usages) / 10**6}

    everything = summed(done)
    by_user, by_model, by_day, by_group = (report(by, boto, capsys) for by in ("user", "model", "day", "group"))
    assert len(by_user["rows"]) == 2  # no one else chatted in this month
    for result in (by_user, by_model, by_day):
        assert result["total"] == everything
    assert {row["model"]: row for row in by_model["rows"]}[SONNET]["costUsd"] == summed(
        [d for d in done if d[1] == SONNET])["costUsd"]
    assert [row["day"] for row in sorted(by_day["rows"], key=lambda r: r["day"])] == [
        f"{MONTH}-{day + 1:02d}" for day in DAYS]
    assert by_day["rows"][0]["costUsd"] >= by_day["rows"][-1]["costUsd"]  # most costly first
    # The team is user 0 alone.
    assert by_group["rows"] == [{"group": TEAM, **summed([d for d in done if d[0] == 0])}]

    # The command, as operators run it (boto3 with credentials from the environment), as CSV.
    command = subprocess.run([sys.executable, "-m", "infra.usage_report", "--stage", "test", "--month", MONTH,
                             "--by", "model", "--endpoint-url", moto_url], capture_output=True, text=True, env=aws_env,
                            cwd=ROOT, timeout=60, check=True)
    rows = list(csv.DictReader(io.StringIO(command.stdout)))
    assert rows[-1]["model"] == "" and int(rows[-1]["totalTokens"]) == everything["totalTokens"]
    assert float(rows[-1]["costUsd"]) == everything["costUsd"] and {r["model"] for r in rows[:-1]} == {HAIKU, SONNET}

    # The AWS CLI, reading the index as docs/OPERATIONS.md shows: the users' month records of June.
    listed = subprocess.run([aws_cli, "dynamodb", "query", "--table-name", app_env.names["USAGE_TABLE"],
                             "--index-name", "byMonth", "--key-condition-expression",
                             "#m = :m AND begins_with(#e, :u)", "--expression-attribute-names",
                             '{"#m": "month", "#e": "entry"}', "--expression-attribute-values",
                             json.dumps({":m": {"S": MONTH}, ":u": {"S": "U#"}}), "--endpoint-url", moto_url,
                             "--output", "json"], capture_output=True, text=True, env=aws_env, timeout=60, check=True)
    items = json.loads(listed.stdout)["Items"]
    assert sum(int(i["costMicros"]["N"]) for i in items) == round(everything["costUsd"] * 10**6)
    assert sum(int(i["totalTokens"]["N"]) for i in items) == everything["totalTokens"]


@pytest.mark.parametrize("args, unset, says", [
    (["--stage", "test"], ["AWS_DEFAULT_REGION"], "usage_report: no AWS region: pass --region"),
    (["--stage", "test", "--region", "us-east-1"], ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
     "usage_report: cannot read llm-ide-test-usage (index byMonth): Unable to locate credentials"),
    (["--stage", "nosuch"], [], "usage_report: cannot read llm-ide-nosuch-usage (index byMonth): An error occurred "
                                "(ResourceNotFoundException)"),
])
def test_the_command_without_region_credentials_or_table_says_so_in_a_line(
        provisioned, moto_url, aws_env, tmp_path, args, unset, says):
    """As a new operator first runs it (docs/OPERATIONS.md): what is missing, not boto's traceback."""
    nowhere = str(tmp_path / "none")  # no profile to take a region or credentials from
    env = {**aws_env, "AWS_CONFIG_FILE": nowhere, "AWS_SHARED_CREDENTIALS_FILE": nowhere, "AWS_REGION": ""}
    for name in unset:
        del env[name]
    done = subprocess.run([sys.executable, "-m", "infra.usage_report", *args, "--month", MONTH,
                           "--endpoint-url", moto_url], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
                          check=False)
    assert (done.returncode, done.stdout) == (1, "") and done.stderr.startswith(says), done.stderr
    assert "Traceback" not in done.stderr
