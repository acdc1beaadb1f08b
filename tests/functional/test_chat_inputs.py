"""The chat's input, sized and counted by the handler and loaded by the worker, against moto and the Bedrock
emulator: the estimate is what the worker then sends (in the app's measure), and the input reserved is never
less than what Bedrock counts for it (the emulator's tokenizer), counted by CountTokens or bounded."""
from __future__ import annotations

import uuid

import pytest

from chalicelib.aws import clients as aws
from chalicelib.chat import converse
from chalicelib.chat.bedrock import BedrockTokenCounter
from chalicelib.chat.input_bound import input_bound
from chalicelib.chat.inputs import load_input, plan_input
from chalicelib.chat.request import ChatRequest
from chalicelib.config import get_settings
from chalicelib.errors import BadRequest, NotFound, PayloadTooLarge
from chalicelib.root import Root


@pytest.fixture
def services(app_env):
    return Root(get_settings())


def chat(**fields):
    return ChatRequest(**{"prompt": "and now? 😀", "model": "m", "max_tokens": 100, **fields})


COUNTED = "anthropic.claude-sonnet-4-20250514-v1:0"  # a model Bedrock (here its emulator) counts


def bedrock_count(request) -> int:
    """What Bedrock charges for this Converse input: the emulator's CountTokens (its tokenizer's rule)."""
    return BedrockTokenCounter(aws.client("bedrock-runtime")).count(COUNTED, request)


def plan_and_load(services, sub, request, *, history_limit=4000, context_limit=8000, count=lambda request: None):
    plan = plan_input(request, user_sub=sub, sessions=services.sessions, context=services.context,
                      history_limit=history_limit, context_limit=context_limit, count=count)
    loaded = load_input(request, plan, user_sub=sub, sessions=services.sessions, context=services.context)
    return plan, loaded


@pytest.mark.parametrize("counted", [False, True], ids=["bounded", "counted"])
def test_the_estimate_is_what_the_worker_sends_and_the_reservation_covers_bedrocks_count(services, counted):
    sub = str(uuid.uuid4())
    session = services.sessions.create(sub, title="t")
    for n in range(3):  # token-dense: punctuation, CJK, emoji take more tokens than 4 bytes each
        services.sessions.append_exchange(sub, session.session_id, f"r{n}", f"q{n}: é?!;,.", f"a{n}: 漢字😀!!",
                                          False)
    services.context.put(sub, "src/app.py", "def main():\n    return {'a': [1, 2, (3,)]}\n", session_id=None)
    services.context.put(sub, "notes.md", "session, notes; ok?", session_id=session.session_id)
    request = chat(system="be brief", session_id=session.session_id, context_paths=("src/app.py", "notes.md"))
    plan, loaded = plan_and_load(services, sub, request, count=bedrock_count if counted else lambda request: None)
    assert [m["role"] for m in loaded["messages"]] == ["user", "assistant"] * 3 + ["user"]
    final = [block["text"] for block in loaded["messages"][-1]["content"]]
    assert final[-1] == "and now? 😀" and "session, notes" in final[2] and "return {" in final[1]
    if not counted:  # the app's measure of what is sent, for the context window
        assert plan.estimate == converse.input_tokens(loaded)
    charged = bedrock_count(loaded)
    assert charged > converse.input_tokens(loaded)  # 4 bytes a token would have reserved too little
    assert plan.input_tokens >= charged and plan.input_tokens >= (input_bound(loaded) if not counted else charged)
    assert not plan.exact  # the history and the files were sized, not counted


def test_a_conversation_alone_is_counted_exactly(services):
    request = chat(prompt=None, messages=({"role": "user", "content": "a,b;c! 漢字 😀 [1, 2]"},), system="be brief")
    plan, loaded = plan_and_load(services, str(uuid.uuid4()), request, count=bedrock_count)
    assert plan.exact and plan.input_tokens == bedrock_count(loaded) == plan.estimate


def test_history_beyond_the_limit_is_neither_reserved_nor_sent(services):
    sub = str(uuid.uuid4())
    session = services.sessions.create(sub, title="t")
    for n in range(5):
        services.sessions.append_exchange(sub, session.session_id, f"r{n}", "q" * 400, "a" * 400, False)
    plan, loaded = plan_and_load(services, sub, chat(session_id=session.session_id), history_limit=450)
    assert plan.history_tokens == 400  # the last exchange (2 x 100 tokens) x 2 fit; a third message would not
    assert len(loaded["messages"]) == 5 and plan.estimate == converse.input_tokens(loaded)
    assert plan.history_messages == 4 and plan.input_tokens >= input_bound(loaded)


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
    assert converse.input_tokens(loaded) <= plan.estimate
    assert input_bound(loaded) <= plan.input_tokens and bedrock_count(loaded) <= plan.input_tokens


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


def test_a_path_too_long_for_its_storage_key_is_named_with_the_bytes_it_may_take(services):
    # Under the protocol's 1,024 bytes, but not with the storage prefix before it (S3 keys take 1,024 bytes).
    sub, long_path = str(uuid.uuid4()), "d/" * 490 + "file.txt"
    with pytest.raises(BadRequest) as refused:
        services.context.put(sub, long_path, "x", session_id=None)
    room = refused.value.message.split("at most ")[1].split(" bytes")[0]
    assert refused.value.message == f"'path' is {len(long_path)} bytes; here it may take at most {room} bytes " \
                                    "(with its storage prefix, an S3 key takes 1024)"
    services.context.put(sub, "a.txt", "x", session_id=None)
    with pytest.raises(BadRequest) as refused:
        plan_and_load(services, sub, chat(context_paths=("a.txt", long_path)))
    assert refused.value.message.startswith(f"'contextPaths[1]' is {len(long_path)} bytes; here it may take")
    # The very limit is taken; and a path too long for a session's files is still one of the user's own.
    longest = "p" * int(room)
    services.context.put(sub, longest, "the user's", session_id=None)
    session = services.sessions.create(sub, title="s")
    with pytest.raises(BadRequest, match="'path' is"):
        services.context.put(sub, longest, "x", session_id=session.session_id)
    _plan, loaded = plan_and_load(services, sub, chat(session_id=session.session_id, context_paths=(longest,)))
    assert "the user's" in str(loaded["messages"])


def test_a_context_file_grown_since_it_was_sized_fails_the_load(services):
    sub = str(uuid.uuid4())
    services.context.put(sub, "a.txt", "small", session_id=None)
    request = chat(context_paths=("a.txt",))
    plan = plan_input(request, user_sub=sub, sessions=services.sessions, context=services.context,
                      history_limit=4000, context_limit=8000)
    services.context.put(sub, "a.txt", "much larger now" * 10, session_id=None)
    with pytest.raises(PayloadTooLarge):
        load_input(request, plan, user_sub=sub, sessions=services.sessions, context=services.context)
