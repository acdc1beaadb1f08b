"""chat.send with messages, tools and images, and chat.upload, through the Chalice message handler
against moto: what is admitted and reserved, what is refused before anything is, and what the worker
reads from an upload."""
from __future__ import annotations

import base64
import io
import json
import time
import urllib.request
import uuid

import pytest
from PIL import Image

from chalicelib.chat import converse
from chalicelib.chat.bedrock import MessageStop, Metadata
from chalicelib.chat.input_bound import IMAGE_TOKENS, TOOL_PROMPT, input_bound
from chalicelib.chat.job import ChatJob
from chalicelib.chat.requests import Usage
from chalicelib.chat.worker import ack_frame
from chalicelib.config import get_settings
from chalicelib.errors import NotFound
from chalicelib.root import Root
from tests.handler_calls import connect, login, message

READ_FILE = {"name": "read_file", "description": "Read a file", "inputSchema": {"type": "object"}}


def _b64(value: bytes) -> str:
    """bytes as boto3 sends them in a JSON body (an image's)."""
    return base64.b64encode(value).decode()


def png(width=40, height=30) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "olive").save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


TOOL_ROUND = [
    {"role": "user", "content": [{"type": "image", "format": "png", "data": png()},
                                 {"type": "text", "text": "what is in a.py?"}]},
    {"role": "assistant", "content": [{"type": "toolUse", "toolUseId": "tooluse_1", "name": "read_file",
                                       "input": {"path": "a.py"}}]},
    {"role": "user", "content": [{"type": "toolResult", "toolUseId": "tooluse_1",
                                  "content": [{"type": "text", "text": "print('hi')"}]},
                                 {"type": "cachePoint"}, {"type": "text", "text": "and now?"}]},
]


def in_an_hour_of_its_own(monkeypatch, **env: str) -> None:
    """The app's settings with `env`, and its clock six hours back: the reservations these chats leave
    open (no worker runs to settle them) and their requests stay out of other tests' windows."""
    from chalicelib import process
    from chalicelib.root import get_root

    for name, value in {"TOKEN_BUDGET_PER_HOUR": "100000000", "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000",
                        **env}.items():
        monkeypatch.setenv(name, value)
    process.reset()
    now = (int(time.time()) // 3600 - 6) * 3600 + 1.0
    process.install(get_root, Root(get_settings(), clock=lambda: now))


@pytest.fixture
def conn(app_env, boto, sender, monkeypatch):
    in_an_hour_of_its_own(monkeypatch)  # and an agent's turn is tens of thousands of tokens
    connect("conn-agent=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    connect("conn-other=", headers={"Authorization": f"Bearer {login(boto, app_env, 1)}"})
    return "conn-agent="


def send(conn, sender, started=None, **params):
    """The answer to a frame: the handler's, or for an admitted chat (the handler answers nothing, its worker
    posts the ack first) the ack the worker posts, built from the job the handler started it with."""
    before, invoked = len(sender.frames.get(conn, [])), len(started or ())
    message(conn, json.dumps({"action": params.pop("action", "chat.send"), "id": params.pop("id", "a1"), **params}))
    if len(sender.frames.get(conn, [])) > before:
        return sender.frames[conn][-1]
    assert started is not None and len(started) == invoked + 1, "neither an answer nor a worker started"
    return ack_frame(ChatJob.from_event(started[-1][1]))


def tokens_remaining(conn, sender) -> int:
    return send(conn, sender, action="usage.get", id="u")["data"]["limits"]["tokens"]["remaining"]


def test_a_conversation_reserves_everything_the_model_reads(conn, sender, started):
    before = tokens_remaining(conn, sender)  # other tests' chats may hold reservations in this hour
    ack = send(conn, sender, started, messages=TOOL_ROUND, tools=[READ_FILE], system="be brief", maxTokens=300)
    assert ack["type"] == "ack" and ack["maxTokens"] == 300
    ((_, event),) = started
    job = ChatJob.from_event(event)
    assert event["chat"]["messages"] == TOOL_ROUND and event["chat"]["tools"] == [READ_FILE]
    # The reservation: the system prompt, the tool's schema and the tool-use prompt, every block (the image
    # by its pixels), and maxTokens.
    tool_config, conversation = job.chat.tool_config, job.chat.conversation
    assert tool_config is not None and conversation is not None
    built = converse.build_converse_input(system="be brief", history=[], documents=[],
                                          tool_config=tool_config.converse(),
                                          conversation=conversation.converse_messages(tools_offered=True))
    # Claude 3 Haiku, the default model, is one Bedrock cannot count: the reservation is the input's bound.
    assert job.plan.input_tokens == input_bound(built) > TOOL_PROMPT + IMAGE_TOKENS and not job.plan.exact
    assert before - ack["limits"]["tokens"]["remaining"] == job.plan.input_tokens + 300


def test_a_conversation_on_a_model_bedrock_counts_reserves_its_count(conn, sender, started, bedrock_emulator):
    ack = send(conn, sender, started, messages=TOOL_ROUND, tools=[READ_FILE], system="be brief", maxTokens=300,
               model="claude-3-5-sonnet-20240620")
    assert ack["type"] == "ack", ack
    job = ChatJob.from_event(started[0][1])
    tool_config, conversation = job.chat.tool_config, job.chat.conversation
    assert tool_config is not None and conversation is not None
    built = converse.build_converse_input(system="be brief", history=[], documents=[],
                                          tool_config=tool_config.converse(),
                                          conversation=conversation.converse_messages(tools_offered=True))
    emulator, _ = bedrock_emulator
    assert job.plan.exact and job.plan.input_tokens == emulator.count("anthropic.claude-3-5-sonnet-20240620-v1:0",
                                                                      json.loads(json.dumps(built, default=_b64)))
    assert emulator.calls[-1].operation == "CountTokens"
    assert emulator.calls[-1].model_id == "anthropic.claude-3-5-sonnet-20240620-v1:0"  # the foundation model id


def long_image() -> str:
    out = io.BytesIO()
    Image.new("L", (8001, 1)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


BAD = [
    ({"messages": TOOL_ROUND, "prompt": "hi"}, "BAD_REQUEST", "'prompt' and 'messages'"),
    ({"messages": TOOL_ROUND, "sessionId": "a" * 32, "tools": [READ_FILE]}, "BAD_REQUEST", "'sessionId'"),
    ({"prompt": "hi", "sessionId": "a" * 32, "tools": [READ_FILE]}, "BAD_REQUEST", "'tools' cannot go"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "BAD_REQUEST", "'messages[0].content[0].text'"),
    ({"messages": [TOOL_ROUND[0], TOOL_ROUND[1], {"role": "user", "content": [
        {"type": "toolResult", "toolUseId": "tooluse_2", "content": []}]}], "tools": [READ_FILE]},
     "BAD_REQUEST", "'messages[2].content[0].toolUseId': 'tooluse_2' answers no toolUse"),
    ({"messages": [TOOL_ROUND[0], TOOL_ROUND[1], {"role": "user", "content": "forgot the result"}],
      "tools": [READ_FILE]}, "BAD_REQUEST", "'messages[1].content[0].toolUseId'"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "format": "png", "data": "a@b"}]}]},
     "BAD_REQUEST", "'messages[0].content[0].data' is not valid base64"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "format": "gif", "data": png()}]}]},
     "BAD_REQUEST", "is not a gif image"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "format": "png", "data": long_image()}]}]},
     "BAD_REQUEST", "8001x1 px"),
    ({"prompt": "hi", "tools": [{"name": "x", "inputSchema": "object"}]}, "BAD_REQUEST", "'tools[0].inputSchema'"),
    ({"prompt": "hi", "tools": [{"name": f"t{n}", "inputSchema": {"type": "object"}} for n in range(129)]},
     "BAD_REQUEST", "at most 128"),
    ({"prompt": "hi", "toolChoice": "any"}, "BAD_REQUEST", "'toolChoice' needs 'tools'"),
]


@pytest.mark.parametrize("params, code, words", BAD, ids=[words for _, _, words in BAD])
def test_bad_input_is_refused_before_the_ack_naming_the_field_and_reserves_nothing(conn, sender, started, params,
                                                                                   code, words):
    before = tokens_remaining(conn, sender)
    refused = send(conn, sender, **params)
    assert refused["type"] == "error" and refused["error"]["code"] == code and words in refused["error"]["message"]
    assert tokens_remaining(conn, sender) == before and started == []


def test_a_model_without_images_or_with_a_small_window_refuses_before(monkeypatch, app_env, boto, sender, started):
    models = {"small.model-v1:0": {"name": "Small", "maxOutputTokens": 100, "contextTokens": 2000, "tools": False,
                                   "images": False, "promptCache": False, "minCacheTokens": 1024,
                                   "countTokens": False, "aliases": [], "price": None}}
    in_an_hour_of_its_own(monkeypatch, ALLOWED_MODELS="small.model-v1:0", MODELS=json.dumps(models))
    connect("conn-small=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    image = {"messages": [{"role": "user", "content": [{"type": "image", "format": "png", "data": png()}]}]}
    assert "does not take images" in send("conn-small=", sender, **image)["error"]["message"]
    assert "does not take tools" in send("conn-small=", sender, prompt="hi", tools=[READ_FILE])["error"]["message"]
    too_long = send("conn-small=", sender, messages=[{"role": "user", "content": "word " * 2000}])
    assert too_long["error"]["code"] == "PAYLOAD_TOO_LARGE" and "reads at most 2000" in too_long["error"]["message"]
    # Just under the window: maxTokens is lowered so that the input and the reply fit.
    fits = send("conn-small=", sender, started, messages=[{"role": "user", "content": "word " * 1560}],
                maxTokens=100)
    assert fits["type"] == "ack" and fits["maxTokens"] == 2000 - 1950


# --- chat.upload ----------------------------------------------------------------------------


def upload(conn, sender, body: bytes | dict, *, size: int | None = None) -> str:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = send(conn, sender, action="chat.upload", id="up", size=len(data) if size is None else size)
    assert answer["type"] == "result", answer
    request = urllib.request.Request(answer["data"]["url"], data=data, method="PUT",
                                     headers=answer["data"]["headers"])
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    return answer["data"]["uploadId"]


def big_conversation(last: str) -> list[dict]:
    turns = [{"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n} " + "lorem ipsum " * 5_000}
             for n in range(8)]  # 480 KB, 120k tokens
    return [*turns, {"role": "user", "content": last}]


def test_an_upload_runs_as_if_in_the_frame_once_and_only_for_its_user(conn, sender, started):
    body = {"messages": big_conversation("the last question"), "tools": [READ_FILE]}
    upload_id = upload(conn, sender, body)
    ack = send(conn, sender, started, uploadId=upload_id, maxTokens=50, model="claude-3-5-sonnet-20240620")
    assert ack["type"] == "ack" and ack["model"] == "anthropic.claude-3-5-sonnet-20240620-v1:0", ack
    ((_, event),) = started
    # A reference, not the body: Lambda takes at most 256 KB in an asynchronous invocation.
    assert len(json.dumps(event)) < 4096
    assert event["chat"]["upload"]["uploadId"] == upload_id and event["chat"]["messages"] is None
    # Counted by Bedrock (the model's table entry says it can): about 2 tokens a "lorem ipsum ", 80k in all.
    assert event["chat"]["max_tokens"] == 50 and event["input"]["exact"] and event["input"]["inputTokens"] > 80_000
    for connection in (conn, "conn-other="):  # used, and another user's: the same answer
        again = send(connection, sender, uploadId=upload_id)
        assert again["type"] == "error" and again["error"]["code"] == "NOT_FOUND"
    assert len(started) == 1


def test_bad_uploads_are_refused_before_anything_is_reserved(conn, sender, started):
    before = tokens_remaining(conn, sender)
    too_big = send(conn, sender, action="chat.upload", size=8 * 1024 * 1024 + 1)
    assert too_big["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert send(conn, sender, action="chat.upload", size=0)["error"]["code"] == "BAD_REQUEST"
    cases = [
        (upload(conn, sender, b"{not json"), "BAD_REQUEST", "the upload is not valid JSON (Expecting property name"),
        (upload(conn, sender, '{"prompt": "café"}'.encode("latin-1")), "BAD_REQUEST", "the upload is not UTF-8 text"),
        (upload(conn, sender, '{"prompt": "hi"}'.encode("utf-16")), "BAD_REQUEST", "the upload is not UTF-8 text"),
        (upload(conn, sender, b'{"prompt": "hi", "temperature": NaN}'), "BAD_REQUEST",
         "'temperature' is NaN, which is no JSON number"),
        (upload(conn, sender, b"[1, 2]"), "BAD_REQUEST", "not a JSON object"),
        (upload(conn, sender, {"prompt": "hi", "maxTokens": 10}), "BAD_REQUEST", "'maxTokens' is both"),
        (upload(conn, sender, {"prompt": "hi", "uploadId": "x"}), "BAD_REQUEST", "'uploadId'"),
        (upload(conn, sender, {"messages": [{"role": "user", "content": " "}]}), "BAD_REQUEST",
         "'messages[0].content'"),
        (uuid.uuid4().hex, "NOT_FOUND", "no such upload"),  # never uploaded
        ("../../etc/passwd", "BAD_REQUEST", "'uploadId'"),
    ]
    for upload_id, code, words in cases:
        refused = send(conn, sender, uploadId=upload_id, maxTokens=10)
        assert refused["type"] == "error" and refused["error"]["code"] == code, (words, refused)
        assert words in refused["error"]["message"]
    assert tokens_remaining(conn, sender) == before and started == []


def test_an_upload_older_than_a_day_is_not_found(conn, sender, app_env):
    upload_id = upload(conn, sender, {"prompt": "late"})
    root = Root(get_settings(), clock=lambda: time.time() + 86400 + 5)
    connection = root.connections.get(conn)
    assert connection is not None
    sub = connection.user_sub
    with pytest.raises(NotFound, match="expired"):
        root.uploads.open(sub, {"uploadId": upload_id})


class ModelRecorder:
    """Stands in for BedrockChat: records the request, answers a short reply."""

    def __init__(self) -> None:
        self.requests: list = []

    def stream(self, request, on_throttled=None, on_opened=None):
        self.requests.append(request)
        yield MessageStop("end_turn")
        yield Metadata(Usage(10, 0))


def worker(monkeypatch, sender):
    recorder = ModelRecorder()
    monkeypatch.setattr(Root, "bedrock", recorder)
    root = Root(get_settings())
    return root.chat_worker, recorder, root


def test_the_worker_reads_the_upload_runs_it_and_deletes_it(monkeypatch, conn, sender, started, boto):
    conversation = big_conversation("the last question")
    upload_id = upload(conn, sender, {"messages": conversation})
    assert send(conn, sender, started, uploadId=upload_id, system="be brief")["type"] == "ack"
    chat_worker, recorder, root = worker(monkeypatch, sender)
    job = ChatJob.from_event(started[0][1])
    outcome = chat_worker.run(job)
    assert outcome.status == "done" and sender.frames[conn][-1]["type"] == "done"
    (request,) = recorder.requests
    arguments = request.converse_arguments()
    assert arguments["system"] == [{"text": "be brief"}]  # from the frame, with the body's conversation
    assert [m["content"][0]["text"] for m in arguments["messages"]] == [m["content"] for m in conversation]
    with pytest.raises(Exception) as gone:  # used once: deleted
        boto("s3").head_object(Bucket=get_settings().chat_upload_bucket, Key=root.uploads.key(job.user_sub, upload_id))
    assert "404" in str(gone.value)


def test_a_body_written_again_after_its_check_is_refused_by_the_worker(monkeypatch, conn, sender, started, boto):
    upload_id = upload(conn, sender, {"prompt": "checked"})
    assert send(conn, sender, started, uploadId=upload_id)["type"] == "ack"
    chat_worker, recorder, root = worker(monkeypatch, sender)
    job = ChatJob.from_event(started[0][1])
    boto("s3").put_object(Bucket=get_settings().chat_upload_bucket, Key=root.uploads.key(job.user_sub, upload_id),
                          Body=b'{"prompt": "swapped"}')
    outcome = chat_worker.run(job)
    assert outcome.error is not None and outcome.error.code == "BAD_REQUEST" and recorder.requests == []
    assert sender.frames[conn][-1]["error"]["message"] == "the object changed since it was checked"
