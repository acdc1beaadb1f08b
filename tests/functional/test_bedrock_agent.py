"""The Bedrock emulator's tools, images, cache points and checks, read by boto3 and by the app's BedrockChat;
and BedrockChat's assembly of a tool call from Bedrock's pieces."""
from __future__ import annotations

import base64
import io
import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image

from chalicelib.chat.bedrock import BedrockChat, MessageStop, Metadata, ModelRequest, TextDelta, ToolUse, _ToolUses
from chalicelib.chat.requests import Usage
from chalicelib.errors import UpstreamError
from devserver.bedrock import BedrockEmulator
from devserver.bedrock_model import CACHE_SECONDS, PromptCache
from devserver.tokenizer import count_tokens
from tests.fakes import ScriptedBedrock, ScriptedStream
from tests.servers import serve

CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
TOOLS = {"tools": [{"toolSpec": {"name": "read_file", "inputSchema": {"json": {"type": "object"}}}}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def emulator():
    emulator = BedrockEmulator()
    with serve(emulator.make_app()) as url:
        yield emulator, boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-east-1",
                                     aws_access_key_id="local", aws_secret_access_key="local",
                                     config=Config(retries={"total_max_attempts": 1}))


def user(*blocks):
    return {"role": "user", "content": list(blocks)}


def events(client, messages, *, model=CLAUDE, max_tokens=500, **extra):
    """The raw event stream of one call, and the events of another as the app's BedrockChat reads them."""
    raw = list(client.converse_stream(modelId=model, messages=messages, inferenceConfig={"maxTokens": max_tokens},
                                      **extra)["stream"])
    return raw, read_events(client, messages, model=model, max_tokens=max_tokens, **extra)


def read_events(client, messages, *, model=CLAUDE, max_tokens=500, **extra):
    request = ModelRequest(model_id=model, prompt="", max_tokens=max_tokens, messages=tuple(messages),
                           tool_config=extra.get("toolConfig"), system_blocks=tuple(extra.get("system") or ()))
    return list(BedrockChat(client, max_attempts=1).stream(request))


def test_a_tool_directive_streams_a_call_in_pieces_that_the_app_assembles(emulator):
    _, client = emulator
    messages = [user({"text": 'Reading. [[tool:read_file {"path": "src/app.py", "lines": [1, 20]}]]'})]
    raw, read = events(client, messages, toolConfig=TOOLS)
    pieces = [e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in raw
              if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {})]
    assert len(pieces) > 3 and json.loads("".join(pieces)) == {"path": "src/app.py", "lines": [1, 20]}
    [start] = [e["contentBlockStart"] for e in raw if "contentBlockStart" in e]
    assert start["contentBlockIndex"] == 1 and start["start"]["toolUse"]["name"] == "read_file"
    texts = "".join(e.text for e in read if isinstance(e, TextDelta))
    [call] = [e for e in read if isinstance(e, ToolUse)]
    assert texts == "Reading. " and call.input == {"path": "src/app.py", "lines": [1, 20]}
    assert call.tool_use_id.startswith("tooluse_") and start["start"]["toolUse"]["toolUseId"].startswith("tooluse_")
    assert [e.stop_reason for e in read if isinstance(e, MessageStop)] == ["tool_use"]


EDIT_FILE = {"toolSpec": {"name": "edit_file", "inputSchema": {"json": {
    "type": "object", "required": ["path", "line", "ratio", "dry_run", "mode", "changes", "where"],
    "properties": {"path": {"type": "string", "minLength": 3}, "line": {"type": "integer", "minimum": 5},
                   "ratio": {"type": "number", "exclusiveMaximum": 0.5}, "dry_run": {"type": "boolean"},
                   "mode": {"enum": ["replace", "insert"]},
                   "changes": {"type": "array", "items": {"$ref": "#/$defs/c"}},
                   "where": {"type": ["null", "object"], "properties": {"x": {"type": "string"}}, "required": ["x"]},
                   "note": {"type": "string"}},  # not required: a model leaves it out
    "$defs": {"c": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}}}}}}
FORCED_TOOLS = [TOOLS["tools"][0], EDIT_FILE]


@pytest.mark.parametrize(("choice", "name"), [({"tool": {"name": "edit_file"}}, "edit_file"),
                                              ({"any": {}}, "read_file")])
def test_a_tool_choice_of_a_tool_or_any_is_a_call_of_it_with_an_input_its_schema_allows_and_no_text(emulator, choice,
                                                                                                      name):
    """Bedrock: `tool` "the model must request the specified tool", `any` "at least one tool (no text is generated)".
    The emulator answered both with the echoed text, as if the choice were `auto`."""
    _, client = emulator
    config = {"tools": FORCED_TOOLS, "toolChoice": choice}
    for reply in (events(client, [user({"text": "Fix the bug."})], toolConfig=config)[1],
                  client.converse(modelId=CLAUDE, messages=[user({"text": "Fix the bug."})], toolConfig=config)):
        if isinstance(reply, dict):  # Converse
            assert reply["stopReason"] == "tool_use"
            [block] = reply["output"]["message"]["content"]
            calls = [ToolUse(block["toolUse"]["toolUseId"], block["toolUse"]["name"], block["toolUse"]["input"])]
        else:  # ConverseStream, as the app reads it
            assert not [e for e in reply if isinstance(e, TextDelta)]
            assert [e.stop_reason for e in reply if isinstance(e, MessageStop)] == ["tool_use"]
            calls = [e for e in reply if isinstance(e, ToolUse)]
        [call] = calls
        assert call.name == name
        if name == "edit_file":
            assert call.input == {"path": "example path", "line": 5, "ratio": 0.0, "dry_run": True, "mode": "replace",
                                  "changes": [{"text": "example text"}], "where": {"x": "example x"}}
        else:
            assert call.input == {}  # an object with no required property


def test_a_forced_tool_takes_the_prompts_call_of_it_when_there_is_one(emulator):
    _, client = emulator
    prompt = 'Reading. [[tool:read_file {"path": "a.py"}]] [[tool:edit_file {"path": "a.py"}]]'
    for choice, expected in (({"tool": {"name": "edit_file"}}, ["edit_file"]),
                             ({"any": {}}, ["read_file", "edit_file"])):
        _, read = events(client, [user({"text": prompt})], toolConfig={"tools": FORCED_TOOLS, "toolChoice": choice})
        assert [e.name for e in read if isinstance(e, ToolUse)] == expected
        assert [e.input for e in read if isinstance(e, ToolUse)][-1] == {"path": "a.py"}
        assert not [e for e in read if isinstance(e, TextDelta)]  # no "Reading. ": a forced call comes with no text


def test_a_directive_for_a_tool_not_offered_is_only_text(emulator):
    _, client = emulator
    prompt = '[[tool:delete_all {"really": true}]]'
    _, read = events(client, [user({"text": prompt})], toolConfig=TOOLS)
    assert "".join(e.text for e in read if isinstance(e, TextDelta)) == prompt
    assert not any(isinstance(e, ToolUse) for e in read)


def test_a_call_cut_short_by_max_tokens_is_dropped_and_the_reply_ends_with_max_tokens(emulator):
    _, client = emulator
    _, read = events(client, [user({"text": '[[tool:read_file {"path": "' + "x" * 200 + '"}]]'})],
                     toolConfig=TOOLS, max_tokens=10)
    assert not any(isinstance(e, ToolUse) for e in read)
    assert [e.stop_reason for e in read if isinstance(e, MessageStop)] == ["max_tokens"]


def test_a_call_whose_input_is_not_an_object_is_an_upstream_error_after_the_usage():
    """The botched call was generated, and Bedrock bills it: its usage is handed on before the error, so the chat
    is charged it (the old code raised at the message's stop, and the chat was charged only what was served)."""
    botched = [{"contentBlockStart": {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": "ls"}}}},
               {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "[1, 2"}}}},
               {"contentBlockStop": {"contentBlockIndex": 0}}, {"messageStop": {"stopReason": "tool_use"}},
               {"metadata": {"usage": {"inputTokens": 12, "outputTokens": 7}}}]
    chat = BedrockChat(ScriptedBedrock(ScriptedStream(botched)), max_attempts=3, sleep=lambda seconds: None)
    read = []
    with pytest.raises(UpstreamError, match="'ls'"):
        for event in chat.stream(ModelRequest(model_id="m", prompt="ls", max_tokens=50)):
            read.append(event)
    assert read == [Metadata(Usage(12, 7))]
    empty = _ToolUses()  # a call without arguments streams no input at all
    empty.take({"contentBlockStart": {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "u", "name": "now"}}}})
    assert empty.take({"contentBlockStop": {"contentBlockIndex": 2}}) == ToolUse("u", "now", {})


def test_the_same_prefix_is_written_then_read_and_a_short_one_is_not_cached(emulator):
    _, client = emulator
    prefix = [user({"text": "a long document " * 400}), {"role": "assistant", "content": [
        {"text": "Read it."}, {"cachePoint": {"type": "default"}}]}]
    usages = []
    for question in ("first?", "second?"):
        read = read_events(client, [*prefix, user({"text": question})])
        usages.append(next(e.usage for e in read if isinstance(e, Metadata)))
    write, read_back = usages
    assert write.cache_write_input_tokens == count_tokens("a long document " * 400) + count_tokens("Read it.")
    assert write.cache_read_input_tokens == 0 and read_back.cache_write_input_tokens == 0
    assert read_back.cache_read_input_tokens == write.cache_write_input_tokens
    assert read_back.input_tokens == 2  # "second?" alone
    short = [user({"text": "short"}),
             {"role": "assistant", "content": [{"text": "ok"}, {"cachePoint": {"type": "default"}}]},
             user({"text": "q"})]
    for _ in range(2):
        read = read_events(client, short)
        usage = next(e.usage for e in read if isinstance(e, Metadata))
        assert (usage.cache_read_input_tokens, usage.cache_write_input_tokens) == (0, 0)  # under 1,024 tokens


def test_a_cached_prefix_expires_five_minutes_after_its_last_use():
    from devserver.bedrock_model import read_request

    clock = Clock()
    cache = PromptCache(clock=clock)
    request = {"system": [{"text": "s" * 8000}, {"cachePoint": {"type": "default"}}],
               "messages": [user({"text": "hi"})]}

    def usage():
        return cache.usage(read_request(CLAUDE, request), min_tokens=1024)

    assert usage().cache_write_input_tokens == 2000
    clock.now += CACHE_SECONDS - 1
    assert usage().cache_read_input_tokens == 2000  # a hit keeps it five more minutes
    clock.now += CACHE_SECONDS - 1
    assert usage().cache_read_input_tokens == 2000
    clock.now += CACHE_SECONDS + 1
    assert usage().cache_write_input_tokens == 2000


def png_bytes(size=(30, 20)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size).save(out, "PNG")
    return out.getvalue()


def test_dump_shows_every_block_and_the_tool_config(emulator):
    _, client = emulator
    image = png_bytes()
    messages = [user({"image": {"format": "png", "source": {"bytes": image}}}, {"text": "look"}),
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "read_file",
                                                               "input": {"path": "a"}}}]},
                user({"toolResult": {"toolUseId": "t1", "content": [{"json": {"ok": True}}]}}, {"text": "[[dump]]"})]
    reply = client.converse(modelId=CLAUDE, messages=messages, toolConfig=TOOLS, inferenceConfig={"maxTokens": 4000},
                            system=[{"text": "sys"}, {"cachePoint": {"type": "default"}}])
    seen = json.loads(reply["output"]["message"]["content"][0]["text"])
    assert seen["system"] == ["sys"] and seen["systemContent"][1] == {"cachePoint": {"type": "default"}}
    assert seen["messages"][0]["content"][0]["image"]["source"]["bytes"] == base64.b64encode(image).decode()
    assert seen["messages"][1]["content"][0]["toolUse"]["toolUseId"] == "t1"
    assert seen["messages"][2]["content"][0] == {"toolResult": {"toolUseId": "t1", "content": [{"json": {"ok": True}}]}}
    assert seen["toolConfig"] == TOOLS


@pytest.mark.parametrize("model, messages, extra, words", [
    (CLAUDE, [user({"toolResult": {"toolUseId": "t1", "content": [{"text": "x"}]}})], {},
     "toolConfig field must be defined"),
    (CLAUDE, [user({"text": "hi"}), {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "t1", "name": "read_file", "input": {}}}]}, user({"text": "no result"})],
     {"toolConfig": TOOLS}, "do not match the toolUse blocks"),
    (CLAUDE, [user({"text": "hi"}), user({"text": "again"})], {}, "alternate"),
    (CLAUDE, [user({"text": "x"}, *[{"cachePoint": {"type": "default"}}] * 5)], {}, "maximum is 4"),
    ("anthropic.claude-3-haiku-20240307-v1:0", [user({"text": "x"}, {"cachePoint": {"type": "default"}})], {},
     "prompt caching"),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", [user({"image": {"format": "png", "source": {"bytes": png_bytes()}}})],
     {}, "doesn't support the image"),
    (CLAUDE, [user({"image": {"format": "jpeg", "source": {"bytes": png_bytes()}}})], {}, "does not match"),
    (CLAUDE, [user({"image": {"format": "png", "source": {"bytes": b"not an image"}}})], {}, "could not be processed"),
    (CLAUDE, [user({"image": {"format": "png", "source": {"bytes": png_bytes((8001, 1))}}})], {}, "8000 pixels"),
])
def test_the_emulator_refuses_what_bedrock_refuses(emulator, model, messages, extra, words):
    _, client = emulator
    with pytest.raises(ClientError) as refused:
        client.converse(modelId=model, messages=messages, **extra)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert words in refused.value.response["Error"]["Message"]
