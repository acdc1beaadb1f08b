"""The chat's input, sized by the handler and loaded by the worker, against moto: the reservation's
estimate is what the worker then sends (in the app's measure), and never less."""
from __future__ import annotations

import uuid

import pytest

from chalicelib.chat import converse
from chalicelib.chat.inputs import load_input, plan_input
from chalicelib.chat.request import ChatRequest
from chalicelib.config import get_settings
from chalicelib.errors import NotFound, PayloadTooLarge
from chalicelib.root import Root


@pytest.fixture
def services(app_env):
    return Root(get_settings())


def chat(**fields):
    return ChatRequest(**{"prompt": "and now? 😀", "model": "m", "max_tokens": 100, **fields})


def plan_and_load(services, sub, request, *, history_limit=4000, context_limit=8000):
    plan = plan_input(request, user_sub=sub, sessions=services.sessions, context=services.context,
                      history_limit=history_limit, context_limit=context_limit)
    loaded = load_input(request, plan, user_sub=sub, sessions=services.sessions, context=services.context)
    return plan, loaded


def test_the_estimate_is_exactly_what_the_worker_sends(services):
    sub = str(uuid.uuid4())
    session = services.sessions.create(sub, title="t")
    for n in range(3):
        services.sessions.append_exchange(sub, session.session_id, f"r{n}", f"question {n} é", f"answer {n} 漢字",
                                          False)
    services.context.put(sub, "src/app.py", "def main():\n    return 42\n", session_id=None)
    services.context.put(sub, "notes.md", "session notes", session_id=session.session_id)
    request = chat(system="be brief", session_id=session.session_id, context_paths=("src/app.py", "notes.md"))
    plan, loaded = plan_and_load(services, sub, request)
    assert [m["role"] for m in loaded["messages"]] == ["user", "assistant"] * 3 + ["user"]
    final = [block["text"] for block in loaded["messages"][-1]["content"]]
    assert final[-1] == "and now? 😀" and "session notes" in final[2] and "return 42" in final[1]
    assert plan.estimated_input == converse.input_tokens(loaded)


def test_history_beyond_the_limit_is_neither_reserved_nor_sent(services):
    sub = str(uuid.uuid4())
    session = services.sessions.create(sub, title="t")
    for n in range(5):
        services.sessions.append_exchange(sub, session.session_id, f"r{n}", "q" * 400, "a" * 400, False)
    plan, loaded = plan_and_load(services, sub, chat(session_id=session.session_id), history_limit=450)
    assert plan.history_tokens == 400  # the last exchange (2 x 100 tokens) x 2 fit; a third message would not
    assert len(loaded["messages"]) == 5 and plan.estimated_input == converse.input_tokens(loaded)


def test_history_appended_after_sizing_replaces_older_messages_within_the_same_bound(services):
    sub = str(uuid.uuid4())
    session = services.sessions.create(sub, title="t")
    services.sessions.append_exchange(sub, session.session_id, "r0", "short", "short", False)
    request = chat(session_id=session.session_id)
    plan = plan_input(request, user_sub=sub, sessions=services.sessions, context=services.context,
                      history_limit=4000, context_limit=8000)
    # Another chat of the same session lands between the handler and the worker.
    services.sessions.append_exchange(sub, session.session_id, "r1", "x" * 4000, "y" * 4000, False)
    loaded = load_input(request, plan, user_sub=sub, sessions=services.sessions, context=services.context)
    assert converse.input_tokens(loaded) <= plan.estimated_input


def test_problems_are_found_by_the_handler_before_anything_is_read(services):
    sub, other = str(uuid.uuid4()), str(uuid.uuid4())
    session = services.sessions.create(other, title="someone else's")
    with pytest.raises(NotFound):
        plan_and_load(services, sub, chat(session_id=session.session_id))
    with pytest.raises(NotFound):
        plan_and_load(services, sub, chat(context_paths=("missing.txt",)))
    services.context.put(sub, "big.txt", "b" * 4001, session_id=None)
    with pytest.raises(PayloadTooLarge):
        plan_and_load(services, sub, chat(context_paths=("big.txt",)), context_limit=1000)


def test_a_context_file_grown_since_it_was_sized_fails_the_load(services):
    sub = str(uuid.uuid4())
    services.context.put(sub, "a.txt", "small", session_id=None)
    request = chat(context_paths=("a.txt",))
    plan = plan_input(request, user_sub=sub, sessions=services.sessions, context=services.context,
                      history_limit=4000, context_limit=8000)
    services.context.put(sub, "a.txt", "much larger now" * 10, session_id=None)
    with pytest.raises(PayloadTooLarge):
        load_input(request, plan, user_sub=sub, sessions=services.sessions, context=services.context)
