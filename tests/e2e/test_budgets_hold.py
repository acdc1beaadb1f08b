"""Budgets that hold, end to end: no free reads, and no overshoot by token-dense chats, of one user or of a
group's pooled money budget. Each on a stack of its own whose clock stands still (HELD_CLOCK) and whose Bedrock
emulator counts tokens like a tokenizer (devserver/tokenizer.py), so a byte estimate would be visibly wrong."""
from __future__ import annotations

import hashlib
import json
import math
import time
import urllib.request
import uuid

import boto3
import pytest
from boto3.dynamodb.conditions import Attr

from tests.e2e.conftest import HELD_CLOCK, start_stack, stop_stack
from tests.e2e.test_chat import requests_table, unique, wait_for
from tests.e2e.test_chat_budget import hour_counter, usage_of

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"  # Bedrock cannot count it: its input's bound is reserved
SONNET = "us.anthropic.claude-sonnet-4-20250514-v1:0"  # Bedrock counts it: the count is reserved
TOKEN_BUDGET = 3000  # the hourly budget of the users in no group
TEAM_POOL_USD = 0.05


def aws(stack, service):
    return boto3.client(service, endpoint_url=stack.document["awsEndpointUrl"], region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def join_group(stack, group, *usernames):
    cognito, pool = aws(stack, "cognito-idp"), stack.document["cognito"]["userPoolId"]
    cognito.create_group(GroupName=group, UserPoolId=pool)
    for username in usernames:  # before they sign in: the group is in their token
        cognito.admin_add_user_to_group(UserPoolId=pool, Username=username, GroupName=group)


@pytest.fixture(scope="module")
def held_stack(tmp_path_factory):
    """dev reads much (its group's budget is large); dev2 has the small default. Workers start a second after
    their invocation, as an event may wait in Lambda's queue: time for a cancel to come first."""
    stack = start_stack(tmp_path_factory.mktemp("budgets-hold"), env={
        "DEV_FIXED_CLOCK": str(HELD_CLOCK), "DEV_LAMBDA_EVENT_DELAY_MS": "1000",
        "TOKEN_BUDGET_PER_HOUR": str(TOKEN_BUDGET), "RATE_LIMIT_REQUESTS_PER_MINUTE": "",
        "LIMITS_BY_GROUP": json.dumps({"readers": {"tokensPerHour": 1_000_000}}), "TOKEN_RESERVATION_FLOOR": ""})
    try:
        join_group(stack, "readers", "dev")
        yield stack
    finally:
        stop_stack(stack.process)


@pytest.fixture(scope="module")
def team_stack(tmp_path_factory):
    """dev and dev2 share the team's pooled monthly budget (and have no budget of their own in money)."""
    stack = start_stack(tmp_path_factory.mktemp("budgets-team"), env={
        "DEV_FIXED_CLOCK": str(HELD_CLOCK), "TOKEN_BUDGET_PER_HOUR": "100000000",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "", "TOKEN_RESERVATION_FLOOR": "",
        "LIMITS_BY_GROUP": json.dumps({"team": {"pooledCostUsdPerMonth": TEAM_POOL_USD}})})
    try:
        join_group(stack, "team", "dev", "dev2")
        yield stack
    finally:
        stop_stack(stack.process)


def model_calls(stack, prompt: str) -> list[dict]:
    """The calls the Bedrock emulator received for this prompt (GET /_emulator/calls?key=)."""
    key = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    with urllib.request.urlopen(f"{stack.bedrock_url}/_emulator/calls?key={key}", timeout=5) as response:
        return json.loads(response.read())


def streams_of(stack, prompt: str) -> list[dict]:
    return [c for c in model_calls(stack, prompt) if c["operation"] in ("Converse", "ConverseStream")]


def final_frame(client, chat_id, timeout=60) -> dict:
    while True:
        frame = client.next_frame(chat_id, timeout=timeout)
        if frame["type"] in ("done", "error"):
            return frame


def words(size: int, seed: str) -> str:
    text = " ".join(f"{seed}{n} reads" for n in range(size // 4))
    return text.encode("utf-8")[:size].decode("utf-8", "ignore").rstrip()


# --- no free reads --------------------------------------------------------------------------------------------


def test_a_chat_cancelled_before_its_first_token_is_charged_the_input_the_model_read(held_stack):
    prompt = "[[slow:5000]] " + words(20 * 1024, unique("w")[-8:])
    assert len(prompt.encode("utf-8")) >= 20 * 1024
    with held_stack.connect("dev") as client:
        counted = client.request("chat.countTokens", prompt=prompt, model=SONNET, maxTokens=100)
        assert counted["type"] == "result" and counted["data"]["exact"] is True, counted
        input_tokens = counted["data"]["inputTokens"]
        before = usage_of(client)["usage"]["hour"]
        chat_id = client.send("chat.send", prompt=prompt, model=SONNET, maxTokens=100)
        assert client.next_frame(chat_id, timeout=15)["type"] == "ack"
        wait_for(lambda: streams_of(held_stack, prompt), timeout=15)  # the worker has sent it to the model
        assert client.request("chat.cancel", requestId=chat_id)["type"] == "result"
        done = final_frame(client, chat_id)
        assert done["type"] == "done" and done["stopReason"] == "cancelled"
        # The model read the whole input before its first token: the chat is charged it, exactly as counted.
        assert done["usage"]["inputTokens"] == input_tokens > 20 * 1024 / 8 and done["usage"]["outputTokens"] == 0
        assert done["usage"]["costUsd"] == math.ceil(input_tokens * 3.0) / 10**6  # Sonnet 4: 3 USD per million
        after = usage_of(client)["usage"]["hour"]
    assert after["inputTokens"] - before["inputTokens"] == input_tokens
    assert after["costUsd"] - before["costUsd"] == pytest.approx(done["usage"]["costUsd"])


def test_a_chat_cancelled_before_its_worker_claims_it_never_reaches_the_model(held_stack):
    prompt = unique("[[slow:50]] Cancelled while its worker waits in the queue")
    with held_stack.connect("dev") as client:
        before = usage_of(client)
        chat_id = client.send("chat.send", id=f"q-{uuid.uuid4().hex[:12]}", prompt=prompt, model=SONNET, maxTokens=100)
        # The handler recorded it (the worker posts the ack, after its claim): cancel while the worker waits its
        # second in Lambda's queue.
        queued = Attr("clientId").eq(chat_id) & Attr("status").eq("queued")
        assert wait_for(lambda: requests_table(held_stack).scan(FilterExpression=queued)["Items"], timeout=10)
        assert client.request("chat.cancel", requestId=chat_id)["type"] == "result"
        assert client.next_frame(chat_id, timeout=15)["type"] == "ack"  # the worker's first frame, cancelled or not
        done = final_frame(client, chat_id)  # the worker's: it found the chat cancelled when it came to claim it
        assert done["type"] == "done" and done["stopReason"] == "cancelled"
        assert done["usage"]["inputTokens"] == done["usage"]["outputTokens"] == done["usage"]["totalTokens"] == 0
        after = usage_of(client)
    for field in ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens", "costUsd"):
        assert after["usage"]["hour"][field] == before["usage"]["hour"][field], field
    assert after["limits"]["tokens"]["remaining"] == before["limits"]["tokens"]["remaining"]  # nothing held
    # Bedrock was asked to count the input (before the ack), never to run it.
    assert [c["operation"] for c in model_calls(held_stack, prompt)] == ["CountTokens"]


# --- no overshoot ---------------------------------------------------------------------------------------------


def dense_prompt(n: int) -> str:
    """Punctuation, CJK and emoji: a token a character, about a token a byte (bytes / 4 undercounts it 3-fold)."""
    return f"[[slow:20]] {n}" + "a,b;c!" * 40 + "漢字😀" * 20


def test_eight_concurrent_token_dense_chats_never_take_a_user_past_the_hourly_budget(held_stack):
    with held_stack.connect("dev2") as first, held_stack.connect("dev2") as second:
        clients = [first if n % 2 else second for n in range(8)]
        prompts = [unique(dense_prompt(n)) for n in range(8)]
        ids = [c.send("chat.send", prompt=p, model=HAIKU if n % 2 else SONNET, maxTokens=400)
               for n, (c, p) in enumerate(zip(clients, prompts, strict=True))]
        answers = [c.next_frame(i, timeout=30) for c, i in zip(clients, ids, strict=True)]
        acked = [n for n, a in enumerate(answers) if a["type"] == "ack"]
        refused = [a for a in answers if a["type"] == "error"]
        assert {r["error"]["code"] for r in refused} == {"BUDGET_EXCEEDED"} and 2 <= len(acked) < 8
        assert hour_counter(held_stack, "dev2") <= TOKEN_BUDGET  # settled + reserved, while they run
        finals = [final_frame(clients[n], ids[n]) for n in acked]
        assert {f["type"] for f in finals} == {"done"}
        usage = usage_of(first)
    charged = sum(f["usage"]["totalTokens"] for f in finals)
    # The settled hour: what the model read and wrote, within the budget; nothing stays reserved.
    assert hour_counter(held_stack, "dev2") == charged <= TOKEN_BUDGET
    assert usage["usage"]["hour"]["inputTokens"] + usage["usage"]["hour"]["outputTokens"] == charged
    assert usage["limits"]["tokens"]["remaining"] == TOKEN_BUDGET - charged
    # Each chat read three times the tokens that four bytes a token (the old reservation's measure) would say.
    for n, final in zip(acked, finals, strict=True):
        assert final["usage"]["inputTokens"] > 2 * math.ceil(len(prompts[n].encode("utf-8")) / 4)


def pool_counter(stack) -> tuple[int, int]:
    """The team's month record: (`cost`, settled plus reserved; `costMicros`, settled), micro-dollars."""
    key = {"pk": {"S": "GROUP#team"}, "sk": {"S": time.strftime("M#%Y-%m", time.gmtime(HELD_CLOCK))}}
    item = aws(stack, "dynamodb").get_item(TableName="llm-ide-local-usage", Key=key, ConsistentRead=True)["Item"]
    return int(item["cost"]["N"]), int(item.get("costMicros", {"N": "0"})["N"])


def test_a_pooled_group_budget_is_never_outrun_by_its_members_concurrent_chats(team_stack):
    limit = round(TEAM_POOL_USD * 10**6)
    with team_stack.connect("dev") as alice, team_stack.connect("dev2") as bob:
        clients = [alice if n % 2 else bob for n in range(8)]
        prompts = [unique(dense_prompt(n)) for n in range(8)]
        # Sonnet 4's worst case per chat: ~370 input tokens at the cache-write price (3.75 USD per million) and
        # 600 output at 15: about 10,400 micro-dollars; the pool of 50,000 holds four, and a fifth lowered.
        ids = [c.send("chat.send", prompt=p, model=SONNET, maxTokens=600) for c, p in zip(clients, prompts,
                                                                                          strict=True)]
        answers = [c.next_frame(i, timeout=30) for c, i in zip(clients, ids, strict=True)]
        acked = [n for n, a in enumerate(answers) if a["type"] == "ack"]
        refused = [a for a in answers if a["type"] == "error"]
        assert 2 <= len(acked) < 8 and {clients[n] for n in acked} == {alice, bob}
        assert all(r["error"]["code"] == "BUDGET_EXCEEDED" and "group 'team'" in r["error"]["message"]
                   for r in refused)
        assert pool_counter(team_stack)[0] <= limit  # settled + reserved, while they run
        finals = [final_frame(clients[n], ids[n]) for n in acked]
        assert {f["type"] for f in finals} == {"done"}
        limits = usage_of(alice)["limits"]
    spent = sum(round(f["usage"]["costUsd"] * 10**6) for f in finals)
    assert pool_counter(team_stack) == (spent, spent) and spent <= limit
    assert limits["cost"] == {"limit": TEAM_POOL_USD, "remaining": pytest.approx((limit - spent) / 10**6),
                              "resetAt": limits["cost"]["resetAt"], "window": "month"}

