"""The event-stream encoder, the Bedrock emulator read by boto3 itself, and the Bedrock error translation."""
from __future__ import annotations

import hashlib
import json
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import EventStreamError, ReadTimeoutError
from botocore.stub import Stubber

from chalicelib.chat.bedrock import (
    BedrockChat,
    BedrockTokenCounter,
    MessageStop,
    Metadata,
    ModelRequest,
    TextDelta,
    translate_error,
)
from chalicelib.errors import UpstreamError, UpstreamThrottled
from devserver import eventstream
from devserver.bedrock import BedrockEmulator
from devserver.tokenizer import count_tokens, split_tokens
from tests.fakes import ScriptedBedrock, ScriptedStream
from tests.servers import serve

# --- the encoder, decoded by botocore ------------------------------------------------


def test_event_messages_round_trip_through_botocores_decoder():
    data = eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo 😀"}})
    data += eventstream.exception("throttlingException", "slow down")
    buffer = EventStreamBuffer()
    buffer.add_data(data[:7])  # arbitrary chunk boundaries, as the network delivers them
    buffer.add_data(data[7:])
    first, second = list(buffer)
    assert first.headers == {":event-type": "contentBlockDelta", ":content-type": "application/json",
                             ":message-type": "event"}
    assert first.payload.decode() == '{"contentBlockIndex":0,"delta":{"text":"héllo 😀"}}'
    assert first.prelude.total_length == len(first.payload) + first.prelude.headers_length + 16
    assert second.headers[":message-type"] == "exception"
    assert second.headers[":exception-type"] == "throttlingException"
    assert second.to_response_dict()["status_code"] == 400


@pytest.mark.parametrize("offset", [5, -2])  # inside the prelude, inside the message CRC
def test_a_corrupted_message_fails_its_checksum(offset):
    data = bytearray(eventstream.event("messageStop", {"stopReason": "end_turn"}))
    data[offset] ^= 0xFF
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(data))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


@pytest.mark.parametrize("text, tokens", [
    ("The quick brown fox.", ["The", " quick", " brown", " fox", "."]),  # short words: a token each
    ("internationalization", ["inte", "rnat", "iona", "liza", "tion"]),  # a long word: 4 characters a token
    ("a,b;c!", ["a", ",", "b", ";", "c", "!"]),  # punctuation: a token each
    ("😀😀é漢x", ["😀", "😀", "é", "漢", "x"]),  # every non-ASCII character a token
    ("  fox\n\n", ["  fox\n\n"]),  # whitespace rides on a neighbour
    ("   ", ["   "]),
])
def test_the_emulators_tokens_follow_a_tokenizers_rule_and_join_to_the_text(text, tokens):
    assert split_tokens(text) == tokens and "".join(tokens) == text
    assert count_tokens(text) <= len(text.encode())  # every token holds a byte at least: the app's bound


def test_token_dense_text_takes_more_tokens_than_four_bytes_each():
    dense = "x = {'a': [1, 2], 'b': (3,)}; # 漢字 😀!?"
    assert count_tokens(dense) > 2 * ((len(dense.encode()) + 3) // 4)


# --- the emulator over HTTP, read by boto3 -------------------------------------------


@pytest.fixture(scope="module")
def emulator_url():
    with serve(BedrockEmulator().make_app()) as url:
        yield url


def runtime_client(url):
    return boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local",
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=5, connect_timeout=2))


class Chat:
    """A BedrockChat whose backoff sleeps are recorded, not slept."""

    def __init__(self, client, max_attempts=3):
        self.sleeps: list[float] = []
        self.chat = BedrockChat(client, max_attempts=max_attempts, sleep=self.sleeps.append, jitter=lambda: 0.5)

    def events(self, prompt, **kwargs):
        request = ModelRequest(model_id="any.model-v1:0", prompt=prompt, max_tokens=kwargs.pop("max_tokens", 500),
                               **kwargs)
        got = []
        try:
            for event in self.chat.stream(request):
                got.append(event)
        except Exception as error:
            return got, error
        return got, None


def test_converse_stream_is_read_by_boto3_and_translated(emulator_url):
    chat = Chat(runtime_client(emulator_url))
    events, error = chat.events("Grüße 😀 from the echo model", system="be brief")
    assert error is None and chat.sleeps == []
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Grüße 😀 from the echo model"
    assert sum(isinstance(e, TextDelta) for e in events) > 3
    assert [e.stop_reason for e in events if isinstance(e, MessageStop)] == ["end_turn"]
    [metadata] = [e for e in events if isinstance(e, Metadata)]
    assert metadata.usage.input_tokens == count_tokens("Grüße 😀 from the echo model") + count_tokens("be brief")
    assert metadata.usage.output_tokens == sum(isinstance(e, TextDelta) for e in events)


def test_converse_answers_the_whole_reply(emulator_url):
    reply = runtime_client(emulator_url).converse(
        modelId="any.model-v1:0", messages=[{"role": "user", "content": [{"text": "one"}, {"text": " two"}]}],
        inferenceConfig={"maxTokens": 1})
    assert reply["output"]["message"]["content"] == [{"text": "one"}]
    assert reply["stopReason"] == "max_tokens" and reply["usage"]["outputTokens"] == 1


def test_count_tokens_answers_what_converse_charges_and_refuses_what_bedrock_refuses(emulator_url):
    client = runtime_client(emulator_url)
    prompt = "Count: a,b;c! 漢字 😀 and [[dump]]?"
    messages: list[dict] = [{"role": "user", "content": [{"text": prompt}]}]
    tools = {"tools": [{"toolSpec": {"name": "ls", "inputSchema": {"json": {"type": "object"}}}}]}
    counted = BedrockTokenCounter(client).count("anthropic.claude-sonnet-4-20250514-v1:0",
                                                {"messages": messages, "system": [{"text": "be brief"}],
                                                 "toolConfig": tools})
    charged = client.converse(modelId="anthropic.claude-sonnet-4-20250514-v1:0", messages=messages,
                              system=[{"text": "be brief"}], toolConfig=tools)["usage"]["inputTokens"]
    assert counted == charged
    # CountTokens takes a foundation model id, and only for models it counts (as Bedrock).
    for model in ("us.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"):
        with pytest.raises(UpstreamError):
            BedrockTokenCounter(client).count(model, {"messages": messages})
    calls = json.load(urllib.request.urlopen(f"{emulator_url}/_emulator/calls"))
    key = hashlib.sha256(prompt.encode()).hexdigest()
    assert [c["operation"] for c in calls if c["key"] == key] == ["CountTokens", "Converse", "CountTokens",
                                                                   "CountTokens"]


def test_throttling_on_the_call_is_retried_then_upstream_throttled(emulator_url):
    chat = Chat(runtime_client(emulator_url), max_attempts=3)
    events, error = chat.events("[[throttle]] unit")
    assert events == []
    assert isinstance(error, UpstreamThrottled) and (error.retry_after or 0) >= 1
    assert len(chat.sleeps) == 2 and chat.sleeps[0] < chat.sleeps[1]  # jittered, growing backoff


@pytest.mark.parametrize("directive", ["[[throttle-once]]", "[[stream-throttle-once]]"])
def test_one_throttle_on_the_call_or_in_the_stream_is_retried(emulator_url, directive):
    chat = Chat(runtime_client(emulator_url))
    prompt = f"{directive} unit {directive}"
    events, error = chat.events(prompt)
    assert error is None and len(chat.sleeps) == 1
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == prompt


def test_throttling_inside_the_stream_is_upstream_throttled_after_retries(emulator_url):
    chat = Chat(runtime_client(emulator_url), max_attempts=2)
    events, error = chat.events("[[stream-throttle]] unit")
    assert isinstance(error, UpstreamThrottled) and len(chat.sleeps) == 1
    assert not any(isinstance(e, TextDelta) for e in events)


def test_an_error_after_text_is_not_retried(emulator_url):
    chat = Chat(runtime_client(emulator_url))
    events, error = chat.events("[[midstream-error]] " + "words " * 20)
    assert isinstance(error, UpstreamError) and error.code == "UPSTREAM_ERROR"
    assert chat.sleeps == [] and any(isinstance(e, TextDelta) for e in events)


@pytest.mark.parametrize("code,status,message", [
    ("AccessDeniedException", 403, "the model is not available"),
    ("ValidationException", 400, "the model rejected the request"),
    ("ModelTimeoutException", 408, "the model did not answer in time"),
])
def test_failures_on_the_call_become_upstream_error_without_retry(code, status, message):
    client = runtime_client("http://127.0.0.1:9")
    chat = Chat(client)
    with Stubber(client) as stubber:
        stubber.add_client_error("converse_stream", service_error_code=code, http_status_code=status)
        events, error = chat.events("hi")
    assert events == [] and chat.sleeps == []
    assert isinstance(error, UpstreamError) and error.message == message


def test_transient_failures_are_retried_and_throttling_is_throttled():
    client = runtime_client("http://127.0.0.1:9")
    chat = Chat(client, max_attempts=3)
    with Stubber(client) as stubber:
        stubber.add_client_error("converse_stream", service_error_code="ServiceUnavailableException",
                                 http_status_code=503)
        stubber.add_client_error("converse_stream", service_error_code="ThrottlingException", http_status_code=429)
        stubber.add_client_error("converse_stream", service_error_code="ThrottlingException", http_status_code=429)
        _events, error = chat.events("hi")
        stubber.assert_no_pending_responses()
    assert isinstance(error, UpstreamThrottled) and len(chat.sleeps) == 2


def test_a_read_timeout_is_an_upstream_error():
    error = translate_error(ReadTimeoutError(endpoint_url="http://bedrock"))
    assert isinstance(error, UpstreamError) and "in time" in error.message


def test_a_model_that_stalls_mid_stream_is_an_upstream_error_not_a_crash(emulator_url):
    # botocore reads the streaming body through urllib3, whose read timeout is not a botocore error.
    client = boto3.client("bedrock-runtime", endpoint_url=emulator_url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local",
                          config=Config(retries={"total_max_attempts": 1}, read_timeout=0.5, connect_timeout=2))
    chat = Chat(client)
    _events, error = chat.events("[[slow:1500]] stalls between words")
    assert isinstance(error, UpstreamError) and error.message == "the model did not answer in time"
    assert chat.sleeps == []  # not retried: a slow model would only make the user wait twice as long


def test_a_stream_that_broke_after_the_model_began_a_tool_call_is_not_retried():
    """The tool call's first pieces were generated (and billed), though none was handed out: a retry would bill
    the output again, uncharged (the reservation covers one call). The old code retried: nothing handed out."""
    throttled = EventStreamError({"Error": {"Code": "throttlingException", "Message": "slow down"}}, "ConverseStream")
    begun = [{"messageStart": {"role": "assistant"}},
             {"contentBlockStart": {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}},
             {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"pa'}}}}]
    whole = [{"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "retried"}}},
             {"messageStop": {"stopReason": "end_turn"}}]
    client = ScriptedBedrock(ScriptedStream(begun, throttled), ScriptedStream(whole))
    chat = Chat(client)
    events, error = chat.events("call f")
    assert isinstance(error, UpstreamThrottled) and events == []
    assert client.calls == 1 and chat.sleeps == []
    # An empty text delta (nothing generated) still leaves the call retryable.
    client = ScriptedBedrock(ScriptedStream([{"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": ""}}}],
                                      throttled), ScriptedStream(whole))
    chat = Chat(client)
    events, error = chat.events("hi")
    assert error is None and client.calls == 2 and [e.text for e in events if isinstance(e, TextDelta)] == ["retried"]
