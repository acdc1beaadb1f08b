"""Agent-grade chat end to end, through the client library against the local stack: a tool round trip,
an image, a conversation far larger than a frame (chat.upload), prompt caching, the command line."""
from __future__ import annotations

import base64
import io
import json
import os
import random
import subprocess
import uuid

import pytest
from PIL import Image

from devserver.launcher import ROOT
from devserver.tokenizer import count_tokens
from tests.e2e.conftest import CACHING_MODEL, LLM_IDE

READ_FILE = {"name": "read_file", "description": "Read a file of the workspace",
             "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}


def stream(client, **params):
    """(ack, stream frames, final) of one chat; checks that deltas and toolUse frames share one seq."""
    frames = list(client.chat(timeout=60, **params))
    ack, *rest = frames
    assert ack["type"] == "ack", frames[:3]
    streamed, final = rest[:-1], rest[-1]
    assert [f["type"] for f in streamed if f["type"] not in ("delta", "toolUse")] == []
    assert [f["seq"] for f in streamed] == list(range(len(streamed)))
    assert final["type"] in ("done", "error"), final
    return ack, streamed, final


def text_of(frames):
    return "".join(f["text"] for f in frames if f["type"] == "delta")


def png(width, height, *, noise=False) -> str:
    """A real PNG in base64; noise does not compress, so its size follows its pixels."""
    pixels = random.Random(width * height).randbytes(width * height * 3) if noise else None
    image = Image.frombytes("RGB", (width, height), pixels) if pixels else Image.new("RGB", (width, height), "teal")
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def test_a_tool_round_trip_pairs_the_call_and_its_result_at_bedrock(stack):
    call = '[[tool:read_file {"path":"a.py"}]]'
    with stack.connect() as client:
        ack, streamed, done = stream(client, messages=[{"role": "user", "content": f"Let me look. {call}"}],
                                     tools=[READ_FILE])
        assert done["type"] == "done" and done["stopReason"] == "tool_use"
        *deltas, tool_use = streamed
        assert text_of(deltas) == "Let me look. " and tool_use["type"] == "toolUse"
        assert tool_use["name"] == "read_file" and tool_use["input"] == {"path": "a.py"}
        assert tool_use["id"] == ack["id"] and tool_use["toolUseId"]
        # The next turn: the whole conversation, the tool's result in its last user message.
        conversation = [
            {"role": "user", "content": f"Let me look. {call}"},
            {"role": "assistant", "content": [{"type": "text", "text": "Let me look. "},
                                              {"type": "toolUse", "toolUseId": tool_use["toolUseId"],
                                               "name": "read_file", "input": tool_use["input"]}]},
            {"role": "user", "content": [{"type": "toolResult", "toolUseId": tool_use["toolUseId"],
                                          "status": "success", "content": [{"type": "text", "text": "print('hi')"}]},
                                         {"type": "text", "text": "[[dump]]"}]},
        ]
        _ack, streamed, done = stream(client, messages=conversation, tools=[READ_FILE], maxTokens=4000)
    assert done["type"] == "done" and done["stopReason"] == "end_turn"
    seen = json.loads(text_of(streamed))
    assert [m["role"] for m in seen["messages"]] == ["user", "assistant", "user"]
    assert seen["messages"][1]["content"][1] == {"toolUse": {"toolUseId": tool_use["toolUseId"],
                                                             "name": "read_file", "input": {"path": "a.py"}}}
    assert seen["messages"][2]["content"][0] == {"toolResult": {"toolUseId": tool_use["toolUseId"],
                                                                "status": "success",
                                                                "content": [{"text": "print('hi')"}]}}
    assert seen["toolConfig"]["tools"][0]["toolSpec"]["name"] == "read_file"


def test_an_image_reaches_bedrock_intact(stack):
    data, text = png(64, 48), "[[dump]] what is this?"
    with stack.connect() as client:
        _ack, streamed, done = stream(client, maxTokens=4000, messages=[{"role": "user", "content": [
            {"type": "image", "format": "png", "data": data}, {"type": "text", "text": text}]}])
    assert done["type"] == "done", done
    seen = json.loads(text_of(streamed))
    assert seen["messages"][0]["content"][0] == {"image": {"format": "png", "source": {"bytes": data}}}
    # 64 x 48 px is 5 tokens by Claude's rule (64 * 48 / 750, rounded up), then the text's.
    assert done["usage"]["inputTokens"] == 5 + count_tokens(text)


def test_a_conversation_of_2_mib_goes_through_chat_upload_once_and_only_for_its_user(stack):
    last = f"And the last question of a long conversation #{uuid.uuid4().hex[:8]}?"
    screenshot = png(480, 280, noise=True)  # ~540 KB of base64 that costs Claude 179 tokens
    conversation = []
    for turn in range(3):
        conversation += [{"role": "user", "content": [{"type": "image", "format": "png", "data": screenshot},
                                                      {"type": "text", "text": f"turn {turn}: " + "code " * 40_000}]},
                         {"role": "assistant", "content": f"answer {turn}"}]
    conversation.append({"role": "user", "content": last})
    body = {"messages": conversation, "maxTokens": 200}
    assert 2 * 1024 * 1024 <= len(json.dumps(body)) < 3 * 1024 * 1024
    with stack.connect() as client, stack.connect("dev2") as other:
        upload_id = client.upload(body)
        chat_id = client.send("chat.send", uploadId=upload_id)
        frames = list(client.frames(chat_id, timeout=60))
        assert frames[0]["type"] == "ack" and frames[-1]["type"] == "done", frames[-1]
        assert text_of(frames) == last  # the echo of its last user message, exactly
        for user in (client, other):  # used once, and the caller's only
            again = user.request("chat.send", uploadId=upload_id, timeout=15)
            assert again["type"] == "error" and again["error"]["code"] == "NOT_FOUND", again
        # Without thinking about uploads at all: the library uploads what a frame cannot carry.
        _ack, streamed, done = stream(client, **body)
        assert done["type"] == "done" and text_of(streamed) == last


def test_the_same_prefix_twice_is_read_from_the_cache_and_usage_get_agrees(stack):
    prefix = f"{uuid.uuid4().hex} " + "def handler(event):\n    return event\n" * 2_200  # ~17.6k tokens
    with stack.connect() as client:
        before = client.request("usage.get")["data"]["usage"]["hour"]
        usages = []
        for question in ("what does it do?", "and why?"):
            conversation = [{"role": "user", "content": prefix}, {"role": "assistant", "content": "Noted."},
                            {"role": "user", "content": question}]
            _ack, streamed, done = stream(client, model=CACHING_MODEL, messages=conversation)
            assert done["type"] == "done" and text_of(streamed) == question
            usages.append(done["usage"])
        after = client.request("usage.get")["data"]["usage"]["hour"]
    first, second = usages
    assert first["cacheWriteInputTokens"] >= count_tokens(prefix) > 17_000 and first["cacheReadInputTokens"] == 0
    assert second["cacheReadInputTokens"] == first["cacheWriteInputTokens"] and second["cacheWriteInputTokens"] == 0
    for usage in usages:
        assert usage["totalTokens"] == (usage["inputTokens"] + usage["outputTokens"] + usage["cacheReadInputTokens"]
                                        + usage["cacheWriteInputTokens"])
        assert usage["inputTokens"] < 10  # only the question was neither read from nor written to the cache
    for name in ("cacheReadInputTokens", "cacheWriteInputTokens", "inputTokens", "outputTokens"):
        assert after[name] - before[name] == first[name] + second[name], name


def test_a_cache_point_that_starts_a_message_is_honoured_where_bedrock_takes_it(stack):
    # Bedrock refuses a cachePoint with nothing before it in its message ("There is nothing available to
    # cache"); the same prefix ends the message before, or the system prompt, where the server moves it.
    prefix = f"{uuid.uuid4().hex} " + "class Repository:\n    pass\n" * 800
    point = {"type": "cachePoint"}
    with stack.connect() as client:
        for question, before in (
            ("what is it?", {"messages": [{"role": "user", "content": prefix},
                                          {"role": "assistant", "content": "Noted."}]}),
            ("and?", {"system": prefix, "messages": []}),
            ("alone?", {"messages": []}),
        ):
            last = {"role": "user", "content": [point, {"type": "text", "text": question}]}
            params = {**before, "messages": [*before["messages"], last]}
            _ack, streamed, done = stream(client, model=CACHING_MODEL, **params)
            assert done["type"] == "done", done
            assert text_of(streamed) == question


def test_refusals_come_before_the_ack_and_name_the_field(stack):
    with stack.connect() as client:
        for params, code, field in (
            ({"messages": [{"role": "user", "content": "hi"}], "sessionId": "a" * 32}, "BAD_REQUEST", "sessionId"),
            ({"messages": [{"role": "user", "content": [{"type": "toolResult", "toolUseId": "t1", "content": []}]}],
              "tools": [READ_FILE]}, "BAD_REQUEST", "messages[0].content[0].toolUseId"),
            ({"messages": [{"role": "user", "content": [{"type": "image", "format": "jpeg", "data": png(8, 8)}]}]},
             "BAD_REQUEST", "messages[0].content[0].data"),
        ):
            frame = client.request("chat.send", timeout=15, **params)
            assert frame["type"] == "error" and frame["error"]["code"] == code, frame
            assert field in frame["error"]["message"]


@pytest.fixture
def cli(stack, tmp_path):
    env = {**os.environ, "LLM_IDE_ENDPOINTS": str(stack.endpoints_path), "LLM_IDE_HOME": str(tmp_path)}

    def run(*args):
        return subprocess.run([LLM_IDE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                              check=False)

    assert run("login", "--username", "dev").returncode == 0
    return run


def test_llm_ide_chat_shows_a_tool_call_and_sends_images(cli, tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([READ_FILE]))
    result = cli("chat", '[[tool:read_file {"path":"src/app.py"}]]', "--tools", str(tools))
    assert result.returncode == 0, result.stderr
    assert '[tool call read_file tooluse_' in result.stdout and '{"path": "src/app.py"}' in result.stdout
    assert "[tool_use]" in result.stdout
    image = tmp_path / "shot.png"
    image.write_bytes(base64.b64decode(png(16, 16)))
    result = cli("chat", "[[dump]] and this?", "--image", str(image), "--max-tokens", "2000")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.rstrip("\n").rsplit("\n", 1)[0])
    assert seen["messages"][0]["content"][0]["image"]["format"] == "png"
