"""What the model reads for one chat: sized and counted by the handler, loaded by the worker.

The reservation must cover everything the model will be charged for, and a missing or
oversized context file must be answered before the `ack`; but the history's and the
files' bodies can be large (an async invocation's payload is limited to 256 KB) and
reading them twice would cost. So the handler counts what it holds (the prompt or
conversation, the system prompt, the tools, the files' delimiters) and sizes the rest
without reading any content: the history from its messages' `size` attributes (one Query
projecting role and size), the context files with one HEAD each. The worker then loads
them with those sizes as its limits (tokens in the app's measure of 4 bytes a token, and
the history's number of messages), so what the model is sent never exceeds what was
reserved. Messages appended to the session in between take the place of older ones within
the same limits; a context file replaced by a larger one in between fails the chat with
PAYLOAD_TOO_LARGE (and settles nothing used).

The input reserved (`InputPlan.input_tokens`) is Bedrock's own count (CountTokens, for a
model whose table entry says `countTokens`) of what the handler holds, else an upper bound
of it (chalicelib/chat/input_bound.py), plus the bound of the history's and the files' text:
never below what Bedrock will charge. `exact` says whether it is Bedrock's count of the whole
input (no history, no context files, and Bedrock counted). The context window is checked
with the count or the app's measure (`estimate`), not the bound, which would refuse inputs
that fit.

A chat with `messages` has no history; its conversation and tools are counted whole. Cache
points (chalicelib/chat/caching.py) are placed as the worker builds the request; they read
nothing, so they change no count.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.chat import converse
from chalicelib.chat.caching import place_cache_points
from chalicelib.chat.input_bound import documents_bound, history_bound, input_bound
from chalicelib.chat.request import ChatRequest, UploadRef
from chalicelib.errors import PayloadTooLarge
from chalicelib.tokens import tokens_for_bytes

# Bedrock's count of a Converse input ({"messages", "system"?, "toolConfig"?}), or None where it cannot count.
Count = Callable[[dict[str, Any]], "int | None"]


class HistorySource(Protocol):
    """A session's earlier messages (the SessionStore)."""

    def history_size(self, user_sub: str, session_id: str, token_limit: int) -> tuple[int, int]:
        """(tokens, messages) `history_for` would load within `token_limit`; NOT_FOUND unless the caller's."""
        ...

    def history_for(self, user_sub: str, session_id: str, token_limit: int,
                    message_limit: int | None = None) -> list[dict[str, str]]:
        """The most recent turns within `token_limit` and `message_limit`, oldest first: [{"role", "content"}]."""
        ...

    def append_exchange(self, user_sub: str, session_id: str, request_id: str, prompt: str, reply: str,
                        cancelled: bool) -> None:
        ...


class ContextSource(Protocol):
    """The user's context files (the ContextStore)."""

    def documents_sizes(self, user_sub: str, session_id: str | None, paths: Sequence[str],
                        token_limit: int) -> list[tuple[str, int]]:
        """(path, bytes) of each file; NOT_FOUND, BAD_REQUEST or PAYLOAD_TOO_LARGE before anything is read."""
        ...

    def context_documents(self, user_sub: str, session_id: str | None, paths: Sequence[str],
                          token_limit: int) -> list[tuple[str, str]]:
        """(path, text) of each file, within `token_limit`."""
        ...


class UploadSource(Protocol):
    """Request bodies put with chat.upload (the UploadStore)."""

    def load(self, user_sub: str, ref: UploadRef) -> dict[str, Any]:
        """The body's content parameters (with the frame's own); BAD_REQUEST if it changed since it was checked."""
        ...

    def discard(self, user_sub: str, upload_id: str) -> None:
        ...


@dataclass(frozen=True)
class InputPlan:
    history_tokens: int  # the limit the worker loads the session's history with (0: no history)
    context_tokens: int  # the limit the worker loads the context files with
    input_tokens: int  # what the reservation holds for input: Bedrock's count or an upper bound of all of it
    history_messages: int = 0  # the most history messages the worker loads
    exact: bool = False  # input_tokens is Bedrock's count of the whole input
    estimate: int = 0  # the count, or the app's measure (4 bytes a token): what the context window is checked with

    def to_payload(self) -> dict[str, Any]:
        return {"historyTokens": self.history_tokens, "historyMessages": self.history_messages,
                "contextTokens": self.context_tokens, "inputTokens": self.input_tokens, "exact": self.exact,
                "estimate": self.estimate}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> InputPlan:
        return cls(history_tokens=int(data["historyTokens"]), history_messages=int(data["historyMessages"]),
                   context_tokens=int(data["contextTokens"]), input_tokens=int(data["inputTokens"]),
                   exact=bool(data["exact"]), estimate=int(data["estimate"]))


def _no_count(request: dict[str, Any]) -> int | None:
    return None


def plan_input(chat: ChatRequest, *, user_sub: str, sessions: HistorySource, context: ContextSource,
               history_limit: int, context_limit: int, count: Count = _no_count) -> InputPlan:
    """Check the session and the context paths (NOT_FOUND, PAYLOAD_TOO_LARGE, BAD_REQUEST), size and count the input.

    `count` is Bedrock's CountTokens for the chat's model (None where it cannot count, or failed).
    """
    history_tokens, history_messages = 0, 0
    if chat.session_id is not None:
        history_tokens, history_messages = sessions.history_size(user_sub, chat.session_id, history_limit)
    sizes: list[tuple[str, int]] = []
    if chat.context_paths:
        sizes = context.documents_sizes(user_sub, chat.session_id, chat.context_paths, context_limit)
    context_tokens = sum(tokens_for_bytes(size) for _, size in sizes)
    # The request as built, with empty documents: the prompt or conversation, system, tools, the preamble
    # and each file's delimiters; a file's text adds to its block, the history messages of their own.
    held = _converse_input(chat, history=[], documents=[(path, "") for path, _ in sizes])
    counted = count(held)
    unread = history_tokens + context_tokens
    estimate = (counted if counted is not None else converse.input_tokens(held)) + unread
    window = chat.rules.context_tokens if chat.rules is not None else 0
    if window and estimate >= window:
        raise PayloadTooLarge(f"the request is about {estimate} tokens; model {chat.model!r} reads at most {window}")
    reserved = (counted if counted is not None else input_bound(held)) + (
        history_bound(history_tokens, history_messages) if history_messages else 0) + (
        documents_bound(context_tokens, len(sizes)) if sizes else 0)
    return InputPlan(history_tokens=history_tokens, history_messages=history_messages, context_tokens=context_tokens,
                     input_tokens=reserved, exact=counted is not None and not unread and not sizes,
                     estimate=estimate)


def load_input(chat: ChatRequest, plan: InputPlan, *, user_sub: str, sessions: HistorySource,
               context: ContextSource) -> dict[str, Any]:
    """The Converse `messages` (and `system`, `toolConfig`): history, context documents, then the new input,
    with the server's cache points for a model that caches prompts."""
    history: list[dict[str, str]] = []
    if chat.session_id is not None and plan.history_tokens > 0:
        history = sessions.history_for(user_sub, chat.session_id, plan.history_tokens, plan.history_messages)
    documents: list[tuple[str, str]] = []
    if chat.context_paths:
        documents = context.context_documents(user_sub, chat.session_id, chat.context_paths, plan.context_tokens)
    request = _converse_input(chat, history=history, documents=documents)
    if chat.rules is not None and chat.rules.prompt_cache:
        place_cache_points(request, min_tokens=chat.rules.min_cache_tokens)
    return request


def _converse_input(chat: ChatRequest, *, history: list[dict[str, str]],
                    documents: list[tuple[str, str]]) -> dict[str, Any]:
    tool_config = chat.tool_config
    conversation = chat.conversation
    messages = conversation.converse_messages(tools_offered=tool_config is not None) if conversation else None
    return converse.build_converse_input(system=chat.system, history=history, documents=documents,
                                         prompt=chat.prompt, conversation=messages,
                                         tool_config=tool_config.converse() if tool_config else None)
