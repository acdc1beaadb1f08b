"""The pure parts of an agent's chat: image headers, the conversation's rules, tools, cache points."""
from __future__ import annotations

import base64
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from chalicelib.chat import converse, images
from chalicelib.chat.caching import place_cache_points
from chalicelib.chat.conversation import ContentRules, parse_messages
from chalicelib.chat.tools import TOOL_USE_SYSTEM_TOKENS, parse_tools
from chalicelib.errors import BadRequest, PayloadTooLarge

RULES = ContentRules(model="m", images=True, tools=True, prompt_cache=True, min_cache_tokens=1024, max_tools=3)
TOOL = {"name": "read_file", "inputSchema": {"type": "object"}}


def image_bytes(kind: str, size=(40, 30), **options) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "navy").save(out, kind, **options)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- images -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind, options", [("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}), ("GIF", {}),
                                           ("WEBP", {}), ("WEBP", {"lossless": True})])
def test_format_and_size_come_from_the_header(kind, options):
    info = images.inspect(image_bytes(kind, (1234, 56), **options))
    assert info == images.ImageInfo(kind.lower(), 1234, 56)


def test_a_cut_or_foreign_header_is_no_image():
    png = image_bytes("PNG")
    assert images.inspect(png[:20]) is None and images.sniff(png[:20]) == "png"
    assert images.inspect(b"%PDF-1.7 ...") is None and images.sniff(b"%PDF-1.7") is None
    assert images.inspect(image_bytes("JPEG")[:30]) is None


def test_image_tokens_follow_claudes_rule_and_its_downscaling():
    assert images.ImageInfo("png", 1000, 1000).tokens() == 1334  # Anthropic's own example
    assert images.ImageInfo("png", 200, 200).tokens() == 54
    assert images.ImageInfo("png", 8000, 8000).tokens() == images.CLAUDE_MAX_TOKENS  # scaled down first
    assert images.ImageInfo("png", 3136, 100).tokens() == 1568 * 50 // 750 + 1  # long edge to 1,568 px


# --- the conversation -------------------------------------------------------------------


def parse(messages, rules=RULES):
    return parse_messages(messages, rules)


def refused(messages, rules=RULES, error=BadRequest) -> str:
    with pytest.raises(error) as caught:
        parse(messages, rules)
    return caught.value.message


def test_blocks_map_onto_converse_and_turns_of_one_role_merge():
    png = image_bytes("PNG")
    conversation = parse([
        {"role": "user", "content": "first"},
        {"role": "user", "content": [{"type": "image", "format": "png", "data": b64(png)},
                                     {"type": "cachePoint"}]},
        {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "t-1", "name": "ls", "input": {}}]},
        {"role": "user", "content": [{"type": "toolResult", "toolUseId": "t-1", "status": "error",
                                      "content": [{"type": "json", "json": {"code": 2}}]}]},
    ])
    assert conversation.converse_messages(tools_offered=True) == [
        {"role": "user", "content": [{"text": "first"}, {"image": {"format": "png", "source": {"bytes": png}}},
                                     {"cachePoint": {"type": "default"}}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t-1", "name": "ls", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t-1", "status": "error",
                                                     "content": [{"json": {"code": 2}}]}}]},
    ]


def test_without_tools_the_calls_reach_the_model_as_text_and_cache_points_go_for_a_model_without_cache():
    conversation = parse([
        {"role": "user", "content": [{"type": "text", "text": "go"}, {"type": "cachePoint"}]},
        {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "t1", "name": "ls", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "toolResult", "toolUseId": "t1", "content": []}]},
    ], ContentRules(model="m", images=True))
    user, assistant, result = conversation.converse_messages(tools_offered=False)
    assert user["content"] == [{"text": "go"}]
    assert assistant["content"] == [{"text": '[tool call ls id=t1 input={"a": 1}]'}]
    assert result["content"] == [{"text": "[tool result id=t1 status=success]\n(no content)"}]


@pytest.mark.parametrize("messages, field", [
    ([], "'messages' must be a non-empty list"),
    ([{"role": "system", "content": "x"}], "'messages[0].role'"),
    ([{"role": "user", "content": []}], "'messages[0].content'"),
    ([{"role": "user", "content": "  "}], "'messages[0].content'"),
    ([{"role": "user", "content": [{"type": "video"}]}], "'messages[0].content[0].type'"),
    ([{"role": "user", "content": [{"type": "text", "text": "x", "cache": True}]}], "unknown field 'cache'"),
    ([{"role": "user", "content": "x", "name": "bob"}], "'messages[0]' has an unknown field 'name'"),
    ([{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}], "'messages[0]' must be a user"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "'messages[1]' must be a user"),
    ([{"role": "user", "content": [{"type": "cachePoint"}]}], "nothing but cachePoint"),
    ([{"role": "assistant", "content": [{"type": "image", "format": "png", "data": "AA=="}]}],
     "'messages[0].content[0]': image blocks belong in user messages"),
    ([{"role": "user", "content": [{"type": "toolUse", "toolUseId": "t", "name": "ls", "input": {}}]}],
     "'messages[0].content[0]': toolUse blocks belong in assistant messages"),
    ([{"role": "user", "content": "x"},
      {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "t 1", "name": "ls", "input": {}}]},
      {"role": "user", "content": "y"}], "'messages[1].content[0].toolUseId'"),
    ([{"role": "user", "content": "x"},
      {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "t1", "name": "ls", "input": []}]},
      {"role": "user", "content": "y"}], "'messages[1].content[0].input' must be an object"),
    ([{"role": "user", "content": [{"type": "toolResult", "toolUseId": "t9", "content": []}]}],
     "'messages[0].content[0].toolUseId': 't9' answers no toolUse"),
    ([{"role": "user", "content": "x"},
      {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "t1", "name": "ls", "input": {}}]},
      {"role": "user", "content": [{"type": "toolResult", "toolUseId": "t2", "content": []}]}],
     "'messages[2].content[0].toolUseId': 't2' answers no toolUse"),
    ([{"role": "user", "content": "x"},
      {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "t1", "name": "ls", "input": {}}]},
      {"role": "user", "content": "no result"}], "'messages[1].content[0].toolUseId': the next user message has no"),
    ([{"role": "user", "content": "x"},
      {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "t1", "name": "ls", "input": {}},
                                        {"type": "toolUse", "toolUseId": "t1", "name": "ls", "input": {}}]},
      {"role": "user", "content": [{"type": "toolResult", "toolUseId": "t1", "content": []}]}], "given twice"),
    ([{"role": "user", "content": "x"},
      {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "t1", "name": "ls", "input": {}}]},
      {"role": "user", "content": [{"type": "toolResult", "toolUseId": "t1", "status": "failed", "content": []}]}],
     "'messages[2].content[0].status'"),
    ([{"role": "user", "content": "x"},
      {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "t1", "name": "ls", "input": {}}]},
      {"role": "user", "content": [{"type": "toolResult", "toolUseId": "t1", "content": [{"type": "json"}]}]}],
     "'messages[2].content[0].content[0].json' is required"),
    ([{"role": "user", "content": [{"type": "cachePoint"}, {"type": "text", "text": "a"}] + [
        {"type": "cachePoint"}] * 4}], "5 cachePoint blocks"),
    # A `type` of any JSON type, a list or an object included (no value can be hashed): the client's mistake.
    ([{"role": "user", "content": [{"type": ["text"], "text": "x"}]}], "'messages[0].content[0].type' must be one of"),
    ([{"role": "user", "content": [{"type": {"text": 1}}]}], "'messages[0].content[0].type' must be one of"),
    ([{"role": ["user"], "content": "x"}], "'messages[0].role'"),
    ([{"role": "user", "content": "x"},
      {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "t1", "name": "ls", "input": {}}]},
      {"role": "user", "content": [{"type": "toolResult", "toolUseId": "t1", "content": [{"type": []}]}]}],
     "'messages[2].content[0].content[0].type' must be one of"),
    ([{"role": "user", "content": "x"},
      {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "t1", "name": "ls", "input": {}}]},
      {"role": "user", "content": [{"type": "toolResult", "toolUseId": "t1", "status": ["error"]}]}],
     "'messages[2].content[0].status'"),
    ([{"role": "user", "content": [{"type": "image", "format": {"png": 1}, "data": "AA=="}]}],
     "'messages[0].content[0].format' must be one of"),
])
def test_every_fault_is_a_bad_request_naming_the_field(messages, field):
    assert field in refused(messages)


@pytest.mark.parametrize("block, error, words", [
    ({"format": "bmp", "data": "AA=="}, BadRequest, "'messages[0].content[0].format' must be one of"),
    ({"format": "png", "data": "not base64!"}, BadRequest, "'messages[0].content[0].data' is not valid base64"),
    ({"format": "jpeg", "data": b64(image_bytes("PNG"))}, BadRequest, "not a jpeg image (its bytes are png)"),
    ({"format": "png", "data": b64(b"hello, world")}, BadRequest, "its bytes are no image Bedrock reads"),
    ({"format": "png", "data": b64(image_bytes("PNG", (8001, 2)))}, BadRequest, "8001x2 px"),
    ({"format": "png", "data": "A" * 5_000_004}, PayloadTooLarge, "over the 3750000 bytes"),
    ({"format": "gif", "data": b64(image_bytes("GIF") + b"\0" * images.MAX_IMAGE_BYTES)}, PayloadTooLarge,
     "over the 3750000 bytes"),
])
def test_an_image_bedrock_would_refuse_is_refused_before(block, error, words):
    message = refused([{"role": "user", "content": [{"type": "image", **block}]}], error=error)
    assert words in message


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _damaged() -> list[tuple[str, bytes, str]]:
    png, gif, jpeg, webp = (image_bytes(kind, (64, 48)) for kind in ("PNG", "GIF", "JPEG", "WEBP"))
    lossless = image_bytes("WEBP", (64, 48), lossless=True)
    return [
        ("png", png[:33], "cut short"),  # the signature and IHDR only
        ("png", png[:len(png) // 2], "cut short"),
        ("png", png[:33] + b"junk" * 10, "cut short"),  # a chunk whose length runs past the end
        ("png", _flip(png, len(png) - 20), "checksum"),  # a byte of the last IDAT changed
        ("png", png[:-12], "no IEND"),
        ("gif", gif[:len(gif) // 2], "cut short"),
        ("gif", gif[:-1], "cut short"),  # no trailer
        ("jpeg", jpeg[:len(jpeg) // 2], "cut short"),
        ("jpeg", jpeg[:-2], "cut short"),  # no end-of-image marker
        ("webp", webp[:len(webp) // 2], "cut short"),
        ("webp", lossless[:-4], "cut short"),
    ]


@pytest.mark.parametrize("kind, data, words", _damaged())
def test_an_image_whose_body_is_cut_or_damaged_is_refused_before(kind, data, words):
    # Its header is whole (its format and size can be read), but Bedrock, which decodes it, would refuse it.
    assert images.inspect(data) is not None
    message = refused([{"role": "user", "content": [{"type": "image", "format": kind, "data": b64(data)}]}])
    assert message.startswith(f"'messages[0].content[0].data' is not a whole {kind} image (") and words in message


@pytest.mark.parametrize("kind, options", [("PNG", {}), ("PNG", {"optimize": True}), ("JPEG", {}),
                                           ("JPEG", {"progressive": True}), ("GIF", {}), ("WEBP", {}),
                                           ("WEBP", {"lossless": True})])
def test_whole_images_of_every_format_pass(kind, options):
    data = image_bytes(kind, (300, 200), **options)
    assert images.damage(data, kind.lower()) is None
    # An animated GIF and one with trailing bytes after its end (which decoders ignore) are whole too.
    frames = [Image.new("RGB", (20, 20), color) for color in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    assert images.damage(out.getvalue(), "gif") is None and images.damage(data + b"\0\0", kind.lower()) is None


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
_blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "toolUse", "toolResult", "cachePoint", "json"]) | _json},
    optional=dict.fromkeys(("text", "format", "data", "toolUseId", "name", "input", "status", "content", "json"),
                           _json))
_messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]) | _json,
                                            "content": st.text(max_size=5) | st.lists(_blocks | _json, max_size=3)}),
                     max_size=4)


_tools = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["read_file"]) | _json},
                                        optional=dict.fromkeys(("description", "inputSchema"), _json)) | _json,
                  max_size=3) | _json


@settings(max_examples=400, deadline=None)
@given(messages=_messages, tool_list=_tools,
       tool_choice=st.sampled_from(["auto", "any"]) | st.fixed_dictionaries({"name": _json}) | _json)
def test_any_conversation_tools_or_tool_choice_are_parsed_or_refused_with_a_clients_error(messages, tool_list,
                                                                                         tool_choice):
    # Any JSON value in any field (a `type` or a `name` that is a list or an object included): never a crash.
    for parse_one in (lambda: parse(messages), lambda: tools([TOOL], tool_choice), lambda: tools(tool_list)):
        try:
            parse_one()
        except (BadRequest, PayloadTooLarge):
            pass


def test_images_for_a_model_without_them_and_more_than_bedrock_takes():
    one = {"type": "image", "format": "png", "data": b64(image_bytes("PNG"))}
    assert "does not take images" in refused([{"role": "user", "content": [one]}], ContentRules(model="m"))
    assert "holds 21 images" in refused([{"role": "user", "content": [one] * 21}])


# --- tools ------------------------------------------------------------------------------


def tools(value, choice=None, **options):
    return parse_tools(value, choice, max_tools=options.get("max_tools", 3), model_has_tools=options.get("has", True),
                       model="m")


def test_tools_and_tool_choice_become_converses_tool_config():
    config = tools([{**TOOL, "description": "Read"}], {"name": "read_file"})
    assert config.converse() == {"tools": [{"toolSpec": {"name": "read_file", "description": "Read",
                                                         "inputSchema": {"json": {"type": "object"}}}}],
                                 "toolChoice": {"tool": {"name": "read_file"}}}
    assert tools([TOOL], "any").choice == {"any": {}} and tools([TOOL], "auto").choice == {"auto": {}}
    assert tools([TOOL]).choice is None and tools(None) is None and tools([]) is None
    # As OpenAI clients send a function without description or a schema without its type: Bedrock's way.
    lax = tools([{"name": "now", "description": "", "inputSchema": {"properties": {}}}])
    assert lax.converse()["tools"] == [{"toolSpec": {"name": "now", "inputSchema": {"json": {
        "type": "object", "properties": {}}}}}]
    tokens = converse.input_tokens({"messages": [], "toolConfig": config.converse()})
    assert tokens > TOOL_USE_SYSTEM_TOKENS  # the tool-use system prompt, and the schema


@pytest.mark.parametrize("value, choice, options, words", [
    ("read_file", None, {}, "'tools' must be a list"),
    ([TOOL] * 4, None, {}, "'tools' has 4 tools; at most 3"),
    ([TOOL], None, {"has": False}, "does not take tools"),
    ([{**TOOL, "name": "read file"}], None, {}, "'tools[0].name'"),
    ([TOOL, TOOL], None, {}, "'tools[1].name': another tool is named 'read_file'"),
    ([{**TOOL, "inputSchema": ["type", "object"]}], None, {}, "'tools[0].inputSchema' must be a JSON Schema object"),
    ([{**TOOL, "inputSchema": {"type": "string"}}], None, {}, "'tools[0].inputSchema'"),
    ([{**TOOL, "description": 42}], None, {}, "'tools[0].description' must be a string"),
    ([{**TOOL, "strict": True}], None, {}, "'tools[0]' has an unknown field 'strict'"),
    (None, "any", {}, "'toolChoice' needs 'tools'"),
    ([TOOL], "none", {}, "'toolChoice' must be"),
    ([TOOL], {"name": "write_file"}, {}, "'toolChoice.name' names no tool"),
    ([TOOL], {"name": ["read_file"]}, {}, "'toolChoice.name' names no tool"),
    ([TOOL], {"name": {"read_file": 1}}, {}, "'toolChoice.name' names no tool"),
    ([TOOL], ["any"], {}, "'toolChoice' must be"),
])
def test_bad_tools_are_refused_naming_the_field(value, choice, options, words):
    with pytest.raises(BadRequest) as caught:
        tools(value, choice, **options)
    assert words in caught.value.message


# --- cache points -----------------------------------------------------------------------


def request(*, system="s" * 4096, turns=3, text="t" * 4096):
    messages = [{"role": "user" if n % 2 == 0 else "assistant", "content": [{"text": f"{n} {text}"}]}
                for n in range(turns)]
    return {"messages": messages, **({"system": [{"text": system}]} if system else {})}


def points(built) -> list[str]:
    where = [f"system.{i}" for i, b in enumerate(built.get("system", [])) if "cachePoint" in b]
    return where + [f"messages.{m}.{i}" for m, message in enumerate(built["messages"])
                    for i, b in enumerate(message["content"]) if "cachePoint" in b]


def test_the_server_caches_the_conversation_before_the_last_user_message_and_the_system_prompt():
    built = request()
    place_cache_points(built, min_tokens=1024)
    assert points(built) == ["system.1", "messages.1.1"]
    assert converse.input_tokens(built) == converse.input_tokens(request())  # a cache point reads nothing


def test_prefixes_under_the_models_minimum_get_no_cache_point():
    built = request(system="short", text="short")
    place_cache_points(built, min_tokens=1024)
    assert points(built) == []
    built = request(system="s" * 100, turns=1)  # a single message: nothing before the last user message
    place_cache_points(built, min_tokens=10)
    assert points(built) == ["system.1"]


def test_the_clients_points_count_first_within_bedrocks_four():
    built = request(turns=5)
    for message in built["messages"][:3]:
        message["content"].append({"cachePoint": {"type": "default"}})
    place_cache_points(built, min_tokens=1024)
    assert points(built) == ["messages.0.1", "messages.1.1", "messages.2.1", "messages.3.1"]  # no room for system
    built = request()
    built["messages"][1]["content"].append({"cachePoint": {"type": "default"}})  # where the server would put one
    place_cache_points(built, min_tokens=1024)
    assert points(built) == ["system.1", "messages.1.1"]


def test_a_clients_point_that_starts_a_message_moves_to_the_end_of_what_comes_before():
    # Bedrock refuses a cache point with nothing before it in its message; the prefix it marks (everything
    # before it) ends the message before, or else the system prompt: it is honoured there.
    point = {"cachePoint": {"type": "default"}}
    built = request(turns=5)
    built["messages"][2]["content"].insert(0, dict(point))
    built["messages"][4]["content"].insert(0, dict(point))
    place_cache_points(built, min_tokens=1024)
    assert points(built) == ["system.1", "messages.1.1", "messages.3.1"]  # the server's own at 3.1 was there
    built = request(turns=1)
    built["messages"][0]["content"].insert(0, dict(point))
    place_cache_points(built, min_tokens=10**9)  # under the minimum: still the client's, where Bedrock takes it
    assert points(built) == ["system.1"]
    built = request(system="", turns=3)
    built["messages"][0]["content"].insert(0, dict(point))  # nothing before it at all: no prefix to cache
    built["messages"][1]["content"].append(dict(point))
    built["messages"][2]["content"].insert(0, dict(point))  # the same prefix as the point before it: one point
    place_cache_points(built, min_tokens=1024)
    assert points(built) == ["messages.1.1"]
    assert all(message["content"] for message in built["messages"])


def test_the_estimate_counts_every_block():
    png = image_bytes("PNG", (1000, 1000))
    built = {"messages": [{"role": "user", "content": [
        {"image": {"format": "png", "source": {"bytes": png}}},
        {"toolResult": {"toolUseId": "abcd", "status": "success", "content": [{"json": {"k": "v" * 8}}]}}]}]}
    assert converse.input_tokens(built) == 1334 + 1 + len(json.dumps({"k": "v" * 8}, separators=(",", ":"))) // 4
