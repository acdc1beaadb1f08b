"""The bridge served for real, driven by the official OpenAI and Anthropic SDKs, in front of a
scripted protocol v1.1 backend (tests/protocol_backend.py) over a real WebSocket."""
from __future__ import annotations

import base64
import http.client
import json
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import anthropic
import openai
import pytest

from client.auth import NotSignedIn, SignedIn, Tokens, TokenStore, UserPool
from client.bridge.backend import Backend
from client.bridge.server import make_app
from tests.protocol_backend import MODELS, ProtocolBackend
from tests.servers import serve

KEY = "lli-local-test-key"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


@dataclass
class Bridge:
    url: str
    fake: ProtocolBackend
    renewals: list[str]

    def openai(self, **options) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=KEY, max_retries=0, **options)

    def anthropic(self, **options) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=KEY, max_retries=0, **options)

    def sent(self, action: str) -> list[dict]:
        return [f for f in self.fake.received if f.get("action") == action]

    def wait_for(self, predicate, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.02)


def start_bridge(tmp_path, *, refusal: bool = False):
    fake = ProtocolBackend(tokens={"t1", "t2"})
    now = int(time.time())
    store = TokenStore(tmp_path / "tokens.json")
    store.save(["ws"], Tokens("dev", "t1", "id1", "refresh-1", expires_at=now + 3600, issued_at=now))
    renewals: list[str] = []

    def renew(tokens: Tokens, pool: UserPool) -> Tokens:
        if refusal:
            raise NotSignedIn("the sign-in of dev has expired or was revoked: run `llm-ide login`")
        renewals.append(tokens.access_token)
        return Tokens("dev", "t2", "id2", tokens.refresh_token, expires_at=now + 3600, issued_at=now)

    account = SignedIn(store, ["ws"], UserPool("client", "us-east-1"), renew=renew)
    return fake, account, renewals


@pytest.fixture
def bridge(tmp_path):
    fake, account, renewals = start_bridge(tmp_path)
    with serve(fake.make_app()) as backend_url:
        fake.base_url = backend_url
        backend = Backend(backend_url.replace("http://", "ws://") + "/ws", account, keepalive_seconds=0)
        with serve(make_app(backend, KEY), handler_cancellation=True) as url:
            yield Bridge(url, fake, renewals)


# --- OpenAI ------------------------------------------------------------------------------------

def test_openai_models_are_the_backends(bridge):
    assert [m.id for m in bridge.openai().models.list()] == [m["id"] for m in MODELS]
    assert {m.owned_by for m in bridge.openai().models.list()} == {"anthropic", "amazon"}


def test_openai_streamed_completion_is_the_whole_reply_with_the_done_frames_usage(bridge):
    prompt = "Bonjour, ça va? 😀 " * 5 + "[[cache:1100,40]]"
    stream = bridge.openai().chat.completions.create(
        model="claude-test", messages=[{"role": "system", "content": "Be nice."}, {"role": "user", "content": prompt}],
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == prompt
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[0].model == "anthropic.claude-test-v1:0"
    usage = chunks[-1].usage
    assert usage.prompt_tokens_details.cached_tokens == 1100
    sent = bridge.sent("chat.send")[-1]
    assert sent["system"] == "Be nice." and sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": prompt}]}]
    done = bridge.fake.runs[chunks[0].id.removeprefix("chatcmpl-")].frames[-1]["usage"]
    assert usage.prompt_tokens == done["inputTokens"] + done["cacheReadInputTokens"] + done["cacheWriteInputTokens"]
    assert (usage.completion_tokens, usage.total_tokens) == (done["outputTokens"], done["totalTokens"])


def test_openai_completion_not_streamed(bridge):
    completion = bridge.openai().chat.completions.create(model="claude-test", max_tokens=30,
                                                         messages=[{"role": "user", "content": "Hello there"}])
    assert completion.choices[0].message.content == "Hello there"
    assert completion.choices[0].finish_reason == "stop" and completion.usage.completion_tokens >= 1
    assert bridge.sent("chat.send")[-1]["maxTokens"] == 30


def test_openai_tool_round_trip(bridge):
    client = bridge.openai()
    tools = [{"type": "function", "function": {"name": "read_file", "description": "Read a file",
                                               "parameters": {"type": "object",
                                                              "properties": {"path": {"type": "string"}}}}}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": 'Reading. [[tool:read_file {"path": "a.py"}]]'}]
    chunks = list(client.chat.completions.create(model="claude-test", messages=messages, tools=tools, stream=True))
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "read_file"
    assert json.loads(calls[0].function.arguments) == {"path": "a.py"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    messages += [{"role": "assistant", "content": "Reading. ", "tool_calls": [
                     {"id": calls[0].id, "type": "function", "function": {"name": "read_file",
                                                                          "arguments": calls[0].function.arguments}}]},
                 {"role": "tool", "tool_call_id": calls[0].id, "content": "print(1)"},
                 {"role": "user", "content": "And now?"}]
    second = client.chat.completions.create(model="claude-test", messages=messages, tools=tools)
    assert second.choices[0].message.content == "And now?"
    sent = bridge.sent("chat.send")[-1]
    assert sent["messages"][1]["content"][-1] == {"type": "toolUse", "toolUseId": calls[0].id, "name": "read_file",
                                                  "input": {"path": "a.py"}}
    assert sent["messages"][2]["content"][0]["type"] == "toolResult"


def test_parallel_tool_calls_and_the_request_for_one_at_a_time(bridge):
    """Parallel calls stream with their indexes and are answered by one `tool` message each; a caller that asks for
    one call a turn (`parallel_tool_calls` false, Anthropic's `disable_parallel_tool_use`) gets the first only:
    it answers only what it gets, and a call left unanswered would have the next request refused."""
    client = bridge.openai()
    tools = [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}} for name in "ab"]
    prompt = 'Both. [[tool:a {"x": 1}]] [[tool:b {"y": "é"}]]'
    with client.chat.completions.stream(model="claude-test", tools=tools,
                                        messages=[{"role": "user", "content": prompt}]) as stream:
        message = stream.get_final_completion().choices[0].message
    calls = message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [("a", {"x": 1}), ("b", {"y": "é"})]
    client.chat.completions.create(model="claude-test", tools=tools, messages=[
        {"role": "user", "content": prompt}, message.model_dump(exclude_none=True),
        *({"role": "tool", "tool_call_id": c.id, "content": f"result of {c.function.name}"} for c in calls)])
    assert [b["toolUseId"] for m in bridge.sent("chat.send")[-1]["messages"][2:]
            for b in m["content"]] == [c.id for c in calls]
    one = list(client.chat.completions.create(model="claude-test", tools=tools, parallel_tool_calls=False,
                                              stream=True, messages=[{"role": "user", "content": prompt}]))
    assert [call.function.name for c in one if c.choices for call in (c.choices[0].delta.tool_calls or [])] == ["a"]
    assert [c.choices[0].finish_reason for c in one if c.choices][-1] == "tool_calls"
    reply = bridge.anthropic().messages.create(
        model="claude-test", max_tokens=50, messages=[{"role": "user", "content": prompt}],
        tools=[{"name": name, "input_schema": {"type": "object"}} for name in "ab"],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert [(b.type, getattr(b, "name", None)) for b in reply.content] == [("text", None), ("tool_use", "a")]


def test_openai_image_part_reaches_the_backend(bridge):
    bridge.openai().chat.completions.create(model="claude-test", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])
    assert bridge.sent("chat.send")[-1]["messages"][0]["content"][1] == {"type": "image", "format": "png",
                                                                        "data": PNG}


def test_openai_rate_limit_is_a_429_with_retry_after(bridge):
    with pytest.raises(openai.RateLimitError) as raised:
        bridge.openai().chat.completions.create(model="claude-test",
                                                messages=[{"role": "user", "content": "[[error:RATE_LIMITED]]"}])
    assert raised.value.response.headers["retry-after"] == "17"
    assert "x-should-retry" not in raised.value.response.headers  # a wait the SDK sleeps through, then retries
    body = cast(dict[str, Any], raised.value.body)  # the SDK types it `object`: here the error's JSON
    assert body["type"] == "rate_limit_error" and body["code"] == "rate_limited"


def test_openai_error_after_the_stream_began_ends_it_as_an_error(bridge):
    stream = bridge.openai().chat.completions.create(
        model="claude-test", stream=True,
        messages=[{"role": "user", "content": "0123456789abcdef [[fail:UPSTREAM_ERROR]]"}])
    with pytest.raises(openai.APIError, match="scripted failure"):
        list(stream)


def test_openai_stop_sequence_cuts_the_reply_and_cancels_the_chat(bridge):
    completion = bridge.openai().chat.completions.create(
        model="claude-test", stop=["STOP"],
        messages=[{"role": "user", "content": "[[slow:20]] one two STOP three four"}])
    assert completion.choices[0].message.content == "[[slow:20]] one two "
    assert completion.choices[0].finish_reason == "stop"
    bridge.wait_for(lambda: bridge.sent("chat.cancel"))


def test_openai_unsupported_parameters_are_400_naming_them(bridge):
    with pytest.raises(openai.BadRequestError) as raised:
        bridge.openai().chat.completions.create(model="claude-test", n=2, messages=[{"role": "user", "content": "x"}])
    assert cast(dict[str, Any], raised.value.body)["param"] == "n"


def test_a_large_conversation_goes_through_chat_upload(bridge):
    big = "lorem ipsum " * 8000  # ~96 KB, over a 32 KiB frame
    completion = bridge.openai().chat.completions.create(model="claude-test", messages=[
        {"role": "user", "content": big}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "end"}])
    assert completion.choices[0].message.content == "end"
    assert bridge.sent("chat.upload") and "uploadId" in bridge.sent("chat.send")[-1]
    assert "messages" not in bridge.sent("chat.send")[-1]


# --- Anthropic ---------------------------------------------------------------------------------

def test_anthropic_streamed_message_with_text_tool_use_and_cache_usage(bridge):
    client = bridge.anthropic()
    with client.messages.stream(
            model="claude-test", max_tokens=100,
            tools=[{"name": "ls", "description": "list files", "input_schema": {"type": "object"}}],
            messages=[{"role": "user", "content": 'Listing. [[cache:900,12]] [[tool:ls {"dir": "src"}]]'}],
            extra_headers={"anthropic-beta": "prompt-caching-2024-07-31,unknown-beta"}) as stream:
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[0].text == "Listing. [[cache:900,12]] "
    assert message.content[1].name == "ls" and message.content[1].input == {"dir": "src"}
    assert message.stop_reason == "tool_use"
    done = bridge.fake.runs[message.id.removeprefix("msg_")].frames[-1]["usage"]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (done["inputTokens"], done["outputTokens"])
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (900, 12)


def test_anthropic_message_not_streamed_with_an_image(bridge):
    message = bridge.anthropic().messages.create(model="claude-test", max_tokens=10, system="Be brief.", messages=[
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": PNG}},
                                     {"type": "text", "text": "Describe it"}]}])
    assert message.content[0].text == "Describe it" and message.stop_reason == "end_turn"
    assert bridge.sent("chat.send")[-1]["messages"][0]["content"][0]["type"] == "image"


def test_anthropic_structured_outputs_are_a_400_naming_the_field(bridge):
    """A reply bound to a JSON schema cannot be had: the request is refused, not answered in free text that the
    caller (the SDK's `messages.parse`) then fails to read, as OpenAI's `response_format` is refused."""
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    client = bridge.anthropic()
    with pytest.raises(anthropic.BadRequestError, match=r"output_config\.format") as raised:
        client.messages.create(model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "x"}],
                               output_config={"format": {"type": "json_schema", "schema": schema}})
    assert cast(dict[str, Any], raised.value.body)["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError, match="output_format"):  # the beta's spelling of it
        client.messages.create(model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "x"}],
                               extra_body={"output_format": {"type": "json_schema", "schema": schema}})
    assert not bridge.sent("chat.send")
    client.messages.create(model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "x"}],
                           output_config={"effort": "low"})  # the rest of output_config asks nothing we must honour


def test_anthropic_count_tokens(bridge):
    counted = bridge.anthropic().messages.count_tokens(model="claude-test",
                                                        messages=[{"role": "user", "content": "Count me"}])
    asked = bridge.sent("chat.countTokens")[-1]
    assert counted.input_tokens > 0 and asked["messages"][0]["content"][0]["text"] == "Count me"


def test_anthropic_rate_limit_and_stream_error(bridge):
    client = bridge.anthropic()
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model="claude-test", max_tokens=5,
                               messages=[{"role": "user", "content": "[[error:BUDGET_EXCEEDED]]"}])
    assert raised.value.response.headers["retry-after"] == "1800"
    with pytest.raises(anthropic.APIStatusError):
        with client.messages.stream(model="claude-test", max_tokens=5, messages=[
                {"role": "user", "content": "0123456789abcdef [[fail:TIMEOUT]]"}]) as stream:
            stream.get_final_message()


@pytest.mark.timeout(30)  # the old answer had the SDK sleep 1,800 s before its first retry
def test_a_spent_budget_is_not_retried_by_the_sdks(bridge):
    """The `anthropic` SDK waited out any Retry-After (here the hour's budget, 1,800 s) in silence and then retried,
    twice, each attempt refused again: an assistant hung for an hour and a half. `x-should-retry: false` on a wait
    longer than the SDKs sleep for (60 s) hands the caller the 429 and its Retry-After at once."""
    budget_spent: Any = [{"role": "user", "content": "[[error:BUDGET_EXCEEDED]]"}]  # both SDKs' message shape
    sent = len(bridge.sent("chat.send"))
    with pytest.raises(anthropic.RateLimitError) as refused:
        anthropic.Anthropic(base_url=bridge.url, api_key=KEY, max_retries=2).messages.create(
            model="claude-test", max_tokens=5, messages=budget_spent)
    assert refused.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.RateLimitError) as also_refused:
        openai.OpenAI(base_url=f"{bridge.url}/v1", api_key=KEY, max_retries=2).chat.completions.create(
            model="claude-test", messages=budget_spent)
    assert also_refused.value.response.headers["x-should-retry"] == "false"
    assert len(bridge.sent("chat.send")) == sent + 2  # one attempt each


# --- what both APIs answer ----------------------------------------------------------------------

def test_a_reply_cut_by_the_context_window_says_so_in_each_api(bridge):
    """Bedrock's `model_context_window_exceeded` is a cut-off reply: OpenAI's `length`, Anthropic's own reason."""
    prompt = "Half an answer [[stop:model_context_window_exceeded]]"
    chunks = list(bridge.openai().chat.completions.create(model="claude-test", stream=True,
                                                          messages=[{"role": "user", "content": prompt}]))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    message = bridge.anthropic().messages.create(model="claude-test", max_tokens=50,
                                                 messages=[{"role": "user", "content": prompt}])
    assert message.stop_reason == "model_context_window_exceeded" and message.content[0].text == prompt


@pytest.mark.parametrize("reason", ["malformed_tool_use", "malformed_model_output"])
def test_a_malformed_model_output_is_an_error_not_a_finished_reply(bridge, reason):
    """The tool call (or the text) the model botched is lost: the caller is told, as an upstream error, rather
    than handed a reply that looks whole. Before any output: a 502; after some: the stream's error event."""
    with pytest.raises(openai.InternalServerError, match=reason) as raised:
        bridge.openai().chat.completions.create(model="claude-test", messages=[
            {"role": "user", "content": f"Calling [[stop:{reason}]]"}])
    assert raised.value.status_code == 502
    with pytest.raises(anthropic.APIStatusError, match=reason):
        with bridge.anthropic().messages.stream(model="claude-test", max_tokens=50, messages=[
                {"role": "user", "content": f"Calling a tool now [[stop:{reason}]]"}]) as stream:
            stream.get_final_message()


# --- the connection ----------------------------------------------------------------------------

def test_a_stream_survives_the_backend_closing_the_socket(bridge):
    prompt = "[[drop:3]] [[slow:10]] " + "abcdefghij" * 10
    chunks = list(bridge.openai().chat.completions.create(model="claude-test", stream=True,
                                                          messages=[{"role": "user", "content": prompt}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == prompt
    resumed = bridge.sent("chat.resume")
    assert len(resumed) == 1 and resumed[0]["afterSeq"] == 2
    assert len(bridge.fake.handshakes) == 2


def test_a_resume_refused_rate_limited_is_sent_again_after_its_retry_after(bridge):
    """The chat runs on whatever the request limit says: a refused resume is not the chat's end."""
    prompt = "[[drop:3]] [[limited:2]] [[slow:10]] " + "abcdefghij" * 10
    chunks = list(bridge.openai().chat.completions.create(model="claude-test", stream=True,
                                                          messages=[{"role": "user", "content": prompt}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == prompt
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert [r["afterSeq"] for r in bridge.sent("chat.resume")] == [2, 2, 2]


def test_an_expired_token_is_renewed_and_the_request_sent_again(bridge):
    client = bridge.openai()
    client.chat.completions.create(model="claude-test", messages=[{"role": "user", "content": "first"}])
    bridge.fake.expired.add("t1")  # the backend now refuses the socket's frames: UNAUTHORIZED, then closes it
    second = client.chat.completions.create(model="claude-test", messages=[{"role": "user", "content": "second"}])
    assert second.choices[0].message.content == "second"
    assert bridge.renewals == ["t1"] and bridge.fake.handshakes == ["t1", "t2"]


def _streamed_chat(bridge, content: str) -> http.client.HTTPConnection:
    """A raw connection whose streamed /v1/chat/completions request for `content` has been sent."""
    parts = urlsplit(bridge.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    body = json.dumps({"model": "claude-test", "stream": True, "messages": [{"role": "user", "content": content}]})
    connection.request("POST", "/v1/chat/completions", body=body,
                       headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    return connection


def test_a_caller_that_goes_away_cancels_its_chat(bridge):
    connection = _streamed_chat(bridge, "[[slow:50]] " + "x" * 400)
    response = connection.getresponse()
    assert response.status == 200 and b"chat.completion.chunk" in response.read1(4096)
    connection.close()
    bridge.wait_for(lambda: bridge.sent("chat.cancel"))
    run = next(iter(bridge.fake.runs.values()))
    assert bridge.sent("chat.cancel")[0]["requestId"] == run.request_id
    bridge.wait_for(run.finished.is_set)
    assert run.frames[-1]["stopReason"] == "cancelled"


def test_a_caller_that_goes_away_before_the_ack_cancels_its_chat(bridge):
    """The chat.send went out: the chat runs whether or not its ack has come, so it is cancelled by the bridge's id."""
    connection = _streamed_chat(bridge, "[[ack:1000]] [[slow:50]] " + "x" * 400)
    bridge.wait_for(lambda: bridge.sent("chat.send"))
    connection.close()
    bridge.wait_for(lambda: bridge.sent("chat.cancel"))
    assert bridge.sent("chat.cancel")[0]["requestId"] == bridge.sent("chat.send")[0]["id"]
    run = next(iter(bridge.fake.runs.values()))
    bridge.wait_for(run.finished.is_set)
    assert run.frames[-1]["stopReason"] == "cancelled"


def test_a_logout_ends_the_running_bridges_socket_and_cancels_its_chats(bridge, tmp_path):
    """`llm-ide logout` while `llm-ide serve` runs: the bridge chatted on as the signed-out user for as long as its
    socket's token held (up to an hour). Now its next frame finds the sign-in gone: 401, its chats are cancelled,
    and a new sign-in serves at once."""
    store = TokenStore(tmp_path / "tokens.json")
    connection = _streamed_chat(bridge, "[[slow:50]] " + "x" * 400)
    response = connection.getresponse()
    assert response.status == 200 and b"chat.completion.chunk" in response.read1(4096)
    store.forget(["ws"], "dev")  # what `llm-ide logout` does to the token file
    with pytest.raises(openai.AuthenticationError, match="llm-ide login"):
        bridge.openai().models.list()
    run = next(iter(bridge.fake.runs.values()))
    assert [f["requestId"] for f in bridge.sent("chat.cancel")] == [run.request_id]
    rest = response.read().decode()  # the stream ends, with the refusal, not after the 5 s of the whole reply
    assert "not signed in to this API: run `llm-ide login`" in rest
    bridge.wait_for(run.finished.is_set)
    assert run.frames[-1]["stopReason"] == "cancelled"
    now = int(time.time())
    store.save(["ws"], Tokens("dev", "t2", "id2", "refresh-2", expires_at=now + 3600, issued_at=now))
    assert [m.id for m in bridge.openai().models.list()] == [m["id"] for m in MODELS]
    assert bridge.fake.handshakes == ["t1", "t2"]


def _logout(store: TokenStore) -> None:
    store.forget(["ws"], "dev")  # what `llm-ide logout` does to the token file


def _login_as_ann(store: TokenStore) -> None:
    now = int(time.time())
    store.save(["ws"], Tokens("ann", "t2", "id2", "refresh-ann", expires_at=now + 3600, issued_at=now))


@pytest.mark.parametrize(("sign_in_change", "refusal"), [
    (_logout, "not signed in to this API: run `llm-ide login`"),
    (_login_as_ann, r"dev is no longer signed in here \(ann is\)"),
])
def test_a_sign_in_change_while_a_chat_streams_ends_it_with_no_other_request(bridge, tmp_path, sign_in_change,
                                                                             refusal):
    """The bridge used to notice a logout (or a login as another user) only at its next request or keep-alive ping,
    up to 4 minutes later, streaming on as the user who had signed out. Now it looks at the token file every second
    while a chat streams: the chat is cancelled, its caller gets the 401, and the socket is closed."""
    stream = bridge.openai().chat.completions.create(
        model="claude-test", stream=True, messages=[{"role": "user", "content": "[[slow:50]] " + "x" * 400}])
    chunks = iter(stream)
    assert next(chunks).choices[0].delta.role == "assistant"  # streaming (the whole reply takes about 5 s)
    sign_in_change(TokenStore(tmp_path / "tokens.json"))
    with pytest.raises(openai.APIError, match=refusal):
        for _chunk in chunks:
            pass
    run = next(iter(bridge.fake.runs.values()))
    socket = run.ws
    bridge.wait_for(lambda: bridge.sent("chat.cancel"))
    assert [f["requestId"] for f in bridge.sent("chat.cancel")] == [run.request_id]
    bridge.wait_for(run.finished.is_set)
    assert run.frames[-1]["stopReason"] == "cancelled"
    assert {f["action"] for f in bridge.fake.received} == {"chat.send", "chat.cancel"}  # no request, no ping
    assert socket is not None
    bridge.wait_for(lambda: socket.closed)  # and the socket of the sign-in that is gone is closed


def test_the_sign_in_watch_reads_again_after_a_failed_read(bridge, tmp_path, monkeypatch):
    """A read of the sign-in that failed (the file unreadable for a moment) used to end the watch, or leave it
    waiting for the next change of the file: a login as another user went unseen until the next request. Now the
    watch reads again at its next look, and the change ends the chat."""
    stream = bridge.openai().chat.completions.create(
        model="claude-test", stream=True, messages=[{"role": "user", "content": "[[slow:50]] " + "x" * 400}])
    chunks = iter(stream)
    assert next(chunks).choices[0].delta.role == "assistant"
    failed: list[bool] = []
    load = SignedIn._load

    def unreadable_once(self):
        if not failed:
            failed.append(True)
            raise PermissionError("the token file is unreadable for a moment")
        return load(self)
    monkeypatch.setattr(SignedIn, "_load", unreadable_once)
    _login_as_ann(TokenStore(tmp_path / "tokens.json"))
    with pytest.raises(openai.APIError, match=r"dev is no longer signed in here \(ann is\)"):
        for _chunk in chunks:
            pass
    assert failed


def test_a_stream_whose_socket_closes_after_a_logout_ends_at_once_with_401(bridge, tmp_path):
    """The reconnect's 45 s of retries are for a network that comes back, not for a sign-in that is gone."""
    connection = _streamed_chat(bridge, "[[drop:5]] [[slow:200]] " + "x" * 400)  # the drop comes ~1 s after the logout
    response = connection.getresponse()
    assert response.status == 200 and b"chat.completion.chunk" in response.read1(4096)
    TokenStore(tmp_path / "tokens.json").forget(["ws"], "dev")  # logged out before the socket dropped
    started = time.monotonic()
    rest = response.read().decode()
    assert "not signed in to this API: run `llm-ide login`" in rest
    assert time.monotonic() - started < 10  # not after the reconnect's 45 s
    assert bridge.fake.handshakes == ["t1"]


def test_a_login_as_another_user_moves_the_bridge_to_their_sign_in(bridge, tmp_path):
    bridge.openai().models.list()
    now = int(time.time())
    TokenStore(tmp_path / "tokens.json").save(
        ["ws"], Tokens("ann", "t2", "id2", "refresh-ann", expires_at=now + 3600, issued_at=now))
    reply = bridge.openai().chat.completions.create(model="claude-test", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "hi"
    assert bridge.fake.handshakes == ["t1", "t2"]  # ann's own socket, not dev's


# --- the guard, and bad input --------------------------------------------------------------------

def raw(bridge: Bridge, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    parts = urlsplit(bridge.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")


def test_without_the_local_key_401_in_each_apis_shape(bridge):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{bridge.url}/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=bridge.url, api_key="wrong", max_retries=0).messages.create(
            model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}])
    status, _, body = raw(bridge, "POST", "/v1/messages", b"{}", {"x-api-key": KEY[:-1]})
    assert status == 401 and body["type"] == "error" and body["error"]["type"] == "authentication_error"
    status, _, body = raw(bridge, "GET", "/v1/models", None, {"x-api-key": KEY})
    assert status == 200 and body["object"] == "list"


@pytest.mark.parametrize("host", ["evil.example:80", "attacker.test", "127.0.0.1:1", "127.0.0.1"])
def test_a_foreign_host_header_is_403(bridge, host):
    status, _, body = raw(bridge, "GET", "/v1/models", None, {"Host": host, "Authorization": f"Bearer {KEY}"})
    assert status == 403 and body["error"]["type"] == "permission_error"


def test_localhost_names_are_accepted(bridge):
    port = urlsplit(bridge.url).port
    for host in (f"localhost:{port}", f"LOCALHOST:{port}"):
        status, _, _ = raw(bridge, "GET", "/v1/models", None, {"Host": host, "Authorization": f"Bearer {KEY}"})
        assert status == 200


def test_malformed_json_unknown_paths_and_wrong_methods(bridge):
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    status, _, body = raw(bridge, "POST", "/v1/chat/completions", b"{not json", auth)
    assert status == 400 and body["error"]["param"] == "body"
    status, _, body = raw(bridge, "POST", "/v1/messages", b"[1, 2]", auth)
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, _, body = raw(bridge, "GET", "/v1/nothing", None, auth)
    assert status == 404 and body["error"]["type"] == "not_found_error"
    status, _, body = raw(bridge, "GET", "/v1/chat/completions", None, auth)
    assert status == 405 and body["error"]["type"] == "invalid_request_error"  # the caller's mistake, as every 4xx
    assert body["error"]["code"] == "method_not_allowed"
    status, _, body = raw(bridge, "GET", "/v1/messages", None, auth)
    assert status == 405 and body["error"]["type"] == "invalid_request_error"


def test_a_backend_that_is_down_is_503_naming_its_url(tmp_path):
    _, account, _ = start_bridge(tmp_path)
    backend = Backend("ws://127.0.0.1:9/ws", account, keepalive_seconds=0)
    with serve(make_app(backend, KEY), handler_cancellation=True) as url:
        with pytest.raises(openai.InternalServerError) as raised:
            openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0).models.list()
    assert raised.value.status_code == 503 and "ws://127.0.0.1:9/ws" in raised.value.message


def test_a_fault_of_the_bridge_itself_is_a_500_in_each_apis_shape(tmp_path):
    """What goes wrong inside the bridge reaches the SDKs as their InternalServerError, not as aiohttp's text page."""
    _, account, _ = start_bridge(tmp_path)

    class Faulty(Backend):
        async def request(self, action: str, *, timeout: float | None = None, **params: Any) -> dict[str, Any]:
            raise RuntimeError("a bug")

    with serve(make_app(Faulty("ws://127.0.0.1:9/ws", account, keepalive_seconds=0), KEY)) as url:
        with pytest.raises(openai.InternalServerError) as raised_openai:
            openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0).models.list()
        with pytest.raises(anthropic.InternalServerError) as raised_anthropic:
            anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0).messages.count_tokens(
                model="claude-test", messages=[{"role": "user", "content": "x"}])
    assert cast(dict[str, Any], raised_openai.value.body)["type"] == "api_error"
    assert cast(dict[str, Any], raised_anthropic.value.body)["error"]["type"] == "api_error"
    assert "a bug" not in raised_openai.value.message  # internals stay in the bridge's log


def test_a_refused_refresh_token_is_401_telling_to_log_in(tmp_path):
    fake, account, _ = start_bridge(tmp_path, refusal=True)
    store = TokenStore(tmp_path / "tokens.json")
    expired = store.load(["ws"])
    assert expired is not None
    store.save(["ws"], Tokens("dev", "t1", "id1", "refresh-1", expires_at=int(time.time()) - 10,
                              issued_at=expired.issued_at))
    with serve(fake.make_app()) as backend_url:
        backend = Backend(backend_url.replace("http://", "ws://") + "/ws", account, keepalive_seconds=0)
        with serve(make_app(backend, KEY), handler_cancellation=True) as url:
            with pytest.raises(anthropic.AuthenticationError, match="llm-ide login"):
                anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0).messages.create(
                    model="claude-test", max_tokens=5, messages=[{"role": "user", "content": "x"}])


def short_lived_sign_in(tmp_path, expires_at: int) -> SignedIn:
    """dev signed in with the token t1 until `expires_at` (epoch s); each renewal gives t2, for an hour."""
    store = TokenStore(tmp_path / "tokens.json")
    store.save(["ws"], Tokens("dev", "t1", "id1", "refresh-1", expires_at=expires_at, issued_at=int(time.time())))

    def renew(tokens: Tokens, pool: UserPool) -> Tokens:
        return Tokens("dev", "t2", "id2", tokens.refresh_token, expires_at=int(time.time()) + 3600,
                      issued_at=int(time.time()))

    return SignedIn(store, ["ws"], UserPool("client", "us-east-1"), renew=renew)


def test_a_socket_whose_token_expires_is_replaced_by_the_keep_alive_and_its_stream_resumed(tmp_path):
    fake = ProtocolBackend(tokens={"t1", "t2"})
    account = short_lived_sign_in(tmp_path, int(time.time()) + 8)  # 8 s tokens
    with serve(fake.make_app()) as backend_url:
        fake.base_url = backend_url
        backend = Backend(backend_url.replace("http://", "ws://") + "/ws", account, keepalive_seconds=0.5)
        with serve(make_app(backend, KEY), handler_cancellation=True) as url:
            prompt = "[[slow:200]] " + "0123456789" * 20  # 30 deltas, about 6 s
            chunks = list(openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0).chat.completions.create(
                model="claude-test", stream=True, messages=[{"role": "user", "content": prompt}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == prompt
    assert fake.handshakes == ["t1", "t2"]  # replaced before the token ran out, not after a refusal
    assert [f["action"] for f in fake.received if f["action"] in ("chat.resume", "ping")][:1] == ["ping"]
    assert len([f for f in fake.received if f["action"] == "chat.resume"]) == 1


def test_an_ack_on_its_way_when_the_socket_is_replaced_still_reaches_its_chat(tmp_path):
    """A chat.send went out on a socket that is replaced (its token about to run out) before the ack came back.
    The ack used to reach a closed socket: the caller got a 504 once its wait ran out, while the chat ran on,
    charged and unseen. Now a replaced socket's pending answers are awaited (up to 2 s, while its token holds)
    before it closes, and the chat moves to the new socket."""
    fake = ProtocolBackend(tokens={"t1", "t2"})
    now = time.time()
    account = short_lived_sign_in(tmp_path, int(now) + 7)
    with serve(fake.make_app()) as backend_url:
        fake.base_url = backend_url
        backend = Backend(backend_url.replace("http://", "ws://") + "/ws", account, keepalive_seconds=0,
                          answer_timeout=5)
        with serve(make_app(backend, KEY), handler_cancellation=True) as url:
            bridge = Bridge(url, fake, [])
            bridge.openai().models.list()  # the socket of t1, replaced from int(now) + 2 on (5 s before it ends)
            connection = _streamed_chat(bridge, "[[ack:3000]] [[slow:100]] " + "0123456789" * 8)
            bridge.wait_for(lambda: bridge.sent("chat.send"))
            while time.time() < int(now) + 2.1:  # past the replacement's margin; the ack comes ~1 s later
                time.sleep(0.05)
            bridge.openai().models.list()  # replaces the socket while the ack is on its way
            response = connection.getresponse()
            body = response.read().decode()
    assert response.status == 200, body
    chunks = [json.loads(line.removeprefix("data: ")) for line in body.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "[[ack:3000]] [[slow:100]] " + "0123456789" * 8
    assert fake.handshakes == ["t1", "t2"] and len(bridge.sent("chat.resume")) == 1
