"""`llm-ide serve` against the local stack, driven by the official OpenAI and Anthropic SDKs.

These need the protocol's v1.1 (models.list, messages, tools, images, chat.upload, chat.resume,
the dev gateway's DEV_WS_MAX_CONNECTION_SECONDS) and, for count_tokens, the backend's
chat.countTokens (see docs/IDE.md).
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import anthropic
import openai
import pytest

from client.auth import SignedIn, TokenStore
from client.bridge.backend import Backend
from client.bridge.server import make_app
from devserver.launcher import stop_process
from tests.e2e.conftest import LLM_IDE, start_stack, stop_stack
from tests.e2e.relay import Relay
from tests.servers import serve

pytestmark = pytest.mark.e2e
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8ffff3f030008fc02fea79aa0a00000000049454e44ae426082")).decode()  # 1x1 pixel


@dataclass
class Served:
    url: str
    key: str
    process: subprocess.Popen

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, max_retries=0)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=self.key, max_retries=0)


def serve_bridge(stack, home: Path) -> Served:
    env = {**os.environ, "LLM_IDE_ENDPOINTS": str(stack.endpoints_path), "LLM_IDE_HOME": str(home),
           "PYTHONUNBUFFERED": "1"}
    login = subprocess.run([LLM_IDE, "login", "--username", "dev"], check=False, env=env, capture_output=True,
                           text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    process = subprocess.Popen([LLM_IDE, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert process.stdout is not None
    first = process.stdout.readline()
    match = re.match(r"OpenAI API\s+(http://127\.0\.0\.1:\d+)/v1\s+key (lli-local-\S+)", first)
    assert match, first + process.stdout.read(2000)
    process.stdout.readline()
    return Served(match[1], match[2], process)


@pytest.fixture(scope="module")
def bridge(stack, tmp_path_factory):
    served = serve_bridge(stack, tmp_path_factory.mktemp("bridge-home"))
    yield served
    stop_process(served.process)


def direct_usage(stack, **params) -> dict:
    """The `done` frame's usage of the same chat sent straight over the client library's WebSocket."""
    with stack.connect() as client:
        frames = list(client.frames(client.send("chat.send", **params), timeout=30))
    assert frames[-1]["type"] == "done", frames[-1]
    return frames[-1]["usage"]


def test_openai_models_are_models_list(stack, bridge):
    listed = models_list(stack)
    assert [m.id for m in bridge.openai().models.list()] == [m["id"] for m in listed]


def test_openai_streamed_and_not_streamed_completions_are_the_echo_with_the_done_usage(stack, bridge):
    prompt = "Bonjour, ça va? 😀 Here is some text for the echo model."
    expected = direct_usage(stack, messages=[{"role": "user", "content": prompt}], maxTokens=200)
    chunks = list(bridge.openai().chat.completions.create(
        model=stack_model(stack), max_tokens=200, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": prompt}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == prompt
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        expected["inputTokens"] + expected["cacheReadInputTokens"] + expected["cacheWriteInputTokens"],
        expected["outputTokens"], expected["totalTokens"])
    assert usage.prompt_tokens_details.cached_tokens == expected["cacheReadInputTokens"]
    completion = bridge.openai().chat.completions.create(model=stack_model(stack), max_tokens=200,
                                                         messages=[{"role": "user", "content": prompt}])
    assert completion.choices[0].message.content == prompt and completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == expected["outputTokens"]


def models_list(stack) -> list[dict]:
    with stack.connect() as client:
        frame = client.request("models.list")
    assert frame["type"] == "result", f"the backend has no models.list (protocol v1.1): {frame}"
    return frame["data"]["models"]


def stack_model(stack) -> str:
    return models_list(stack)[0]["id"]


def test_openai_tool_round_trip_and_an_image(stack, bridge):
    client = bridge.openai()
    tools = [{"type": "function", "function": {"name": "read_file", "description": "Read a file", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": '[[tool:read_file {"path": "a.py"}]]'}]
    chunks = list(client.chat.completions.create(model=stack_model(stack), messages=messages, tools=tools,
                                                 stream=True))
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "read_file"
    assert json.loads(calls[0].function.arguments) == {"path": "a.py"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    messages += [{"role": "assistant", "tool_calls": [{"id": calls[0].id, "type": "function", "function": {
                     "name": "read_file", "arguments": calls[0].function.arguments}}]},
                 {"role": "tool", "tool_call_id": calls[0].id, "content": "print('hello')"},
                 {"role": "user", "content": [
                     {"type": "text", "text": "[[dump]]"},
                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]
    dumped = client.chat.completions.create(model=stack_model(stack), messages=messages, tools=tools, max_tokens=4000)
    seen = dumped.choices[0].message.content
    assert calls[0].id in seen and "print('hello')" in seen and "image" in seen


def test_openai_a_conversation_far_larger_than_a_frame_uploads_itself(stack, bridge):
    # 0.7 MiB, about 175,000 tokens: within Claude's window of 200,000 (the app refuses what the model cannot hold).
    filler = ("The quick brown fox jumps over the lazy dog. " * 1000 + "\n") * 15
    completion = bridge.openai().chat.completions.create(model=stack_model(stack), max_tokens=100, messages=[
        {"role": "user", "content": filler}, {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "The end of a long conversation."}])
    assert completion.choices[0].message.content == "The end of a long conversation."


def test_anthropic_streamed_message_with_text_and_tool_use_and_the_done_usage(stack, bridge):
    text = 'Let me list them. [[tool:ls {"dir": "src"}]]'
    tools = [{"name": "ls", "description": "List a directory", "input_schema": {
        "type": "object", "properties": {"dir": {"type": "string"}}}}]
    expected = direct_usage(stack, messages=[{"role": "user", "content": text}], maxTokens=300, tools=[
        {"name": "ls", "description": "List a directory", "inputSchema": tools[0]["input_schema"]}])
    with bridge.anthropic().messages.stream(model=stack_model(stack), max_tokens=300, tools=tools,
                                            messages=[{"role": "user", "content": text}]) as stream:
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[1].name == "ls" and message.content[1].input == {"dir": "src"}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (expected["inputTokens"],
                                                                         expected["outputTokens"])
    assert message.usage.cache_read_input_tokens == expected["cacheReadInputTokens"]


EDIT_SCHEMA = {"type": "object", "required": ["path", "line", "replace"], "properties": {
    "path": {"type": "string"}, "line": {"type": "integer", "minimum": 1}, "replace": {"type": "boolean"},
    "note": {"type": "string"}}}
LS_SCHEMA = {"type": "object", "properties": {"dir": {"type": "string"}}}


def test_openai_a_named_tool_choice_is_a_call_of_that_tool_with_arguments_its_schema_allows(stack, bridge):
    """Bedrock answers a named toolChoice with a call of that tool; the local stack's model used to answer it with
    text, so what an assistant's forced call does was never seen end to end."""
    tools = [{"type": "function", "function": {"name": "ls", "parameters": LS_SCHEMA}},
             {"type": "function", "function": {"name": "edit_file", "parameters": EDIT_SCHEMA}}]
    choice = {"type": "function", "function": {"name": "edit_file"}}
    messages = [{"role": "user", "content": "Fix the typo in a.py."}]
    client = bridge.openai()
    chunks = list(client.chat.completions.create(model=stack_model(stack), messages=messages, tools=tools,
                                                 tool_choice=choice, stream=True))
    streamed = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert not "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # no text with a forced call
    whole = client.chat.completions.create(model=stack_model(stack), messages=messages, tools=tools,
                                           tool_choice=choice).choices[0]
    assert whole.finish_reason == "tool_calls" and whole.message.tool_calls is not None
    [whole_call] = whole.message.tool_calls
    for name, arguments in ((streamed[0].function.name, "".join(c.function.arguments or "" for c in streamed)),
                            (whole_call.function.name, whole_call.function.arguments)):
        assert name == "edit_file"
        called = json.loads(arguments)
        assert sorted(called) == ["line", "path", "replace"] and isinstance(called["path"], str)
        assert isinstance(called["line"], int) and called["line"] >= 1 and called["replace"] is True


@pytest.mark.parametrize("choice, name", [({"type": "tool", "name": "edit_file"}, "edit_file"),
                                          ({"type": "any"}, "ls")])
def test_anthropic_a_tool_or_any_tool_choice_is_a_tool_use_with_an_input_its_schema_allows(stack, bridge, choice,
                                                                                           name):
    tools = [{"name": "ls", "input_schema": LS_SCHEMA}, {"name": "edit_file", "input_schema": EDIT_SCHEMA}]
    with bridge.anthropic().messages.stream(model=stack_model(stack), max_tokens=300, tools=tools, tool_choice=choice,
                                            messages=[{"role": "user", "content": "Fix a.py."}]) as stream:
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["tool_use"] and message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use" and block.name == name
    expected = {"path": "example path", "line": 1, "replace": True} if name == "edit_file" else {}
    assert block.input == expected


@pytest.mark.parametrize("model, exact", [
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", True),  # Bedrock's CountTokens counts it: the count is exact
    ("anthropic.claude-3-haiku-20240307-v1:0", False),  # it cannot: an upper bound of what is charged
])
def test_anthropic_count_tokens(stack, bridge, model, exact):
    messages = [{"role": "user", "content": "Count these words, and this: 漢字😀!"}]
    counted = bridge.anthropic().messages.count_tokens(model=model, messages=messages)
    expected = direct_usage(stack, messages=messages, maxTokens=50, model=model)
    if exact:
        assert counted.input_tokens == expected["inputTokens"]
    else:
        assert counted.input_tokens >= expected["inputTokens"]


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("limited-stack"), env={"RATE_LIMIT_REQUESTS_PER_MINUTE": "2"})
    served = serve_bridge(stack, tmp_path_factory.mktemp("limited-home"))
    yield stack, served
    stop_process(served.process)
    stop_stack(stack.process)


def test_the_rate_limit_is_each_sdks_rate_limit_error_with_retry_after(limited):
    stack, served = limited
    model = stack_model(stack)  # a request too: the window has one left after it
    for client, error in ((served.openai(), openai.RateLimitError), (served.anthropic(), anthropic.RateLimitError)):
        with pytest.raises(error) as raised:
            for _ in range(5):  # two fit in a minute; one of the next ones cannot
                if isinstance(client, openai.OpenAI):
                    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
                else:
                    client.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert isinstance(raised.value, openai.RateLimitError | anthropic.RateLimitError)
        assert int(raised.value.response.headers["retry-after"]) >= 1


def test_a_stream_goes_on_to_its_exact_end_when_the_gateway_closes_the_socket(short_stack, tmp_path_factory):
    # The gateway closes every connection of this stack after 5 s: the bridge reconnects and resumes the chat.
    served = serve_bridge(short_stack, tmp_path_factory.mktemp("short-socket-home"))
    try:
        prompt = "[[slow:50]] " + " ".join(f"word{n}" for n in range(200))  # about 11 s of streaming
        closed_before = short_stack.log_text().count("its connection duration was reached")
        chunks = list(served.openai().chat.completions.create(
            model=stack_model(short_stack), max_tokens=2000, stream=True,
            messages=[{"role": "user", "content": prompt}]))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == prompt
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert short_stack.log_text().count("its connection duration was reached") > closed_before
    finally:
        stop_process(served.process)


def test_a_stream_goes_on_to_its_exact_end_when_the_bridges_socket_goes_silent(stack, tmp_path):
    """A socket that dies without a close (a laptop asleep, a new network): the bridge notices with its
    WebSocket pings, opens a new one and resumes the chat, and the caller gets the whole reply, settled once."""
    pool = stack.endpoints.user_pool()
    store = TokenStore(tmp_path / "tokens.json")
    store.save(["ws"], stack.tokens("dev"))
    relay = Relay(stack.endpoints.websocket_url)
    backend = Backend(relay.url_for(stack.endpoints.websocket_url), SignedIn(store, ["ws"], pool),
                      keepalive_seconds=0, ping_interval=1.0)
    try:
        with stack.connect() as watcher:
            before = watcher.request("usage.get")["data"]["usage"]["day"]
        with serve(make_app(backend, "lli-local-relay-key")) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="lli-local-relay-key", max_retries=0,
                                   timeout=30.0)  # far longer than noticing a dead socket takes; far shorter than 240 s
            prompt = "[[slow:50]] " + " ".join(f"word{n}" for n in range(200))
            chunks = []
            for chunk in client.chat.completions.create(model=stack_model(stack), max_tokens=2000, stream=True,
                                                        stream_options={"include_usage": True},
                                                        messages=[{"role": "user", "content": prompt}]):
                chunks.append(chunk)
                if len(chunks) == 10:
                    assert relay.silence() == 1
    finally:
        relay.close()
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == prompt
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert relay.accepted == 2  # the silent socket, and the one the chat was resumed on
    usage = chunks[-1].usage
    assert usage is not None
    with stack.connect() as watcher:
        after = watcher.request("usage.get")["data"]["usage"]["day"]
    assert (after["inputTokens"] - before["inputTokens"], after["outputTokens"] - before["outputTokens"]) == \
        (usage.prompt_tokens, usage.completion_tokens)


# --- what a break-it pass found ----------------------------------------------------------------

def test_a_stream_that_fails_before_its_first_token_is_answered_with_the_errors_http_status(stack, bridge):
    """Bedrock throttling before any output is a 429 with Retry-After, streamed or not, so the SDKs wait and retry."""
    prompt = [{"role": "user", "content": "[[throttle]] hello"}]
    with pytest.raises(openai.RateLimitError) as raised_openai:
        list(bridge.openai().chat.completions.create(model=stack_model(stack), stream=True, messages=prompt))
    with pytest.raises(anthropic.RateLimitError) as raised_anthropic:
        with bridge.anthropic().messages.stream(model=stack_model(stack), max_tokens=50, messages=prompt) as stream:
            stream.get_final_message()
    for raised in (raised_openai.value, raised_anthropic.value):
        assert raised.status_code == 429 and int(raised.response.headers["retry-after"]) >= 1


def test_a_system_prompt_over_a_frames_text_limit_goes_through_chat_upload(stack, bridge):
    """A frame's `system` is limited to 24 KiB (MAX_PROMPT_BYTES); an IDE's system prompt is often longer."""
    system = "You are a careful coding assistant. Follow the project's rules. " * 400  # 26 KB, the frame under 32 KiB
    completion = bridge.openai().chat.completions.create(model=stack_model(stack), max_tokens=20, messages=[
        {"role": "system", "content": system}, {"role": "user", "content": "Hello"}])
    assert completion.choices[0].message.content == "Hello"
    message = bridge.anthropic().messages.create(model=stack_model(stack), max_tokens=20, system=system,
                                                 messages=[{"role": "user", "content": "Hello"}])
    assert message.content[0].type == "text" and message.content[0].text == "Hello"
    with stack.connect() as client:  # the client library decides the same way
        frames = list(client.chat(messages=[{"role": "user", "content": "Hello"}], system=system, maxTokens=20))
    assert frames[-1]["type"] == "done", frames[-1]


@pytest.mark.parametrize("repeat", [2000, 12000])  # about 90 KB (over a frame), and 0.5 MB (an agent's conversation)
def test_count_tokens_of_a_conversation_larger_than_a_frame(stack, bridge, repeat):
    model = "anthropic.claude-3-5-sonnet-20240620-v1:0"  # counted exactly
    messages = [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. " * repeat}]
    counted = bridge.anthropic().messages.count_tokens(model=model, messages=messages)
    with stack.connect() as client:
        frame = client.request("chat.countTokens", uploadId=client.upload({"messages": messages, "model": model}))
    assert frame["type"] == "result", frame
    assert counted.input_tokens == frame["data"]["inputTokens"]


@pytest.mark.parametrize("foreign_id", ["functions.read_file:0", "call_" + "x" * 70])
def test_tool_call_ids_another_provider_made_are_carried_over(stack, bridge, foreign_id):
    """A conversation begun with another model keeps its tool call ids ('.' and ':' are Kimi's; some are long):
    Bedrock takes 1-64 of [A-Za-z0-9_-], so the bridge maps each such id, the same way in the call and its result."""
    schema = {"type": "object", "properties": {"path": {"type": "string"}}}
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": schema}}]
    model = stack_model(stack)
    completion = bridge.openai().chat.completions.create(model=model, tools=tools, max_tokens=4000, messages=[
        {"role": "user", "content": "Read a.py"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": foreign_id, "type": "function", "function": {
            "name": "read_file", "arguments": '{"path": "a.py"}'}}]},
        {"role": "tool", "tool_call_id": foreign_id, "content": "print('hello')"},
        {"role": "user", "content": "[[dump]]"}])
    dumped = json.loads(completion.choices[0].message.content or "")
    (call,) = [b["toolUse"] for m in dumped["messages"] for b in m.get("content", []) if "toolUse" in b]
    (result,) = [b["toolResult"] for m in dumped["messages"] for b in m.get("content", []) if "toolResult" in b]
    assert call["toolUseId"] == result["toolUseId"] and result["content"] == [{"text": "print('hello')"}]
    message = bridge.anthropic().messages.create(
        model=model, max_tokens=50,
        tools=[{"name": "read_file", "input_schema": schema}], messages=[
            {"role": "user", "content": "Read a.py"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": foreign_id, "name": "read_file",
                                               "input": {"path": "a.py"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": foreign_id, "content": "print(1)"},
                                         {"type": "text", "text": "And now?"}]}])
    assert message.content[0].type == "text" and message.content[0].text == "And now?"


def test_an_openai_image_whose_data_url_names_another_type_is_sent_as_what_its_bytes_are(stack, bridge):
    """OpenAI reads an image whatever its data: URL says (a JPEG pasted as image/png); Bedrock refuses the mismatch."""
    from io import BytesIO

    from PIL import Image
    jpeg = BytesIO()
    Image.new("RGB", (4, 4), "red").save(jpeg, "JPEG")
    url = "data:image/png;base64," + base64.b64encode(jpeg.getvalue()).decode()
    completion = bridge.openai().chat.completions.create(model=stack_model(stack), max_tokens=4000, messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                     {"type": "text", "text": "[[dump]]"}]}])
    dumped = json.loads(completion.choices[0].message.content or "")
    (image,) = [b["image"] for m in dumped["messages"] for b in m.get("content", []) if "image" in b]
    assert image["format"] == "jpeg"


def test_the_backends_refusals_name_the_callers_fields(stack, bridge):
    """The backend names the field of the chat.send the bridge made ('messages[0].content[1].data'); the caller
    sent other names and, with system messages, blank texts and tool calls, other indexes: its 400 names its own."""
    model = "anthropic.claude-3-5-sonnet-20240620-v1:0"
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}]}]},
         "messages[1].content[1].image_url.url"),
        ({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Read a.py"},
                       {"role": "assistant", "content": "Reading.", "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "read_file", "arguments": "{}"}}]},
                       {"role": "tool", "tool_call_id": "call_2", "content": "print(1)"}], "tools": tools},
         "messages[3].tool_call_id"),
        ({"messages": [{"role": "user", "content": "hi"}], "tools": tools,
          "tool_choice": {"type": "function", "function": {"name": "write_file"}}}, "tool_choice.function.name"),
    ]
    for body, param in cases:
        with pytest.raises(openai.BadRequestError) as raised:
            bridge.openai().chat.completions.create(model=model, **body)
        error = cast(dict[str, Any], raised.value.body)
        assert error["param"] == param and f"'{param}'" in error["message"], (param, error)
    with pytest.raises(anthropic.BadRequestError) as refused:
        bridge.anthropic().messages.create(model=model, max_tokens=20, messages=[{"role": "user", "content": [
            {"type": "text", "text": " "},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "bm90IGFuIGltYWdl"}}]}])
    assert "'messages[0].content[1].source.data'" in refused.value.message


def post(served: Served, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A request as a JavaScript client sends it (JSON.stringify escapes what UTF-8 cannot hold, as json.dumps does)."""
    parts = urlsplit(served.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    connection.request("POST", path, body=json.dumps(body), headers={
        "Authorization": f"Bearer {served.key}", "Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


@pytest.mark.parametrize("where", ["system", "user", "a conversation larger than a frame"])
def test_a_lone_surrogate_is_a_400_saying_so_wherever_it_is(stack, bridge, where):
    """A JavaScript client that cuts a text in the middle of an emoji sends half of it ('\\ud83d' in its JSON)."""
    half = "a cut emoji \ud83d here"
    messages = [{"role": "user", "content": half if where == "user" else "Hello"}]
    if where == "a conversation larger than a frame":
        messages = [{"role": "user", "content": "lorem ipsum " * 4000 + half}, {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": "Hello"}]
    system = [{"role": "system", "content": half}] if where == "system" else []
    status, body = post(bridge, "/v1/chat/completions", {"model": stack_model(stack), "messages": [*system, *messages]})
    assert status == 400 and body["error"]["type"] == "invalid_request_error", body
    assert "surrogate" in body["error"]["message"]
    status, body = post(bridge, "/v1/messages", {"model": stack_model(stack), "max_tokens": 20, "messages": messages,
                                                 **({"system": half} if where == "system" else {})})
    assert status == 400 and body["error"]["type"] == "invalid_request_error", body
    assert "surrogate" in body["error"]["message"]
