"""What the model reads for one chat: sized by the handler, loaded by the worker.

The token reservation must cover the history and the context files, and a missing
or oversized context file must be answered before the `ack`; but the bodies can
be large (an async invocation's payload is limited to 256 KB) and reading them
twice would cost. So the handler sizes them without reading any content: the
history from its messages' `size` attributes (one Query projecting role and
size), the context files with one HEAD each. The worker then loads them with
those sizes as its limits, so what the model is sent never exceeds what was
reserved (in the app's measure of about 4 bytes a token; Bedrock's metadata
settles the real count). Messages appended to the session in between take the
place of older ones within the same bound; a context file replaced by a larger
one in between fails the chat with PAYLOAD_TOO_LARGE (and settles nothing used).

A chat with `messages` has no history; its conversation and tools are counted whole, images
by their pixels (chalicelib/chat/images.py), and an input the model's context window cannot
hold is PAYLOAD_TOO_LARGE here. Cache points (chalicelib/chat/caching.py) are placed as the
worker builds the request; they read nothing, so they change no estimate.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.chat import converse
from chalicelib.chat.caching import place_cache_points
from chalicelib.chat.request import ChatRequest, UploadRef
from chalicelib.errors import PayloadTooLarge
from chalicelib.tokens import tokens_for_bytes


class HistorySource(Protocol):
    """A session's earlier messages (the SessionStore)."""

    def history_tokens(self, user_sub: str, session_id: str, token_limit: int) -> int:
        """The tokens `history_for` would load within `token_limit`; NOT_FOUND unless the caller's session."""
        ...

    def history_for(self, user_sub: str, session_id: str, token_limit: int) -> list[dict[str, str]]:
        """The most recent turns within `token_limit`, oldest first: [{"role", "content"}]."""
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
    estimated_input: int  # the reservation's input tokens: system, history, documents, prompt

    def to_payload(self) -> dict[str, int]:
        return {"historyTokens": self.history_tokens, "contextTokens": self.context_tokens,
                "estimatedInput": self.estimated_input}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> InputPlan:
        return cls(history_tokens=int(data["historyTokens"]), context_tokens=int(data["contextTokens"]),
                   estimated_input=int(data["estimatedInput"]))


def plan_input(chat: ChatRequest, *, user_sub: str, sessions: HistorySource, context: ContextSource,
               history_limit: int, context_limit: int) -> InputPlan:
    """Check the session and the context paths (NOT_FOUND, PAYLOAD_TOO_LARGE, BAD_REQUEST) and size the input."""
    history_tokens = 0
    if chat.session_id is not None:
        history_tokens = sessions.history_tokens(user_sub, chat.session_id, history_limit)
    sizes: list[tuple[str, int]] = []
    if chat.context_paths:
        sizes = context.documents_sizes(user_sub, chat.session_id, chat.context_paths, context_limit)
    context_tokens = sum(tokens_for_bytes(size) for _, size in sizes)
    # The request as built, with empty documents: the prompt or conversation, system, tools, the preamble
    # and each file's delimiters; a file's text adds at most its own tokens to its block.
    frame = _converse_input(chat, history=[], documents=[(path, "") for path, _ in sizes])
    estimated = converse.input_tokens(frame) + history_tokens + context_tokens
    window = chat.rules.context_tokens if chat.rules is not None else 0
    if window and estimated >= window:
        raise PayloadTooLarge(f"the request is about {estimated} tokens; model {chat.model!r} reads at most {window}")
    return InputPlan(history_tokens=history_tokens, context_tokens=context_tokens, estimated_input=estimated)


def load_input(chat: ChatRequest, plan: InputPlan, *, user_sub: str, sessions: HistorySource,
               context: ContextSource) -> dict[str, Any]:
    """The Converse `messages` (and `system`, `toolConfig`): history, context documents, then the new input,
    with the server's cache points for a model that caches prompts."""
    history: list[dict[str, str]] = []
    if chat.session_id is not None and plan.history_tokens > 0:
        history = sessions.history_for(user_sub, chat.session_id, plan.history_tokens)
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
