"""Streaming chat end to end: the client against the local stack, the echo model and its faults."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import boto3
import pytest

from devserver.launcher import ROOT
from devserver.tokenizer import count_tokens
from tests.e2e.conftest import LLM_IDE

DEFAULT_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def requests_table(stack):
    return boto3.resource("dynamodb", endpoint_url=stack.document["awsEndpointUrl"], region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local").Table("llm-ide-local-requests")


def chat(client, prompt, **options):
    """(ack, deltas, final) of one chat; asserts the frame order of the protocol."""
    frames = list(client.chat(prompt, timeout=30, **options))
    ack, *rest = frames
    assert ack["type"] == "ack", frames[:3]
    deltas, final = rest[:-1], rest[-1]
    assert all(f["type"] == "delta" for f in deltas), [f["type"] for f in rest]
    assert [f["seq"] for f in deltas] == list(range(len(deltas)))  # 0, 1, 2... no gap
    assert final["type"] in ("done", "error")
    return ack, deltas, final


def text_of(deltas):
    return "".join(f["text"] for f in deltas)


def unique(prompt):
    """A prompt no other test sends (the `-once` faults remember prompts)."""
    return f"{prompt} #{uuid.uuid4().hex[:8]}"


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def _twenty_kb() -> str:
    unit = "def f(x):\n    return x * 2  # naïve 😀 漢字 e\u0301\n"
    text = unit * (20_000 // len(unit.encode("utf-8")) + 1)
    while len(text.encode("utf-8")) > 20_480:
        text = text[:-1]
    return text


PROMPTS = {
    "ascii": "Hello, world! The quick brown fox jumps over the lazy dog. 0123456789 ~!@#$%^&*()",
    "emoji": "👋🏽 family: 👨‍👩‍👧‍👦, flags: 🇫🇷🇯🇵, and 😀😃😄😁 in a row",
    "cjk": "日本語のテキスト、中文文本，한국어 텍스트。漢字と仮名が混ざる文章です。",
    "combining": "e\u0301 a\u0308 n\u0303 o\u0328\u0304 Z\u0335\u0321\u0322a\u0336\u0317l\u0334g\u0338o\u0337",
    "20kb": _twenty_kb(),
}


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_the_reply_is_the_prompt_byte_for_byte(stack, name):
    prompt = PROMPTS[name]
    # The default model (Claude 3 Haiku) writes at most 4,096 tokens; the 20 KB echo takes more.
    model = {"model": "claude-sonnet-4-20250514"} if name == "20kb" else {}
    with stack.connect() as client:
        ack, deltas, done = chat(client, prompt, maxTokens=8192, **model)
    assert text_of(deltas).encode("utf-8") == prompt.encode("utf-8")
    assert len(ack["requestId"]) == 32 and ack["sessionId"] is None
    assert ack["model"] == ("us.anthropic.claude-sonnet-4-20250514-v1:0" if model else DEFAULT_MODEL)
    assert set(ack["limits"]) == {"requests", "tokens"}
    assert set(ack["limits"]["tokens"]) == {"limit", "remaining", "resetAt"}
    assert done["type"] == "done" and done["stopReason"] == "end_turn"
    usage = done["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    # The echo model reads the prompt and writes it back: its tokens each way, by the emulator's tokenizer (at
    # least a byte a token).
    assert usage["inputTokens"] == usage["outputTokens"] == count_tokens(prompt) <= len(prompt.encode("utf-8"))
    assert set(done["limits"]) == {"requests", "tokens"}
    record = requests_table(stack).get_item(Key={"requestId": ack["requestId"]}, ConsistentRead=True)["Item"]
    assert record["status"] == "done" and record["stopReason"] == "end_turn"
    assert record["outputTokens"] == usage["outputTokens"] and record["usageEstimated"] is False
    assert record["userSub"] and record["connectionId"] and record["ttl"] > time.time()


def test_max_tokens_cuts_the_reply(stack):
    prompt = "abcd" * 100
    with stack.connect() as client:
        _ack, deltas, done = chat(client, prompt, maxTokens=10)
    assert text_of(deltas) == prompt[:40]
    assert done["stopReason"] == "max_tokens" and done["usage"]["outputTokens"] == 10


def test_dump_shows_the_system_prompt_and_the_request(stack):
    with stack.connect() as client:
        _ack, deltas, done = chat(client, "[[dump]] what do you see?", system="You are terse.",
                                  maxTokens=2000, temperature=0.25, model="anthropic.claude-3-5-sonnet-20240620-v1:0")
    seen = json.loads(text_of(deltas))
    assert done["type"] == "done"
    assert seen["system"] == ["You are terse."]
    assert seen["messages"] == [{"role": "user", "text": "[[dump]] what do you see?"}]
    assert seen["modelId"] == "anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert seen["inferenceConfig"] == {"maxTokens": 2000, "temperature": 0.25}


def test_throttling_that_persists_is_upstream_throttled_without_deltas(stack):
    with stack.connect() as client:
        ack, deltas, error = chat(client, unique("[[throttle]] hello"))
    assert deltas == []
    assert error["type"] == "error" and error["error"]["code"] == "UPSTREAM_THROTTLED"
    assert error["error"]["retryAfter"] >= 1
    record = requests_table(stack).get_item(Key={"requestId": ack["requestId"]}, ConsistentRead=True)["Item"]
    assert record["status"] == "error" and record["errorCode"] == "UPSTREAM_THROTTLED"


@pytest.mark.parametrize("directive", ["[[throttle-once]]", "[[stream-throttle-once]]"])
def test_throttling_once_succeeds_after_a_retry(stack, directive):
    prompt = unique(f"{directive} retried, then answered")
    with stack.connect() as client:
        _ack, deltas, done = chat(client, prompt)
    assert done["type"] == "done" and text_of(deltas) == prompt


def test_midstream_error_follows_the_deltas_already_sent(stack):
    prompt = unique("[[midstream-error]] " + "some words of a reply " * 10)
    with stack.connect() as client:
        ack, deltas, error = chat(client, prompt)
    assert deltas and prompt.startswith(text_of(deltas)) and text_of(deltas) != prompt
    assert error["type"] == "error" and error["error"]["code"] == "UPSTREAM_ERROR"
    record = requests_table(stack).get_item(Key={"requestId": ack["requestId"]}, ConsistentRead=True)["Item"]
    assert record["status"] == "error" and record["usageEstimated"] is True and record["outputTokens"] > 0


def test_a_slow_model_still_streams_the_whole_reply(stack):
    prompt = unique("[[slow:60]] a slow reply, still complete: ünïcödé 😀")
    with stack.connect() as client:
        sent = time.monotonic()
        _ack, deltas, done = chat(client, prompt)
        elapsed = time.monotonic() - sent
    assert done["type"] == "done" and text_of(deltas) == prompt
    assert len(deltas) >= 2  # it arrived over time, not in one piece
    # The directive's pacing: N ms between the model's tokens, so the reply spans (tokens - 1) * N ms.
    from devserver.bedrock import split_tokens

    key = hashlib.sha256(prompt.encode()).hexdigest()
    with urllib.request.urlopen(f"{stack.bedrock_url}/_emulator/streams/{key}", timeout=5) as response:
        model = json.loads(response.read())
    paced = (len(split_tokens(prompt)) - 1) * 0.060  # ~1 s; the emulator keeps to a schedule from its start,
    spread = model["last_token_at"] - model["first_token_at"]  # so a late first token shortens the spread a little
    assert paced - 0.060 <= spread < paced + 2
    assert elapsed >= spread


@pytest.mark.parametrize("by", ["client id", "server id"])
def test_cancel_ends_the_stream_with_done_cancelled(stack, by):
    prompt = "[[slow:20]] " + "x" * 2000  # 500 tokens: 10 s if not cancelled
    with stack.connect() as client:
        chat_id = client.send("chat.send", prompt=prompt)
        ack = client.next_frame(chat_id)
        assert client.next_frame(chat_id)["type"] == "delta"
        started = time.monotonic()
        result = client.request("chat.cancel", requestId=chat_id if by == "client id" else ack["requestId"])
        assert result == {"type": "result", "id": result["id"], "data": {"cancelled": True}}
        rest = list(client.frames(chat_id, timeout=10))
        elapsed = time.monotonic() - started
    done = rest[-1]
    assert done["type"] == "done" and done["stopReason"] == "cancelled"
    assert all(f["type"] == "delta" for f in rest[:-1])
    # The worker polls every 200 ms, so this takes ~0.5 s; the bound only has to tell it from the 10 s the
    # reply would take, with room for a loaded machine (a tight bound here was the suite's likeliest flake).
    assert elapsed < 5, elapsed
    assert done["usage"]["outputTokens"] < 500
    record = requests_table(stack).get_item(Key={"requestId": ack["requestId"]}, ConsistentRead=True)["Item"]
    assert record["status"] == "cancelled" and record["cancelRequested"] is True


def test_only_the_owner_can_cancel(stack):
    with stack.connect("dev") as owner, stack.connect("dev2") as other:
        chat_id = owner.send("chat.send", prompt="[[slow:20]] " + "y" * 400)
        ack = owner.next_frame(chat_id)
        for name in (ack["requestId"], chat_id, "no-such-request", uuid.uuid4().hex):
            frame = other.request("chat.cancel", requestId=name)
            assert frame["type"] == "error" and frame["error"]["code"] == "NOT_FOUND", frame
        assert owner.request("chat.cancel", requestId=chat_id)["data"] == {"cancelled": True}
        frames = list(owner.frames(chat_id, timeout=10))
        assert frames[-1]["stopReason"] == "cancelled"
        # A finished request is no longer running.
        frame = owner.request("chat.cancel", requestId=chat_id)
        assert frame["type"] == "error" and frame["error"]["code"] == "NOT_FOUND"


def test_a_client_gone_mid_stream_does_not_stop_the_chat_which_is_recorded_whole(stack):
    prompt = "[[slow:5]] " + "z" * 800  # 200 tokens over 1 s
    client = stack.connect()
    chat_id = client.send("chat.send", prompt=prompt)
    ack = client.next_frame(chat_id)
    assert client.next_frame(chat_id)["type"] == "delta"
    client.close()
    table = requests_table(stack)

    def finished():
        item = table.get_item(Key={"requestId": ack["requestId"]}, ConsistentRead=True)["Item"]
        return item if item["status"] != "streaming" else None

    record = wait_for(finished, timeout=10)
    assert record and record["status"] == "done" and record["stopReason"] == "end_turn"
    # The model's own count, all of it (the echo model writes the prompt back).
    assert record["usageEstimated"] is False and record["outputTokens"] == count_tokens(prompt)
    # The model was read to its end, not aborted.
    timing = _timing(stack, hashlib.sha256(prompt.encode()).hexdigest())
    assert timing["tokens"] == count_tokens(prompt) and not timing.get("aborted")


def _timing(stack, key):
    url = f"{stack.bedrock_url}/_emulator/streams/{key}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError:
        return {}


def test_a_null_session_and_no_context_paths_are_a_stateless_chat(stack):
    with stack.connect() as client:
        chat_id = client.send("chat.send", prompt="stateless", sessionId=None, contextPaths=[])
        frames = list(client.frames(chat_id, timeout=30))
    assert frames[0]["type"] == "ack" and frames[-1]["type"] == "done"
    assert text_of(frames[1:-1]) == "stateless"


def test_a_model_outside_the_allow_list_is_refused(stack):
    with stack.connect() as client:
        frame = client.request("chat.send", prompt="hi", model="meta.llama3-70b-instruct-v1:0")
    assert frame["type"] == "error" and frame["error"]["code"] == "MODEL_NOT_ALLOWED"


@pytest.mark.parametrize("params", [
    {},
    {"prompt": ""},
    {"prompt": 42},
    {"prompt": "hi", "maxTokens": 0},
    {"prompt": "hi", "maxTokens": "10"},
    {"prompt": "hi", "temperature": 1.5},
    {"prompt": "hi", "system": ["not", "text"]},
    {"prompt": "hi", "model": 7},
    {"prompt": "hi", "sessionId": "s1"},
    {"prompt": "hi", "contextPaths": ["../a.txt"]},
    {"prompt": "hi", "contextPaths": [7]},
    {"prompt": "hi", "contextPaths": "a.txt"},
])
def test_bad_chat_parameters_are_bad_request(stack, params):
    with stack.connect() as client:
        frame = client.request("chat.send", **params)
    assert frame["type"] == "error" and frame["error"]["code"] == "BAD_REQUEST", frame


def test_a_prompt_over_its_limit_is_payload_too_large(stack):
    with stack.connect() as client:
        frame = client.request("chat.send", prompt="p" * 25_000)  # over 24 KiB, in a frame under 32 KiB
        assert frame["type"] == "error" and frame["error"]["code"] == "PAYLOAD_TOO_LARGE"
        bad = client.request("chat.cancel")
        assert bad["type"] == "error" and bad["error"]["code"] == "BAD_REQUEST"


def test_llm_ide_chat_prints_the_reply_then_the_usage(stack, tmp_path):
    env = {**os.environ, "LLM_IDE_ENDPOINTS": str(stack.endpoints_path), "LLM_IDE_HOME": str(tmp_path)}
    run = lambda *args: subprocess.run([LLM_IDE, *args], cwd=ROOT, env=env,
                                       capture_output=True, text=True, timeout=60, check=False)
    assert run("login", "--username", "dev").returncode == 0
    result = run("chat", "Bonjour, ça va? 😀", "--max-tokens", "100")
    assert result.returncode == 0, result.stderr
    reply, usage = result.stdout.rstrip("\n").rsplit("\n", 1)
    assert reply == "Bonjour, ça va? 😀"
    assert usage.startswith("[end_turn] ") and usage.endswith(" tokens")
    refused = run("chat", "hi", "--model", "not-allowed")
    # Refused before any reply: the error is the first line, not after an empty one.
    assert refused.returncode == 1 and refused.stderr.startswith("error: MODEL_NOT_ALLOWED: "), refused.stderr


def test_ctrl_c_in_llm_ide_chat_cancels_the_chat(stack, tmp_path):
    env = {**os.environ, "LLM_IDE_ENDPOINTS": str(stack.endpoints_path), "LLM_IDE_HOME": str(tmp_path),
           "PYTHONUNBUFFERED": "1"}
    command = [LLM_IDE]
    assert subprocess.run([*command, "login", "--username", "dev"], cwd=ROOT, env=env, capture_output=True,
                          timeout=60, check=False).returncode == 0
    process = subprocess.Popen([*command, "chat", "[[slow:20]] " + "w" * 2000], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        assert process.stdout.read(5) == "[[slo"  # the reply is streaming
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert out.rstrip().endswith("[cancelled]") and out.count("w") < 2000


def signed_in_cli(stack, tmp_path, monkeypatch):
    """The CLI's module and its client class, in this process, signed in as dev to the stack."""
    from client import cli
    from client.connection import IdeClient

    monkeypatch.setenv("LLM_IDE_ENDPOINTS", str(stack.endpoints_path))
    monkeypatch.setenv("LLM_IDE_HOME", str(tmp_path))
    assert cli.main(["login", "--username", "dev"]) == 0
    return cli, IdeClient


def test_ctrl_c_before_the_ack_still_cancels_the_chat(stack, tmp_path, monkeypatch, capsys):
    # Ctrl-C lands while the client waits for the ack: the chat may already be running on the
    # server, so the client waits for the ack and cancels it rather than leave it to spend tokens.
    cli, IdeClient = signed_in_cli(stack, tmp_path, monkeypatch)
    real_frames = IdeClient.frames
    interrupted: list[str] = []

    def frames(self, request_id, timeout=60.0):
        if not interrupted:  # the first wait is interrupted before any frame is read
            interrupted.append(request_id)
            raise KeyboardInterrupt
        return real_frames(self, request_id, timeout=timeout)

    monkeypatch.setattr(IdeClient, "frames", frames)
    capsys.readouterr()
    assert cli.main(["chat", "[[slow:20]] " + "w" * 2000]) == 130
    out = capsys.readouterr().out
    assert interrupted and out.rstrip().endswith("[cancelled]") and out.count("w") < 2000


def test_ctrl_c_as_the_ack_is_taken_still_cancels_the_chat(stack, tmp_path, monkeypatch, capsys):
    # Python runs the Ctrl-C handler at whatever line the command is on: here, in the client's wait for a
    # frame, just after it took the ack off its queue and before it returned it. The command never sees
    # the ack, yet the chat runs on the server: it must still be cancelled, not waited out to its end.
    cli, IdeClient = signed_in_cli(stack, tmp_path, monkeypatch)
    real_next_frame = IdeClient.next_frame
    interrupted: list[dict] = []

    def next_frame(self, request_id, timeout=10.0):
        frame = real_next_frame(self, request_id, timeout=timeout)
        if frame.get("type") == "ack" and not interrupted:
            interrupted.append(frame)
            raise KeyboardInterrupt
        return frame

    monkeypatch.setattr(IdeClient, "next_frame", next_frame)
    capsys.readouterr()
    assert cli.main(["chat", "[[slow:20]] " + "w" * 2000]) == 130
    out = capsys.readouterr().out
    assert interrupted and out.rstrip().endswith("[cancelled]") and out.count("w") < 2000
