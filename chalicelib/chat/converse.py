"""A chat's parts turned into a Bedrock Converse request, and token estimates.

Pure functions, no I/O: the chat worker calls `build_converse_input` with the
system prompt, the session's history (`SessionStore.history_for`), the context
documents (`ContextStore.context_documents`) and the new prompt.

Context files go into the final user message as text blocks, before the prompt,
each between two marker lines that name its path and carry a boundary derived
from the content, so the model can tell where a file ends. (Converse's
`document` blocks are for binary formats such as PDF or DOCX and want a name
limited to a few characters; source files are text.)

A chat with `messages` (chalicelib/chat/conversation.py) is built the same way: its turns
before the last one stand where the history would, and the context files go before the
blocks of its last user message.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from chalicelib.chat import images, tools
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
                         documents: Sequence[tuple[str, str]], prompt: str | None = None,
                         conversation: Sequence[Mapping[str, Any]] | None = None,
                         tool_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Converse/ConverseStream's `messages`, and `system` and `toolConfig` when there are any.

    The new input is `prompt` (one text) or `conversation` (Converse messages, the last a user's).
    """
    messages: list[dict[str, Any]] = [
        {"role": turn["role"], "content": [{"text": turn["content"]}]} for turn in alternating(history)
    ]
    if conversation is not None:
        messages.extend({"role": turn["role"], "content": list(turn["content"])} for turn in conversation[:-1])
        last = list(conversation[-1]["content"])
    else:
        last = [{"text": prompt}]
    final: list[dict[str, Any]] = []
    if documents:
        final.append({"text": DOCUMENTS_PREAMBLE})
        final.extend({"text": document_block(path, text)} for path, text in documents)
    messages.append({"role": "user", "content": final + last})
    request: dict[str, Any] = {"messages": messages}
    if system:
        request["system"] = [{"text": system}]
    if tool_config:
        request["toolConfig"] = dict(tool_config)
    return request


def input_tokens(request: Mapping[str, Any]) -> int:
    """The estimated input tokens of a `build_converse_input` result, for the token reservation:
    the tool definitions, the system prompt and every block of every message."""
    blocks = list(request.get("system", ()))
    for message in request["messages"]:
        blocks.extend(message["content"])
    return tools.config_tokens(request.get("toolConfig") or {}) + sum(block_tokens(block) for block in blocks)


def block_tokens(block: Mapping[str, Any]) -> int:
    """The estimated tokens of one Converse content block (a cache point reads nothing)."""
    if "text" in block:
        return estimate_tokens(block["text"])
    if "image" in block:
        info = images.inspect(block["image"]["source"]["bytes"])
        return info.tokens() if info is not None else images.CLAUDE_MAX_TOKENS
    if "toolUse" in block:
        use = block["toolUse"]
        return estimate_tokens(use["toolUseId"] + use["name"] + _json(use["input"]))
    if "toolResult" in block:
        result = block["toolResult"]
        return estimate_tokens(result["toolUseId"]) + sum(block_tokens(item) for item in result["content"])
    if "json" in block:
        return estimate_tokens(_json(block["json"]))
    return 0


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
