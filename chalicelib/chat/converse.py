"""A chat's parts turned into a Bedrock Converse request, and token estimates.

Pure functions, no I/O: the chat worker calls `build_converse_input` with the
system prompt, the session's history (`SessionStore.history_for`), the context
documents (`ContextStore.context_documents`) and the new prompt.

Context files go into the final user message as text blocks, before the prompt,
each between two marker lines that name its path and carry a boundary derived
from the content, so the model can tell where a file ends. (Converse's
`document` blocks are for binary formats such as PDF or DOCX and want a name
limited to a few characters; source files are text.)
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from chalicelib.tokens import estimate_tokens

DOCUMENTS_PREAMBLE = ("The user attached these context files. Each one starts with a BEGIN line and ends "
                      "with the END line that has the same path and boundary.")


def alternating(turns: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """Turns as Bedrock accepts them: non-empty, user first, roles alternating, ending with assistant.

    Consecutive turns of one role (a reply lost to a cancel before any text) are
    joined; a leading assistant turn and a trailing unanswered user turn are dropped.
    """
    merged: list[dict[str, str]] = []
    for turn in turns:
        content = turn["content"]
        if not content.strip():  # Bedrock refuses a blank text block, and with it the whole request
            continue
        if merged and merged[-1]["role"] == turn["role"]:
            merged[-1]["content"] += "\n\n" + content
        else:
            merged.append({"role": turn["role"], "content": content})
    while merged and merged[0]["role"] != "user":
        merged.pop(0)
    while merged and merged[-1]["role"] != "assistant":
        merged.pop()
    return merged


def document_block(path: str, text: str) -> str:
    boundary = hashlib.sha256(f"{path}\0{text}".encode()).hexdigest()[:16]
    return (f"===== BEGIN CONTEXT FILE path={path!r} boundary={boundary} =====\n"
            f"{text}\n"
            f"===== END CONTEXT FILE path={path!r} boundary={boundary} =====")


def build_converse_input(*, system: str | None, history: Sequence[Mapping[str, str]],
                         documents: Sequence[tuple[str, str]], prompt: str) -> dict[str, Any]:
    """The `messages` (and `system`, when there is one) keyword arguments of Converse/ConverseStream."""
    messages: list[dict[str, Any]] = [
        {"role": turn["role"], "content": [{"text": turn["content"]}]} for turn in alternating(history)
    ]
    final: list[dict[str, str]] = []
    if documents:
        final.append({"text": DOCUMENTS_PREAMBLE})
        final.extend({"text": document_block(path, text)} for path, text in documents)
    final.append({"text": prompt})
    messages.append({"role": "user", "content": final})
    request: dict[str, Any] = {"messages": messages}
    if system:
        request["system"] = [{"text": system}]
    return request


def input_tokens(request: Mapping[str, Any]) -> int:
    """The estimated input tokens of a `build_converse_input` result, for the token reservation."""
    blocks = list(request.get("system", ()))
    for message in request["messages"]:
        blocks.extend(message["content"])
    return sum(estimate_tokens(block["text"]) for block in blocks)
