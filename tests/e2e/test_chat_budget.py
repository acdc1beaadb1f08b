"""Chats against the token budget end to end, on a stack of their own with the default limits
(10,000 tokens an hour, 100 requests a minute, a 256-token floor) and a clock that stands still
(HELD_CLOCK): reservations in the ack, settlements in done and in usage.get, lowered maxTokens,
refusals and concurrency."""
from __future__ import annotations

import base64
import json
import math
import time

import boto3
import pytest

from tests.e2e.conftest import HELD_CLOCK, start_stack, stop_stack
from tests.e2e.test_chat import chat, text_of
from tests.e2e.test_chat_sessions import seen_by_model

FLOOR = 256  # TOKEN_RESERVATION_FLOOR's default


@pytest.fixture(scope="module")
def budget_stack(tmp_path_factory):
    # A larger output cap only so that one held chat can reserve (nearly) the whole budget.
    defaults = {"RATE_LIMIT_REQUESTS_PER_MINUTE": "", "TOKEN_BUDGET_PER_HOUR": "", "LIMITS_BY_GROUP": "",
                "TOKEN_RESERVATION_FLOOR": "", "MAX_OUTPUT_TOKENS": "20000", "DEV_FIXED_CLOCK": str(HELD_CLOCK)}
    running = start_stack(tmp_path_factory.mktemp("budget-stack"), env=defaults)
    yield running
    stop_stack(running.process)


def tokens(text: str) -> int:
    """The app's measure: about 4 bytes of UTF-8 a token, rounded up."""
    return math.ceil(len(text.encode("utf-8")) / 4)


def usage_of(client):
    frame = client.request("usage.get")
    assert frame["type"] == "result", frame
    return frame["data"]


def held_chat(client, max_tokens):
    """A chat that holds its reservation until cancelled; returns its id. Its model (Claude Sonnet 4,
    which writes up to 64,000 tokens) lets one chat reserve (nearly) the whole budget."""
    chat_id = client.send("chat.send", prompt="[[slow:3000]] hold", maxTokens=max_tokens,
                          model="claude-sonnet-4-20250514")
    ack = client.next_frame(chat_id, timeout=15)
    assert ack["type"] == "ack", ack
    return chat_id, ack


def release(client, chat_id):
    assert client.request("chat.cancel", requestId=chat_id)["type"] == "result"
    frames: list[dict] = []
    while not frames or frames[-1]["type"] == "delta":
        frames.append(client.next_frame(chat_id, timeout=15))
    assert frames[-1]["type"] == "done" and frames[-1]["stopReason"] == "cancelled"
    return frames[-1]


def test_usage_get_equals_the_sum_of_the_chats_usage_whatever_their_end(budget_stack):
    with budget_stack.connect("dev2") as client:
        before = usage_of(client)
        remaining = before["limits"]["tokens"]["remaining"]
        hour = dict(before["usage"]["hour"])
        # A finished chat: the ack holds its worst case, done gives back what was not used.
        prompt = "Count my tokens, please."
        ack, deltas, done = chat(client, prompt, maxTokens=100)
        assert ack["limits"]["tokens"]["remaining"] == remaining - (tokens(prompt) + 100)
        assert done["usage"] == {"inputTokens": tokens(prompt), "outputTokens": tokens(prompt),
                                 "totalTokens": 2 * tokens(prompt), "cacheReadInputTokens": 0,
                                 "cacheWriteInputTokens": 0}
        assert done["limits"]["tokens"]["remaining"] == remaining - done["usage"]["totalTokens"]
        used = [done["usage"]]
        # A stream that breaks mid-way settles the served text and the input estimate.
        broken = "[[midstream-error]] " + "this reply breaks half way " * 4
        _, deltas, error = chat(client, broken, maxTokens=500)
        assert error["type"] == "error" and error["error"]["code"] == "UPSTREAM_ERROR"
        served = text_of(deltas)
        assert 0 < len(served) < len(broken)
        used.append({"inputTokens": tokens(broken), "outputTokens": tokens(served)})
        # A cancelled chat settles what was served before the cancel.
        chat_id, _ = held_chat(client, 300)
        cancelled = release(client, chat_id)
        used.append(cancelled["usage"])
        after = usage_of(client)
        for field in ("inputTokens", "outputTokens"):
            assert after["usage"]["hour"][field] - hour[field] == sum(u[field] for u in used)
        total = sum(u["inputTokens"] + u["outputTokens"] for u in used)
        assert after["limits"]["tokens"]["remaining"] == remaining - total  # nothing stays reserved
        assert after["usage"]["hour"]["requests"] - hour["requests"] == 5  # 3 chats, a cancel, a usage.get


def test_max_tokens_is_lowered_to_what_is_left_or_the_chat_is_refused(budget_stack):
    with budget_stack.connect("dev2") as client:
        remaining = usage_of(client)["limits"]["tokens"]["remaining"]
        # Hold all but 1,000 tokens: a chat wanting 4,000 gets what is left (over the floor).
        hold_input = tokens("[[slow:3000]] hold")
        chat_id, ack = held_chat(client, remaining - hold_input - 1000)
        left = ack["limits"]["tokens"]["remaining"]
        assert left == 1000
        prompt = "[[dump]] how much may I say?"
        ack, deltas, done = chat(client, prompt, maxTokens=4000)
        assert seen_by_model(deltas)["inferenceConfig"]["maxTokens"] == left - tokens(prompt)
        assert ack["limits"]["tokens"]["remaining"] == 0
        release(client, chat_id)

        # Hold all but 200 (under the floor): refused with BUDGET_EXCEEDED until the hour ends.
        remaining = usage_of(client)["limits"]["tokens"]["remaining"]
        chat_id, ack = held_chat(client, remaining - hold_input - 200)
        assert ack["limits"]["tokens"]["remaining"] == 200
        frame = client.request("chat.send", prompt="no room", maxTokens=1000)
        assert frame["type"] == "error" and frame["error"]["code"] == "BUDGET_EXCEEDED", frame
        assert frame["error"]["retryAfter"] == math.ceil(3600 - HELD_CLOCK % 3600)  # the seconds left of the hour
        # A chat that asks for less than the floor and fits is served as asked.
        ack, _, done = chat(client, "small", maxTokens=100)
        assert done["type"] == "done" and ack["limits"]["tokens"]["remaining"] == 200 - tokens("small") - 100
        release(client, chat_id)


def test_twenty_concurrent_chats_whose_reservations_fit_five_admit_exactly_five(budget_stack):
    with budget_stack.connect("dev") as first, budget_stack.connect("dev") as second:
        remaining = usage_of(first)["limits"]["tokens"]["remaining"]
        limit = usage_of(first)["limits"]["tokens"]["limit"]
        prompt = "[[slow:3000]] race"
        per_chat = remaining // 5  # five fit; what a sixth would find is under the floor
        assert remaining - 5 * per_chat < FLOOR
        clients = [first if n % 2 else second for n in range(20)]
        ids = [c.send("chat.send", prompt=prompt, maxTokens=per_chat - tokens(prompt)) for c in clients]
        answers = [c.next_frame(i, timeout=30) for c, i in zip(clients, ids, strict=True)]
        acks = [a for a in answers if a["type"] == "ack"]
        refusals = [a for a in answers if a["type"] == "error"]
        assert len(acks) == 5 and len(refusals) == 15, [a["type"] for a in answers]
        assert {r["error"]["code"] for r in refusals} == {"BUDGET_EXCEEDED"}
        assert all(r["error"]["retryAfter"] >= 1 for r in refusals)
        assert min(a["limits"]["tokens"]["remaining"] for a in acks) == remaining - 5 * per_chat
        # The budget counter itself (settled + reserved; the wire's `remaining` stops at 0).
        assert hour_counter(budget_stack, "dev") == limit - remaining + 5 * per_chat <= limit
        settled = [release(client, chat_id) for client, chat_id, answer in zip(clients, ids, answers, strict=True)
                   if answer["type"] == "ack"]
        after = usage_of(first)
        served = sum(d["usage"]["totalTokens"] for d in settled)
        assert after["limits"]["tokens"]["remaining"] == remaining - served  # nothing stays reserved
        assert hour_counter(budget_stack, "dev") == limit - remaining + served <= limit


def hour_counter(stack, username):
    """The `tokens` counter of the user's current hour record in the usage table."""
    claims = stack.tokens(username).access_token.split(".")[1]
    sub = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sub"]
    dynamodb = boto3.client("dynamodb", endpoint_url=stack.document["awsEndpointUrl"], region_name="us-east-1",
                            aws_access_key_id="local", aws_secret_access_key="local")
    key = {"pk": {"S": f"USER#{sub}"}, "sk": {"S": time.strftime("H#%Y-%m-%dT%H", time.gmtime(HELD_CLOCK))}}
    item = dynamodb.get_item(TableName="llm-ide-local-usage", Key=key, ConsistentRead=True)["Item"]
    return int(item["tokens"]["N"])
