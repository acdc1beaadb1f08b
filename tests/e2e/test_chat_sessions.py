"""chat.send with sessions and context files, end to end: what the model saw (the echo model's
[[dump]]), what the session keeps, and that another user reaches none of it."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from devserver.launcher import ROOT
from tests.e2e.conftest import LLM_IDE
from tests.e2e.test_chat import chat, text_of


def ok(client, action, **params):
    frame = client.request(action, **params)
    assert frame["type"] == "result", frame
    return frame["data"]


def refused(client, **params):
    """The one frame a refused chat.send gets: an error, before any ack."""
    chat_id = client.send("chat.send", **params)
    frame = client.next_frame(chat_id, timeout=15)
    assert frame["type"] == "error", frame
    with pytest.raises(TimeoutError):  # nothing else comes for it: no ack, no worker
        client.next_frame(chat_id, timeout=0.3)
    return frame["error"]["code"]


def seen_by_model(deltas):
    """The request the echo model received, from a [[dump]] reply."""
    return json.loads(text_of(deltas))


def new_session(client, title="chat"):
    return ok(client, "session.create", title=title)["session"]["sessionId"]


def test_a_session_remembers_the_conversation_and_the_model_sees_it(stack):
    with stack.connect() as client:
        session_id = new_session(client)
        ack, deltas, done = chat(client, "My name is Ada.", sessionId=session_id)
        assert ack["sessionId"] == session_id and done["type"] == "done"
        first_reply = text_of(deltas)
        ack, deltas, done = chat(client, "[[dump]] What is my name?", sessionId=session_id, maxTokens=4000)
        assert done["stopReason"] == "end_turn"
        seen = seen_by_model(deltas)
        assert seen["messages"] == [{"role": "user", "text": "My name is Ada."},
                                    {"role": "assistant", "text": first_reply},
                                    {"role": "user", "text": "[[dump]] What is my name?"}]
        messages = ok(client, "session.get", sessionId=session_id)["messages"]
        assert [(m["role"], m["content"]) for m in messages] == [
            ("user", "My name is Ada."), ("assistant", first_reply),
            ("user", "[[dump]] What is my name?"), ("assistant", text_of(deltas))]
        assert {m["requestId"] for m in messages[2:]} == {ack["requestId"]}
        assert not any(m.get("cancelled") for m in messages)
        # A chat without the session id is stateless: the model sees the prompt alone.
        _, deltas, _ = chat(client, "[[dump]] alone", maxTokens=4000)
        assert seen_by_model(deltas)["messages"] == [{"role": "user", "text": "[[dump]] alone"}]


def test_a_cancelled_reply_is_kept_marked_cancelled(stack):
    with stack.connect() as client:
        session_id = new_session(client)
        prompt = "[[slow:100]] " + "a long answer " * 20
        chat_id = client.send("chat.send", prompt=prompt, sessionId=session_id)
        frames = [client.next_frame(chat_id, timeout=15), client.next_frame(chat_id, timeout=15)]
        assert [f["type"] for f in frames] == ["ack", "delta"]
        assert ok(client, "chat.cancel", requestId=chat_id) == {"cancelled": True}
        while frames[-1]["type"] == "delta":
            frames.append(client.next_frame(chat_id, timeout=15))
        assert frames[-1]["type"] == "done" and frames[-1]["stopReason"] == "cancelled"
        served = text_of(frames[1:-1])
        assert served and len(served) < len(prompt)
        messages = ok(client, "session.get", sessionId=session_id)["messages"]
        assert [(m["role"], m["content"], m.get("cancelled", False)) for m in messages] == [
            ("user", prompt, False), ("assistant", served, True)]
        # The next turn's model sees the partial reply, as the user did.
        _, deltas, _ = chat(client, "[[dump]] go on", sessionId=session_id, maxTokens=4000)
        assert seen_by_model(deltas)["messages"][:2] == [{"role": "user", "text": prompt},
                                                         {"role": "assistant", "text": served}]


def test_context_files_reach_the_model_clearly_delimited(stack):
    with stack.connect() as client:
        name = f"ctx-{uuid.uuid4().hex[:8]}"
        ok(client, "context.put", path=f"{name}/app.py", content="def main():\n    return 42\n")
        ok(client, "context.put", path=f"{name}/notes.md", content="user-wide notes")
        session_id = new_session(client)
        ok(client, "context.put", path=f"{name}/notes.md", content="session notes win", sessionId=session_id)
        _, deltas, done = chat(client, "[[dump]] explain", sessionId=session_id, maxTokens=4000,
                               contextPaths=[f"{name}/app.py", f"{name}/notes.md", f"{name}/app.py"])
        assert done["type"] == "done"
        [final] = seen_by_model(deltas)["messages"]
        text = final["text"]
        assert text.endswith("[[dump]] explain")
        app = text.index(f"===== BEGIN CONTEXT FILE path='{name}/app.py'")
        app_end = text.index(f"===== END CONTEXT FILE path='{name}/app.py'")
        assert "def main():\n    return 42\n" in text[app:app_end]
        assert text.count("BEGIN CONTEXT FILE") == 2  # a path given twice is sent once
        assert "session notes win" in text and "user-wide notes" not in text


def test_context_paths_are_checked_before_the_ack(stack):
    with stack.connect() as client:
        name = f"ctx-{uuid.uuid4().hex[:8]}"
        assert refused(client, prompt="hi", contextPaths=[f"{name}/missing.txt"]) == "NOT_FOUND"
        # CONTEXT_TOKEN_LIMIT is 8000 tokens (about 32,000 bytes): two 20 KB files are past it.
        for part in ("a", "b"):
            ok(client, "context.put", path=f"{name}/{part}.txt", content=part * 20_000)
        assert refused(client, prompt="hi", contextPaths=[f"{name}/a.txt", f"{name}/b.txt"]) == "PAYLOAD_TOO_LARGE"
        _ack, _, done = chat(client, "one fits", contextPaths=[f"{name}/a.txt"])
        assert done["type"] == "done"


def test_another_user_can_neither_continue_a_session_nor_read_context_nor_cancel(stack):
    with stack.connect("dev") as dev, stack.connect("dev2") as dev2:
        session_id = new_session(dev, "dev's")
        name = f"secret-{uuid.uuid4().hex[:8]}.txt"
        ok(dev, "context.put", path=name, content="dev's secret")
        ok(dev, "context.put", path="session-" + name, content="dev's session secret", sessionId=session_id)
        assert refused(dev2, prompt="[[dump]] hi", sessionId=session_id) == "NOT_FOUND"
        # A context path resolves in the caller's own space, where dev's files are not.
        assert refused(dev2, prompt="[[dump]] hi", contextPaths=[name]) == "NOT_FOUND"
        assert refused(dev2, prompt="[[dump]] hi", contextPaths=["session-" + name]) == "NOT_FOUND"
        assert refused(dev2, prompt="hi", sessionId=session_id, contextPaths=[name]) == "NOT_FOUND"

        prompt = "[[slow:40]] dev's long reply " * 3
        chat_id = dev.send("chat.send", prompt=prompt, sessionId=session_id)
        ack = dev.next_frame(chat_id, timeout=15)
        assert ack["type"] == "ack"
        for name_used in (chat_id, ack["requestId"]):
            frame = dev2.request("chat.cancel", requestId=name_used)
            assert frame["type"] == "error" and frame["error"]["code"] == "NOT_FOUND"
        frames: list[dict] = []
        while not frames or frames[-1]["type"] == "delta":
            frames.append(dev.next_frame(chat_id, timeout=15))
        assert frames[-1]["type"] == "done" and frames[-1]["stopReason"] == "end_turn"
        assert text_of(frames[:-1]) == prompt
        # dev2's attempts left nothing in dev's session but dev's own exchange.
        messages = ok(dev, "session.get", sessionId=session_id)["messages"]
        assert [(m["role"], m["content"]) for m in messages] == [("user", prompt), ("assistant", prompt)]


def test_llm_ide_chat_continues_a_session_with_context(stack, tmp_path):
    env = {**os.environ, "LLM_IDE_ENDPOINTS": str(stack.endpoints_path), "LLM_IDE_HOME": str(tmp_path)}
    run = lambda *args: subprocess.run([LLM_IDE, *args], cwd=ROOT, env=env,
                                       capture_output=True, text=True, timeout=60, check=False)
    assert run("login", "--username", "dev").returncode == 0
    with stack.connect() as client:
        session_id = new_session(client, "from the command line")
        path = f"cli-{uuid.uuid4().hex[:8]}.txt"
        ok(client, "context.put", path=path, content="the attached file")
    result = run("chat", "[[dump]] with both", "--session", session_id, "--context", path, "--max-tokens", "2000")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.rstrip("\n").rsplit("\n", 1)[0])
    assert "the attached file" in seen["messages"][-1]["text"]
    with stack.connect() as client:
        assert len(ok(client, "session.get", sessionId=session_id)["messages"]) == 2


def test_a_blank_cancelled_reply_never_reaches_the_model(stack):
    """The session that poisoned itself: a reply of blank space, cancelled, then every later chat
    would send Bedrock a blank assistant turn (which Bedrock, and the emulator, refuse). The blank is
    ideographic spaces: the emulator's tokenizer makes each a token of its own (an ASCII space rides
    on the token after it), so the first delta is blank."""
    with stack.connect() as client:
        session_id = new_session(client)
        chat_id = client.send("chat.send", prompt="\u3000\u3000[[slow:1500]]", sessionId=session_id)
        ack, first = client.next_frame(chat_id, timeout=15), client.next_frame(chat_id, timeout=15)
        assert ack["type"] == "ack" and first == {"type": "delta", "id": chat_id, "seq": 0, "text": "\u3000"}
        assert ok(client, "chat.cancel", requestId=chat_id) == {"cancelled": True}
        frames = list(client.frames(chat_id, timeout=15))
        assert frames[-1]["type"] == "done" and frames[-1]["stopReason"] == "cancelled"
        messages = ok(client, "session.get", sessionId=session_id)["messages"]
        assert messages[-1]["role"] == "assistant" and messages[-1]["content"].startswith("\u3000")
        assert not messages[-1]["content"].strip()
        ack, deltas, done = chat(client, "[[dump]] still there?", sessionId=session_id, maxTokens=4000)
        assert done["type"] == "done", done
        seen = seen_by_model(deltas)["messages"]
        assert all(m["text"].strip() for m in seen)
        assert seen[-1] == {"role": "user", "text": "[[dump]] still there?"}


def test_the_emulator_refuses_a_blank_text_block_as_bedrock_does(stack):
    import boto3
    from botocore.exceptions import ClientError

    bedrock = boto3.client("bedrock-runtime", endpoint_url=stack.bedrock_url, region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local")
    with pytest.raises(ClientError) as refused:
        bedrock.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0",
                         messages=[{"role": "user", "content": [{"text": "hi"}]},
                                   {"role": "assistant", "content": [{"text": "  "}]},
                                   {"role": "user", "content": [{"text": "again"}]}])
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "messages.1.content.0 is blank" in refused.value.response["Error"]["Message"]
