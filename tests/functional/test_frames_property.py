"""Generated frames at the `$default` handler: however odd, each is answered, and never with INTERNAL.

Random JSON (deep nesting, lone surrogates, control characters, NaN, huge numbers) in place of
every parameter of every action, and random documents in place of whole frames.
"""
from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.dispatch.table import TABLE
from tests.handler_calls import connect, login, message

# Every parameter each action reads (docs/PROTOCOL.md), so each one is tried with every type.
PARAMETERS: dict[str, tuple[str, ...]] = {
    "chat.send": ("prompt", "messages", "sessionId", "model", "system", "maxTokens", "temperature", "contextPaths",
                  "tools", "toolChoice", "uploadId"),
    "chat.countTokens": ("prompt", "messages", "sessionId", "model", "system", "maxTokens", "temperature",
                         "contextPaths", "tools", "toolChoice", "uploadId"),
    "chat.cancel": ("requestId",),
    "chat.resume": ("requestId", "afterSeq"),
    "chat.upload": ("size",),
    "session.create": ("title",),
    "session.list": ("cursor", "limit"),
    "session.get": ("sessionId", "cursor", "limit"),
    "session.delete": ("sessionId",),
    "session.update": ("sessionId", "title"),
    "context.put": ("path", "content", "sessionId"),
    "context.uploadUrl": ("path", "size", "sessionId", "contentType"),
    "context.list": ("prefix", "sessionId", "cursor", "limit"),
    "context.get": ("path", "sessionId"),
    "context.delete": ("path", "sessionId"),
    "github.repos": (),
    "github.tree": ("repo", "ref", "path"),
    "github.file": ("repo", "path", "ref"),
    "github.pr": ("repo", "base", "branch", "title", "body", "files"),
    "usage.get": (),
    "models.list": (),
    "ping": (),
}

any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())  # surrogates too
texts = st.text(any_char, max_size=40) | st.sampled_from(["", "   ", "\ud800", "a\x00b", "../x", "a" * 300])
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True) | texts)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(texts, inner, max_size=4), max_leaves=12)


def deep(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


values = documents | st.integers(min_value=60, max_value=200).map(deep)

# Values an action accepts, so that generated frames also get past the first check and reach the
# deeper ones (and the stores); mixed with anything at all.
hexes = st.text("0123456789abcdef", min_size=32, max_size=32)
paths = st.sampled_from(["a.txt", "src/app.py", "dir/sub/file.md", "x"]) | texts
PLAUSIBLE = {
    "prompt": st.sampled_from(["hello", "[[dump]] hi", "ünïcødé 漢字"]) | texts,
    "system": st.sampled_from(["be brief"]) | texts,
    "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]) | texts,
                                                "content": texts | st.lists(documents, max_size=3)}), max_size=3),
    "tools": st.lists(st.fixed_dictionaries({"name": texts, "description": texts,
                                             "inputSchema": documents}), max_size=2),
    "toolChoice": st.sampled_from(["auto", "any", {"name": "t"}]) | documents,
    "sessionId": hexes, "requestId": hexes | texts, "uploadId": hexes | texts, "afterSeq": st.integers(-3, 10 ** 10),
    "model": st.sampled_from(["anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku-20240307", "gpt-4"]),
    "maxTokens": st.integers(-5, 10 ** 9), "temperature": st.floats(-1, 2),
    "contextPaths": st.lists(paths, max_size=3), "title": texts, "cursor": texts, "limit": st.integers(-5, 2000),
    "path": paths, "content": texts, "size": st.integers(-5, 2 ** 60), "contentType": texts, "prefix": paths,
    "repo": st.sampled_from(["octo-org/hello-world", "a/b", "bad"]) | texts, "ref": texts, "base": texts,
    "branch": texts, "body": texts,
    "files": st.lists(st.fixed_dictionaries({"path": paths, "content": texts}), max_size=3),
}


def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy, *, in_ten: int = 8) -> st.SearchStrategy:
    """`usual` in_ten times out of ten, else `odd`."""
    return st.integers(0, 9).flatmap(lambda n: usual if n < in_ten else odd)


@st.composite
def frames(draw) -> str:
    if draw(st.integers(0, 9)) == 0:  # a whole frame that is not what the protocol asks for
        return json.dumps(draw(values))
    action = draw(mostly(st.sampled_from(sorted(PARAMETERS)), texts, in_ten=9))
    names = PARAMETERS.get(action, ()) if isinstance(action, str) else ()
    params = draw(st.fixed_dictionaries({}, optional={name: mostly(PLAUSIBLE[name], values) for name in names}))
    request_id = draw(mostly(st.sampled_from(["f1", "f.2:x-y"]), st.sampled_from(["x" * 65, ""]) | texts, in_ten=9))
    frame = {"action": action, "id": request_id, **params}
    return json.dumps(frame)


def test_the_generator_covers_every_action_and_parameter():
    assert set(PARAMETERS) == set(TABLE)
    assert {name for names in PARAMETERS.values() for name in names} == set(PLAUSIBLE)


@pytest.fixture
def open_connection(app_env, boto, sender, monkeypatch):
    from chalicelib import process
    from chalicelib.aws.lambda_invoke import WorkerInvoker
    from chalicelib.config import get_settings
    from chalicelib.root import Root, get_root
    from tests.conftest import reset_app_caches

    # Limits out of the way (they are tested on their own): every frame must meet the handlers.
    for name, value in (("CONNECTION_FRAME_LIMIT", "100000"), ("RATE_LIMIT_REQUESTS_PER_MINUTE", "1000000"),
                        ("TOKEN_BUDGET_PER_HOUR", "1000000000")):
        monkeypatch.setenv(name, value)
    reset_app_caches()
    # A job handed to a worker is answered by the worker (tested on its own): here it is recorded.
    monkeypatch.setattr(WorkerInvoker, "start", lambda self, name, payload: STARTED.append(payload))
    # Three hours back, in windows of its own: its hundreds of requests leave other tests' minutes alone.
    now = (int(time.time()) // 3600 - 3) * 3600 + 1.0
    process.install(get_root, Root(get_settings(), clock=lambda: now))
    connect("prop=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    return "prop="


STARTED: list[dict] = []


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=frames())
def test_no_frame_is_unanswered_or_answered_internal(open_connection, sender, body):
    sender.frames.pop(open_connection, None)
    STARTED.clear()
    message(open_connection, body)
    answered = sender.frames.get(open_connection, [])
    assert answered or STARTED, f"no answer to {body[:200]!r}"
    errors = [frame["error"] for frame in answered if frame["type"] == "error"]
    assert not [e for e in errors if e["code"] == "INTERNAL"], (body[:300], errors)
    assert open_connection not in sender.closed
