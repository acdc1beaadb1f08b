"""The bridge's pure translations: OpenAI and Anthropic requests into chat.send, frames into answers."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.bridge import anthropic_api, openai_api
from client.bridge.errors import ApiError, anthropic_body, openai_body
from client.bridge.reply import End, Reply, Text, ToolCall, Usage

PNG = "iVBORw0KGgo="

# A recorded v1.1 chat: text, a tool call, done with cache usage.
TOOL_CHAT = [
    {"type": "ack", "id": "b1", "requestId": "r1", "model": "m1", "sessionId": None, "limits": {}},
    {"type": "delta", "id": "b1", "seq": 0, "text": "Let me "},
    {"type": "delta", "id": "b1", "seq": 1, "text": "look."},
    {"type": "toolUse", "id": "b1", "seq": 2, "toolUseId": "tu1", "name": "read_file", "input": {"path": "a.py"}},
    {"type": "done", "id": "b1", "stopReason": "tool_use", "limits": {},
     "usage": {"inputTokens": 10, "outputTokens": 5, "cacheReadInputTokens": 1200, "cacheWriteInputTokens": 30,
               "totalTokens": 1245, "costUsd": 0.001}},
]


def events_of(frames, stops=()):
    reply = Reply(stops)
    return [event for frame in frames for event in reply.feed(frame)], reply


# --- OpenAI requests -----------------------------------------------------------------------------

def test_openai_conversation_with_system_tools_images_and_tool_results():
    call = openai_api.chat_call({
        "model": "m1", "max_completion_tokens": 100, "temperature": 0.5, "stop": "END", "stream": True,
        "stream_options": {"include_usage": True}, "user": "ignored", "top_p": 0.9,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": [{"type": "text", "text": "What is in a.py?"},
                                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "read_file", "arguments": '{"path":"a.py"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "print(1)"},
        ],
        "tools": [{"type": "function", "function": {"name": "read_file", "description": "Read a file",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": "required",
    })
    assert call.stream and call.include_usage and call.stop == ("END",)
    assert call.params == {
        "model": "m1", "system": "Be brief.\n\nUse tools.", "maxTokens": 100, "temperature": 0.5,
        "tools": [{"name": "read_file", "description": "Read a file", "inputSchema": {"type": "object"}}],
        "toolChoice": "any",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is in a.py?"},
                                         {"type": "image", "format": "png", "data": PNG}]},
            {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "call_1", "name": "read_file",
                                               "input": {"path": "a.py"}}]},
            {"role": "user", "content": [{"type": "toolResult", "toolUseId": "call_1", "status": "success",
                                          "content": [{"type": "text", "text": "print(1)"}]}]},
        ]}


@pytest.mark.parametrize("choice, expected", [("auto", "auto"), ("required", "any"),
                                              ({"type": "function", "function": {"name": "t"}}, {"name": "t"})])
def test_openai_tool_choice(choice, expected):
    call = openai_api.chat_call({"messages": [{"role": "user", "content": "hi"}], "tool_choice": choice,
                                 "tools": [{"type": "function", "function": {"name": "t"}}]})
    assert call.params["toolChoice"] == expected
    assert call.params["tools"][0]["inputSchema"] == {"type": "object", "properties": {}}


@pytest.mark.parametrize("choice", ["auto", "none", None])
def test_openai_a_tool_choice_that_asks_for_no_tool_needs_no_tools(choice):
    call = openai_api.chat_call({"messages": [{"role": "user", "content": "hi"}], "tool_choice": choice, "tools": []})
    assert "tools" not in call.params and "toolChoice" not in call.params


def test_openai_tool_choice_none_leaves_the_tools_out():
    call = openai_api.chat_call({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "none",
                                 "tools": [{"type": "function", "function": {"name": "t"}}]})
    assert "tools" not in call.params and "toolChoice" not in call.params


@pytest.mark.parametrize("body, param", [
    ("not an object", "body"),
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": " "}]}, "messages[0].content"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]},
     "messages[0].content[0].image_url.url"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                 "image_url": {"url": "data:image/bmp;base64,AA=="}}]}]},
     "messages[0].content[0].image_url.url"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "t", "arguments": "{not json"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "r"}]}, "messages[1].tool_calls[0].function.arguments"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ({"messages": [{"role": "user", "content": "x"}], "logprobs": True}, "logprobs"),
    ({"messages": [{"role": "user", "content": "x"}], "modalities": ["text", "audio"]}, "modalities"),
    ({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop"),
    ({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "t"}}],
      "tool_choice": "sometimes"}, "tool_choice"),
    # OpenAI's deprecated function calling: tools the model would not see, were it ignored.
    ({"messages": [{"role": "user", "content": "x"}], "functions": [{"name": "f", "parameters": {}}]}, "functions"),
    ({"messages": [{"role": "user", "content": "x"}], "function_call": "auto"}, "function_call"),
    # A wrong type that is falsy is no more an absent field than a truthy one.
    ({"messages": [{"role": "user", "content": "x"}], "tools": {}}, "tools"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": 0}, "tools"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": 0}, "stream"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": []}, "stream"),
    ({"messages": [{"role": "user", "content": "x"}], "stream_options": []}, "stream_options"),
    ({"messages": [{"role": "user", "content": "x"}], "stream_options": 5}, "stream_options"),
    ({"messages": [{"role": "user", "content": "x"}], "stop": {}}, "stop"),
    # A tool_choice is checked with tools or without; one that asks for a tool needs tools, as OpenAI says.
    ({"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [],
      "tool_choice": {"type": "function", "function": {"name": "t"}}}, "tool_choice"),
])
def test_openai_bad_requests_name_the_field(body, param):
    with pytest.raises(ApiError) as raised:
        openai_api.chat_call(body)
    assert raised.value.status == 400 and raised.value.param == param
    assert openai_body(raised.value)["error"]["param"] == param
    assert openai_body(raised.value)["error"]["type"] == "invalid_request_error"


def test_openai_completion_from_recorded_frames():
    events, _ = events_of(TOOL_CHAT)
    completion = openai_api.Completion("r1", "m1", created=1700000000)
    for event in events:
        completion.add(event)
    body = completion.body()
    assert body["id"] == "chatcmpl-r1" and body["object"] == "chat.completion" and body["model"] == "m1"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look."
    assert choice["message"]["tool_calls"] == [{"id": "tu1", "type": "function", "function": {
        "name": "read_file", "arguments": '{"path": "a.py"}'}}]
    assert body["usage"] == {"prompt_tokens": 1240, "completion_tokens": 5, "total_tokens": 1245,
                             "prompt_tokens_details": {"cached_tokens": 1200}}


def test_openai_chunks_from_recorded_frames():
    events, _ = events_of(TOOL_CHAT)
    stream = openai_api.ChunkStream("r1", "m1", include_usage=True, created=1)
    chunks = [stream.start()] + [c for e in events for c in stream.chunks(e)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas) == "Let me look."
    assert deltas[3]["tool_calls"][0]["index"] == 0 and deltas[3]["tool_calls"][0]["id"] == "tu1"
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 1200
    assert all(c["usage"] is None for c in chunks[:-1])


def test_openai_models_owned_by_the_provider():
    listed = openai_api.models([{"id": "us.anthropic.claude-x:0"}, {"id": "amazon.nova-pro-v1:0"}], 5)
    assert listed == {"object": "list", "data": [
        {"id": "us.anthropic.claude-x:0", "object": "model", "created": 5, "owned_by": "anthropic"},
        {"id": "amazon.nova-pro-v1:0", "object": "model", "created": 5, "owned_by": "amazon"}]}


# --- Anthropic requests --------------------------------------------------------------------------

def test_anthropic_blocks_cache_control_and_tool_results():
    call = anthropic_api.chat_call({
        "model": "claude-test", "max_tokens": 50, "stream": True, "stop_sequences": ["\n\nHuman:"],
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "metadata": {"user_id": "u"},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hm", "signature": "s"},
                {"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {"dir": "."}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True, "content": "denied"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": []}]},
        ],
        "tools": [{"name": "ls", "description": "list", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "ls"},
    })
    assert call.stream and call.stop == ("\n\nHuman:",)
    assert call.params == {
        "model": "claude-test", "maxTokens": 50, "system": "You are terse.",
        "tools": [{"name": "ls", "description": "list", "inputSchema": {"type": "object"}}],
        "toolChoice": {"name": "ls"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Long context"}, {"type": "cachePoint"},
                                         {"type": "image", "format": "png", "data": PNG}]},
            {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "toolu_1", "name": "ls",
                                               "input": {"dir": "."}}]},
            {"role": "user", "content": [
                {"type": "toolResult", "toolUseId": "toolu_1", "status": "error",
                 "content": [{"type": "text", "text": "denied"}]},
                {"type": "toolResult", "toolUseId": "toolu_2", "status": "success", "content": []}]},
        ]}


@pytest.mark.parametrize("body, param", [
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document"}]}]},
     "messages[0].content[0].type"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x"}}]}]}, "messages[0].content[0].source.type"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
      "tools": [{"name": "t", "input_schema": {}}], "tool_choice": {"type": "maybe"}}, "tool_choice.type"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"},
                                                  {"role": "assistant", "content": "prefill"}]}, "messages"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": {}}, "tools"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stream": 0}, "stream"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stop_sequences": {}},
     "stop_sequences"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stop_sequences": 0},
     "stop_sequences"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
      "tool_choice": {"type": "any"}}, "tool_choice"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [],
      "tool_choice": {"type": "tool", "name": "t"}}, "tool_choice"),
])
def test_anthropic_bad_requests_name_the_field(body, param):
    with pytest.raises(ApiError) as raised:
        anthropic_api.chat_call(body)
    assert raised.value.status == 400 and raised.value.param == param
    assert anthropic_body(raised.value) == {"type": "error", "error": {
        "type": "invalid_request_error", "message": raised.value.message}}


def test_anthropic_message_and_event_stream_from_recorded_frames():
    events, _ = events_of(TOOL_CHAT)
    message = anthropic_api.Message("r1", "m1")
    for event in events:
        message.add(event)
    assert message.body() == {
        "id": "msg_r1", "type": "message", "role": "assistant", "model": "m1", "stop_reason": "tool_use",
        "stop_sequence": None,
        "content": [{"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "tu1", "name": "read_file", "input": {"path": "a.py"}}],
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 30,
                  "cache_read_input_tokens": 1200}}
    stream = anthropic_api.EventStream("r1", "m1")
    sent = stream.start() + [pair for e in events for pair in stream.events(e)]
    assert [name for name, _ in sent] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert sent[5][1]["content_block"] == {"type": "tool_use", "id": "tu1", "name": "read_file", "input": {}}
    assert json.loads(sent[6][1]["delta"]["partial_json"]) == {"path": "a.py"}
    assert sent[8][1]["delta"]["stop_reason"] == "tool_use"
    assert sent[8][1]["usage"]["cache_read_input_tokens"] == 1200


# --- stop sequences and errors -------------------------------------------------------------------

def test_a_stop_sequence_cuts_the_text_across_deltas_and_ends_with_stop_sequence():
    frames = [{"type": "delta", "seq": 0, "text": "one two EN"}, {"type": "delta", "seq": 1, "text": "D three"},
              {"type": "delta", "seq": 2, "text": "more"},
              {"type": "done", "stopReason": "cancelled", "usage": {"inputTokens": 3, "outputTokens": 4}}]
    events, reply = events_of(frames, stops=["END"])
    assert "".join(e.text for e in events if isinstance(e, Text)) == "one two "
    assert events[-1] == End("stop_sequence", Usage(3, 4, 0, 0, 7), "END")
    assert reply.stopped


@given(st.text(alphabet="abEND ", max_size=40), st.lists(st.integers(1, 5), max_size=10))
def test_text_without_its_stop_sequence_passes_through_whole(text, cuts):
    while "END" in text:  # one pass can make a new one: "ENENDD" -> "END"
        text = text.replace("END", "")
    pieces, rest = [], text
    for cut in cuts:
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    frames = [{"type": "delta", "seq": i, "text": p} for i, p in enumerate(pieces)]
    frames.append({"type": "done", "stopReason": "end_turn", "usage": {}})
    events, _ = events_of(frames, stops=["END"])
    assert "".join(e.text for e in events if isinstance(e, Text)) == text
    assert events[-1].stop_reason == "end_turn"


def test_held_text_is_released_before_a_tool_call():
    events, _ = events_of([{"type": "delta", "seq": 0, "text": "ab"},
                           {"type": "toolUse", "seq": 1, "toolUseId": "t", "name": "n", "input": {}}], stops=["abc"])
    assert events == [Text("ab"), ToolCall("t", "n", {})]


@pytest.mark.parametrize("code, status, openai_type, anthropic_type", [
    ("BAD_REQUEST", 400, "invalid_request_error", "invalid_request_error"),
    ("MODEL_NOT_ALLOWED", 400, "invalid_request_error", "invalid_request_error"),
    ("PAYLOAD_TOO_LARGE", 413, "invalid_request_error", "request_too_large"),
    ("UNAUTHORIZED", 401, "authentication_error", "authentication_error"),
    ("FORBIDDEN", 403, "permission_error", "permission_error"),
    ("NOT_FOUND", 404, "not_found_error", "not_found_error"),
    ("RATE_LIMITED", 429, "rate_limit_error", "rate_limit_error"),
    ("BUDGET_EXCEEDED", 429, "rate_limit_error", "rate_limit_error"),
    ("QUOTA_EXCEEDED", 429, "rate_limit_error", "rate_limit_error"),
    ("UPSTREAM_THROTTLED", 429, "rate_limit_error", "rate_limit_error"),
    ("UPSTREAM_ERROR", 502, "api_error", "api_error"),
    ("TIMEOUT", 504, "api_error", "api_error"),
    ("INTERNAL", 500, "api_error", "api_error"),
    ("SOMETHING_NEW", 502, "api_error", "api_error"),
])
def test_every_protocol_error_code_has_its_status_and_types(code, status, openai_type, anthropic_type):
    with pytest.raises(ApiError) as raised:
        Reply().feed({"type": "error", "error": {"code": code, "message": "m", "retryAfter": 12}})
    error = raised.value
    assert error.status == status and error.headers() == {"Retry-After": "12"}
    assert openai_body(error)["error"]["type"] == openai_type
    assert anthropic_body(error)["error"]["type"] == anthropic_type


def test_the_backends_paths_are_renamed_to_the_callers_in_a_tool_results_image_and_a_tool():
    call = anthropic_api.chat_call({
        "model": "m", "max_tokens": 5, "tools": [{"name": "shot", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Look"}, {"type": "text", "text": ""}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "..."},
                                              {"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": " "},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]}]})
    for backend_says, caller_reads in [
        ("'messages[2].content[0].content[0].data' is not valid base64",
         "'messages[2].content[0].content[1].source.data' is not valid base64"),
        ("'messages[1].content[0].toolUseId': 't1' is given twice in one message",
         "'messages[1].content[1].id': 't1' is given twice in one message"),
        ("'tools[0].inputSchema' must be a JSON Schema object", "'tools[0].input_schema' must be a JSON Schema object"),
        ("model 'm' is not allowed", "model 'm' is not allowed"),
    ]:
        renamed = call.origins.rename(ApiError(400, "BAD_REQUEST", backend_says))
        assert renamed.message == caller_reads
        assert renamed.param == (caller_reads.split("'")[1] if caller_reads != backend_says else None)


def test_a_string_contents_text_is_named_as_the_string():
    call = openai_api.chat_call({"messages": [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "a cut emoji"}]})
    renamed = call.origins.rename(ApiError(400, "BAD_REQUEST", "'messages[0].content[0].text' is not valid Unicode"))
    assert renamed.message == "'messages[1].content' is not valid Unicode" and renamed.param == "messages[1].content"


@pytest.mark.parametrize("api, body", [
    (openai_api, {"messages": [{"role": "user", "content": "x"}], "temperature": 1.5}),
    (anthropic_api, {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                     "temperature": 1.5}),
])
def test_a_field_the_backend_names_as_the_caller_did_is_the_param(api, body):
    """The backend refuses the temperature (Bedrock's 0 to 1), under the caller's own name: it is the `param`."""
    backend_says = "'temperature' must be between 0.0 and 1.0"
    renamed = api.chat_call(body).origins.rename(ApiError(400, "BAD_REQUEST", backend_says))
    assert renamed.message == backend_says and renamed.param == "temperature"
