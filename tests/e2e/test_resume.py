"""Resumable chats end to end against the local stack: a chat outlives its connection, `chat.resume` from a
new connection replays what was missed and moves the rest of the stream there (after one drop, two, a drop
before the first delta, a resume racing the worker's posts, after the chat ended), bad resumes move
nothing, a chat cancelled from a new connection ends cancelled and is settled once; and the clients
that reconnect by themselves: `llm-ide chat` through connections the gateway closes every 5 s, and a
token that expires mid-chat."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from client import IdeClient, Reconnect, login
from client.auth import refresh
from devserver import aws as dev_aws
from devserver.launcher import ROOT
from tests.e2e.conftest import LLM_IDE
from tests.e2e.test_chat import requests_table, wait_for

pytestmark = pytest.mark.e2e


def prompt_of(tokens: int, slow_ms: int) -> str:
    """A prompt the echo model answers with itself in about `tokens` tokens, `slow_ms` apart (≤ 4 bytes each)."""
    head = f"[[slow:{slow_ms}]] #{uuid.uuid4().hex[:8]} ü😀 "
    words = " ".join(f"w{i}" for i in range(tokens * 4))
    return (head + words)[: tokens * 4].rstrip()


def unique_id() -> str:
    """A chat's own `id`, unlike any a new connection's client numbers its requests with: the frames of a
    resumed chat carry the id it was sent with, on every connection."""
    return f"chat-{uuid.uuid4().hex[:12]}"


def read(client: IdeClient, chat_id: str, *, deltas: int | None = None, timeout: float = 30.0) -> list[dict]:
    """The chat's frames on this connection: `deltas` stream frames more, or up to its end."""
    frames: list[dict] = []
    while True:
        frame = client.next_frame(chat_id, timeout=timeout)
        frames.append(frame)
        if frame["type"] in ("done", "error"):
            return frames
        if deltas is not None and sum(f["type"] == "delta" for f in frames) >= deltas:
            return frames


def stream_of(frames: list[dict]) -> list[dict]:
    return [f for f in frames if f["type"] in ("delta", "toolUse")]


def last_seq(frames: list[dict], default: int = -1) -> int:
    seqs = [f["seq"] for f in stream_of(frames)]
    return seqs[-1] if seqs else default


def resume(client: IdeClient, request_id: str, after_seq) -> dict:
    return client.request("chat.resume", requestId=request_id, afterSeq=after_seq, timeout=10)


def assert_one_whole_reply(frames: list[dict], prompt: str) -> dict:
    """What the client kept, in the order it came: the prompt byte for byte, seq 0..n-1, one done."""
    stream = stream_of(frames)
    assert [f["seq"] for f in stream] == list(range(len(stream)))  # no gap, no repeat, in order
    assert "".join(f["text"] for f in stream).encode("utf-8") == prompt.encode("utf-8")
    ends = [f for f in frames if f["type"] in ("done", "error")]
    assert len(ends) == 1 and ends[0]["type"] == "done" and frames[-1] is ends[0], \
        [(f["type"], f.get("seq")) for f in frames]
    return ends[0]


def day_usage(client: IdeClient) -> dict:
    return client.request("usage.get")["data"]["usage"]["day"]


def assert_settled_once(stack, request_id: str, before: dict, after: dict, done: dict) -> dict:
    """The chat's usage counted once: in its record, and in the day's counters (no other chat ran meanwhile)."""
    usage = done["usage"]
    record = requests_table(stack).get_item(Key={"requestId": request_id}, ConsistentRead=True)["Item"]
    assert (record["inputTokens"], record["outputTokens"]) == (usage["inputTokens"], usage["outputTokens"])
    assert after["inputTokens"] - before["inputTokens"] == usage["inputTokens"]
    assert after["outputTokens"] - before["outputTokens"] == usage["outputTokens"]
    return record


def drop_and_resume(stack, prompt: str, drops: list[int]) -> None:
    """Send `prompt`; after each number of deltas in `drops` (0: right after the ack), drop the connection,
    reconnect and resume with the last seq seen; then read to the end and check the whole."""
    with stack.connect() as watcher:
        before = day_usage(watcher)
    client = stack.connect()
    chat_id = client.send("chat.send", id=unique_id(), prompt=prompt, maxTokens=2000)
    ack = client.next_frame(chat_id, timeout=10)
    assert ack["type"] == "ack"
    kept: list[dict] = []
    for count in drops:
        if count:
            kept += read(client, chat_id, deltas=count)
        client.close()
        client = stack.connect()
        result = resume(client, ack["requestId"], last_seq(kept))
        assert result["type"] == "result" and result["data"]["requestId"] == ack["requestId"]
        assert result["data"]["status"] == "running" and result["data"]["lastSeq"] >= last_seq(kept)
    kept += read(client, chat_id)
    client.close()
    done = assert_one_whole_reply(kept, prompt)
    with stack.connect() as watcher:
        record = assert_settled_once(stack, ack["requestId"], before, day_usage(watcher), done)
    assert record["usageEstimated"] is False and record["status"] == "done"  # the model's own count, to the end


def test_a_300_token_chat_dropped_after_10_deltas_and_resumed_is_whole(stack):
    drop_and_resume(stack, prompt_of(300, 50), [10])


def test_a_chat_dropped_twice_and_resumed_twice_is_whole(stack):
    drop_and_resume(stack, prompt_of(150, 20), [4, 4])


def test_a_chat_dropped_before_its_first_delta_is_resumed_from_the_start(stack):
    drop_and_resume(stack, prompt_of(12, 300), [0])  # the first token comes 300 ms after the model is called


def test_resumes_racing_the_workers_posts_lose_nothing_and_repeat_nothing(stack):
    """Each resume is sent while the worker streams to the connection before it, which stays open: the
    worker follows it at its next frame boundary. The old connection may get frames past the seq the
    resume named (they come again on the new one); the client keeps each connection's frames up to the seq
    it resumed from, and then the new connection's, which start right after it."""
    prompt = prompt_of(400, 20)  # 8 s: enough for the four resumes below
    client = stack.connect()
    chat_id = client.send("chat.send", id=unique_id(), prompt=prompt, maxTokens=2000)
    request_id = client.next_frame(chat_id)["requestId"]
    connections, received = [client], [read(client, chat_id, deltas=1)]
    afters = [-1]
    for _ in range(4):
        after = last_seq(received[-1])
        newer = stack.connect()
        assert resume(newer, request_id, after)["data"]["status"] == "running"
        connections.append(newer)
        afters.append(after)
        received.append(read(newer, chat_id, deltas=2))  # moved: the new connection has frames
        time.sleep(0.3)
        received[-2] += _drain(connections[-2], chat_id)  # what reached the older one meanwhile
    received[-1] += read(connections[-1], chat_id)
    view: list[dict] = []
    for index, frames in enumerate(received):
        stream = stream_of(frames)
        start = afters[index] + 1
        assert [f["seq"] for f in stream] == list(range(start, start + len(stream))), index  # no gap on any
        upto = afters[index + 1] if index + 1 < len(afters) else None
        view += [f for f in frames if upto is None or ("seq" in f and f["seq"] <= upto)]
    assert not any(f["type"] == "done" for frames in received[:-1] for f in frames)  # one done, on the last
    assert_one_whole_reply(view, prompt)
    for connection in connections:
        connection.close()


def _drain(client: IdeClient, chat_id: str) -> list[dict]:
    frames = []
    try:
        while True:
            frames.append(client.next_frame(chat_id, timeout=0.2))
    except TimeoutError:
        return frames


def test_an_ended_chat_is_replayed_and_bad_resumes_are_refused(stack):
    prompt = prompt_of(60, 20)  # 1.2 s: frames 300 ms apart
    client = stack.connect()
    chat_id = client.send("chat.send", id=unique_id(), prompt=prompt)
    request_id = client.next_frame(chat_id)["requestId"]
    kept = read(client, chat_id, deltas=2)
    client.close()
    assert kept[-1]["type"] == "delta"  # dropped before its end
    table = requests_table(stack)
    assert wait_for(lambda: table.get_item(Key={"requestId": request_id})["Item"]["status"] == "done", timeout=10)
    with stack.connect() as client, stack.connect("dev2") as other:
        for name, after, code in ((request_id, "3", "BAD_REQUEST"), (request_id, 10**6, "BAD_REQUEST"),
                                  (uuid.uuid4().hex, -1, "NOT_FOUND"), (chat_id, -1, "NOT_FOUND")):
            refused = resume(client, name, after)
            assert refused["type"] == "error" and refused["error"]["code"] == code, (name, after, refused)
        refused = resume(other, request_id, -1)  # another user's: as if there were none
        assert refused["type"] == "error" and refused["error"]["code"] == "NOT_FOUND"
        result = resume(client, request_id, last_seq(kept))
        assert result["data"]["status"] == "done" and result["data"]["requestId"] == request_id
        kept += read(client, chat_id)
        assert_one_whole_reply(kept, prompt)
        # Replayed as often as asked, from the start too.
        resume(client, request_id, -1)
        assert_one_whole_reply(read(client, chat_id), prompt)


def test_bad_resumes_of_a_running_chat_move_nothing(stack):
    prompt = prompt_of(60, 30)
    with stack.connect() as client, stack.connect() as second, stack.connect("dev2") as other:
        chat_id = client.send("chat.send", id=unique_id(), prompt=prompt)
        request_id = client.next_frame(chat_id)["requestId"]
        kept = read(client, chat_id, deltas=2)
        assert resume(other, request_id, -1)["error"]["code"] == "NOT_FOUND"
        beyond = resume(second, request_id, last_seq(kept) + 1000)  # refused by the worker, which knows the last seq
        assert beyond["type"] == "error" and beyond["error"]["code"] == "BAD_REQUEST"
        kept += read(client, chat_id)  # the stream stayed on the first connection
        assert_one_whole_reply(kept, prompt)
        assert _drain(second, chat_id) == []


@pytest.mark.parametrize("bad_first", [True, False])
def test_a_bad_and_a_good_resume_sent_at_once_are_each_answered_and_the_good_one_gets_the_stream(stack, bad_first):
    """Two sockets resume a running chat at the same moment, one with an afterSeq beyond its last frame: both
    reach the record before the worker's next poll. The bad one is refused BAD_REQUEST; the good one gets its
    result and the whole rest of the reply, in whichever order they came."""
    prompt = prompt_of(100, 40)  # 4 s
    first = stack.connect()
    chat_id = first.send("chat.send", id=unique_id(), prompt=prompt)
    request_id = first.next_frame(chat_id)["requestId"]
    kept = read(first, chat_id, deltas=2)
    first.close()
    with stack.connect() as good, stack.connect() as bad:
        sends = [(bad, "resume-bad", 10**6), (good, "resume-good", last_seq(kept))]
        for client, resume_id, after in (sends if bad_first else sends[::-1]):
            client.send_raw(json.dumps({"action": "chat.resume", "id": resume_id, "requestId": request_id,
                                        "afterSeq": after}))
        refused = bad.next_frame("resume-bad", timeout=10)
        assert refused["type"] == "error" and refused["error"]["code"] == "BAD_REQUEST", refused
        result = good.next_frame("resume-good", timeout=10)
        assert result["type"] == "result" and result["data"]["status"] == "running", result
        kept += read(good, chat_id)
        assert_one_whole_reply(kept, prompt)
        assert _drain(bad, chat_id) == []


def test_a_chat_cancelled_from_a_new_connection_ends_cancelled_and_is_settled_once(stack):
    prompt = prompt_of(200, 20)
    with stack.connect() as watcher:
        before = day_usage(watcher)
    client = stack.connect()
    chat_id = client.send("chat.send", id=unique_id(), prompt=prompt)
    request_id = client.next_frame(chat_id)["requestId"]
    kept = read(client, chat_id, deltas=3)
    client.close()  # dropped on purpose
    with stack.connect() as client:
        assert client.request("chat.cancel", requestId=request_id)["data"] == {"cancelled": True}
        resume(client, request_id, last_seq(kept))
        kept += read(client, chat_id)
        done = kept[-1]
        assert done["type"] == "done" and done["stopReason"] == "cancelled"
        stream = stream_of(kept)
        assert [f["seq"] for f in stream] == list(range(len(stream)))
        assert prompt.startswith("".join(f["text"] for f in stream))
        record = assert_settled_once(stack, request_id, before, day_usage(client), done)
        assert record["status"] == "cancelled"


def test_a_chat_whose_client_left_for_good_runs_to_its_end_and_its_session_keeps_the_whole_reply(stack):
    """Nobody resumes it: the worker reads the model to its end, settles the model's own count once, and
    appends the whole reply to the session as a whole reply (not marked cancelled, as a partial one is)."""
    prompt = prompt_of(80, 20)
    with stack.connect() as client:
        session_id = client.request("session.create", title="left")["data"]["session"]["sessionId"]
        before = day_usage(client)
    client = stack.connect()
    chat_id = client.send("chat.send", id=unique_id(), prompt=prompt, sessionId=session_id)
    request_id = client.next_frame(chat_id)["requestId"]
    read(client, chat_id, deltas=1)
    client.close()  # and never back
    table = requests_table(stack)
    assert wait_for(lambda: table.get_item(Key={"requestId": request_id})["Item"]["status"] != "streaming",
                    timeout=15)
    with stack.connect() as client:
        messages = client.request("session.get", sessionId=session_id)["data"]["messages"]
        assert [(m["role"], m["content"], m.get("cancelled", False)) for m in messages] == [
            ("user", prompt, False), ("assistant", prompt, False)]
        record = table.get_item(Key={"requestId": request_id}, ConsistentRead=True)["Item"]
        assert record["status"] == "done" and record["usageEstimated"] is False
        after = day_usage(client)
    assert after["outputTokens"] - before["outputTokens"] == record["outputTokens"]
    assert after["inputTokens"] - before["inputTokens"] == record["inputTokens"]


# --- clients that reconnect by themselves ---------------------------------------------------------------

def test_llm_ide_chat_shows_the_whole_answer_through_connections_closed_every_5_seconds(short_stack, tmp_path):
    env = {**os.environ, "LLM_IDE_ENDPOINTS": str(short_stack.endpoints_path), "LLM_IDE_HOME": str(tmp_path)}
    assert subprocess.run([LLM_IDE, "login", "--username", "dev"], cwd=ROOT, env=env, capture_output=True,
                          timeout=60, check=False).returncode == 0
    prompt = prompt_of(200, 100)  # 20 s
    closed_before = short_stack.log_text().count("its connection duration was reached")
    result = subprocess.run([LLM_IDE, "chat", prompt, "--max-tokens", "1000"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr
    reply, usage = result.stdout.rstrip("\n").rsplit("\n", 1)
    assert reply == prompt and usage.startswith("[end_turn] ")
    assert short_stack.log_text().count("its connection duration was reached") - closed_before >= 3


@pytest.mark.parametrize("how", ["renewed before it expires", "renewed after UNAUTHORIZED"])
def test_a_token_that_expires_mid_chat_is_renewed_and_the_chat_resumed(stack, how):
    """Tokens of 6 s, a chat of 16 s: the client renews the token and moves to a new connection, either
    ahead of the expiry, or when the backend answers its keep-alive with UNAUTHORIZED (and closes)."""
    document = stack.document["cognito"]
    cognito = dev_aws.aws_client("cognito-idp", document["endpointUrl"])
    cognito.update_user_pool_client(UserPoolId=document["userPoolId"], ClientId=document["clientId"],
                                    AccessTokenValidity=6, IdTokenValidity=6,
                                    TokenValidityUnits={"AccessToken": "seconds", "IdToken": "seconds"})
    try:
        endpoints = stack.endpoints
        pool = endpoints.user_pool()
        tokens = [login("dev2", endpoints.dev_password("dev2"), client_id=endpoints.client_id,
                        region=endpoints.region, user_pool_id=endpoints.user_pool_id,
                        endpoint_url=endpoints.cognito_endpoint)]
        renewals: list[bool] = []

        def source(force_refresh: bool) -> tuple[str, float]:
            if force_refresh or tokens[-1].expired(1):
                renewals.append(force_refresh)
                tokens.append(refresh(tokens[-1], pool))
            return tokens[-1].access_token, float(tokens[-1].expires_at)

        # Renewed ahead of the expiry, or never ahead: then only the backend's refusal renews it.
        margin = 60.0 if how == "renewed before it expires" else -3600.0
        prompt = prompt_of(160, 100)
        reconnect = Reconnect(source, keepalive_seconds=1.0, renew_margin_seconds=margin)
        with IdeClient(endpoints.websocket_url, reconnect=reconnect) as client:
            frames = list(client.chat(prompt, maxTokens=1000, timeout=30))
            assert client.reconnects >= 1
        assert frames[0]["type"] == "ack"
        assert_one_whole_reply(frames[1:], prompt)
        assert len({t.access_token for t in tokens}) >= 2 and renewals
    finally:
        cognito.update_user_pool_client(UserPoolId=document["userPoolId"], ClientId=document["clientId"],
                                        AccessTokenValidity=1, IdTokenValidity=1,
                                        TokenValidityUnits={"AccessToken": "hours", "IdToken": "hours"})


def test_a_client_without_keep_alive_is_closed_when_idle_and_one_with_it_is_not(short_stack):
    """The gateway's idle close (3 s on this stack), against the client's keep-alive."""
    token = short_stack.tokens("dev").access_token
    with IdeClient(short_stack.endpoints.websocket_url, token) as idle:
        opened = time.monotonic()
        assert idle.closed.wait(6) and idle.close_code == 1001
        assert time.monotonic() - opened < 4.5  # idle, before the 5 s every connection is given
    with IdeClient(short_stack.endpoints.websocket_url,
                   reconnect=Reconnect(lambda force: (token, time.time() + 3600), keepalive_seconds=0.5)) as kept:
        time.sleep(4)
        assert kept.reconnects == 0 and kept.ping() < 1
