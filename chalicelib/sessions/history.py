"""Which of a session's messages the model sees: pure, so it is tested without AWS."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from chalicelib.tokens import tokens_for_bytes


class HistoryMessage(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def size(self) -> int:
        """Bytes of UTF-8 content."""
        ...


M = TypeVar("M", bound=HistoryMessage)


def message_tokens(message: HistoryMessage) -> int:
    return tokens_for_bytes(message.size)


def select_recent(newest_first: Iterable[M], token_limit: int, message_limit: int | None = None) -> list[M]:
    """The most recent messages that fit the limits together (`token_limit` tokens and, if given, `message_limit`
    messages), oldest first, starting with a user message.

    Walks back from the newest message and stops at the first one that does not fit,
    so the model never sees a conversation with a hole in it. Unanswered prompts at
    the end and empty messages (a reply cancelled before any text) are skipped.
    """
    picked: list[M] = []
    used = 0
    for message in newest_first:
        if message.size == 0 or (not picked and message.role == "user"):
            continue
        tokens = message_tokens(message)
        if used + tokens > token_limit or (message_limit is not None and len(picked) >= message_limit):
            break
        picked.append(message)
        used += tokens
    picked.reverse()
    while picked and picked[0].role != "user":
        picked.pop(0)
    return picked
