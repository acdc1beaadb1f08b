"""The pure parts of chat input: history selection, alternation, the Converse request."""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib.chat.converse import (
    DOCUMENTS_PREAMBLE,
    alternating,
    build_converse_input,
    document_block,
    estimate_tokens,
    input_tokens,
)
from chalicelib.sessions.history import select_recent


@dataclass
class M:
    role: str
    content: str

    @property
    def size(self) -> int:
        return len(self.content.encode("utf-8"))


def exchange(n: int, size: int = 40) -> list[M]:
    return [M("user", f"q{n}".ljust(size, ".")), M("assistant", f"a{n}".ljust(size, "."))]


def newest_first(messages):
    return list(reversed(messages))


def test_estimate_tokens_is_four_bytes_a_token_rounded_up():
    assert [estimate_tokens(t) for t in ("", "a", "abcd", "abcde", "é" * 2)] == [0, 1, 1, 2, 1]


def test_history_keeps_the_most_recent_messages_that_fit_in_order():
    messages = exchange(1) + exchange(2) + exchange(3)  # 10 tokens each
    picked = select_recent(newest_first(messages), token_limit=45)
    assert [m.content[:2] for m in picked] == ["q2", "a2", "q3", "a3"]
    assert select_recent(newest_first(messages), token_limit=60) == messages
    assert select_recent(newest_first(messages), token_limit=9) == []


def test_history_starts_with_a_user_message_when_the_limit_cuts_an_exchange():
    messages = exchange(1) + exchange(2)
    picked = select_recent(newest_first(messages), token_limit=30)  # room for a1, q2, a2
    assert [m.role for m in picked] == ["user", "assistant"] and picked[0].content.startswith("q2")


def test_history_stops_at_a_message_too_large_rather_than_leaving_a_hole():
    messages = [*exchange(1), M("user", "x" * 4000), M("assistant", "short"), *exchange(3)]
    picked = select_recent(newest_first(messages), token_limit=200)
    assert [m.content[:2] for m in picked] == ["q3", "a3"]


def test_history_skips_an_unanswered_prompt_and_empty_cancelled_replies():
    messages = [*exchange(1), M("user", "q2"), M("assistant", ""), *exchange(3), M("user", "pending")]
    picked = select_recent(newest_first(messages), token_limit=1000)
    turns = alternating([{"role": m.role, "content": m.content} for m in picked])
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[2]["content"].startswith("q2\n\nq3")  # the prompt whose reply was lost stays, joined
    assert all(t["content"] != "pending" for t in turns)


def test_alternating_drops_leading_assistant_and_trailing_user():
    turns = [{"role": "assistant", "content": "a0"}, {"role": "user", "content": "q1"},
             {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]
    assert alternating(turns) == [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]


def test_converse_input_with_system_history_documents_and_prompt():
    history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    documents = [("src/app.py", "print('hi')\n"), ("README.md", "# Hello")]
    request = build_converse_input(system="be brief", history=history, documents=documents, prompt="explain")
    assert request["system"] == [{"text": "be brief"}]
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["user", "assistant", "user"]
    final = request["messages"][-1]["content"]
    assert final[0] == {"text": DOCUMENTS_PREAMBLE} and final[-1] == {"text": "explain"}
    first = final[1]["text"]
    assert first.startswith("===== BEGIN CONTEXT FILE path='src/app.py' boundary=")
    assert "print('hi')" in first and first.endswith("=====") and "END CONTEXT FILE path='src/app.py'" in first
    assert document_block("a", "x") != document_block("a", "y")  # the boundary follows the content
    assert input_tokens(request) == sum(estimate_tokens(b["text"]) for b in
                                        [*request["system"], *[c for m in request["messages"] for c in m["content"]]])


def test_converse_input_without_system_or_documents_is_just_the_prompt():
    request = build_converse_input(system=None, history=[], documents=[], prompt="hi")
    assert request == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
