"""An upper bound of the input tokens Bedrock charges for a Converse request: what a chat reserves for a model
whose input Bedrock cannot count (`countTokens` false in the model table), and for the parts of any chat the
message handler does not read (the session's history, the context files' text).

Why it bounds (the proof is in docs/OPERATIONS.md, "Guarantees, and what they rest on"):

1. The text. Bedrock's models tokenize text with byte-level BPE (Claude) or a SentencePiece model
   with byte fallback (Nova): every token stands for at least one byte of the UTF-8 text, so a text
   of n bytes is at most n tokens (`chalicelib.tokens.token_bound`), however dense in punctuation,
   emoji or CJK it is. JSON (tool specs, tool calls and results) is counted as rendered with
   `indent=2` and ASCII escapes, the longest rendering a prompt template would use.
2. The structure. Around the text, the model's prompt template adds a fixed preamble, a few tokens
   per message (the role) and per block (a tool call's or result's wrapper), the tool-use system prompt
   when tools are offered (Anthropic publishes it per model: 530 tokens at most, for Claude 3 Opus;
   346 for Claude 3.5 and later) and each tool's wrapper. The constants below are margins above
   those: each a multiple of what the published figures and the templates show.
3. Images. An image is resized by the model before it is read: Claude reads about width * height / 750
   tokens after scaling to 1,568 px on the long edge, at most about 1,600; Nova at most about 2,600 for
   its largest. IMAGE_TOKENS is above both.

Cache points read nothing; a cached prefix is billed as cache reads or writes, but it is read all the
same: the bound counts every token once, whatever its price (the money reservation prices each at the
highest of the input and cache prices).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chalicelib.tokens import BYTES_PER_TOKEN, token_bound

REQUEST_OVERHEAD = 64  # the template's fixed part (a few tokens in practice)
MESSAGE_OVERHEAD = 16  # per message: its role's markers (about 3 in practice)
BLOCK_OVERHEAD = 16  # per content block: a tool call's, a result's, an image's or a text's wrapper
TOOL_PROMPT = 1024  # the tool-use system prompt: at most 530 tokens in Anthropic's published table
TOOL_OVERHEAD = 32  # per tool: the wrapper of its name, description and schema
IMAGE_TOKENS = 3200  # per image: above Claude's ~1,600 and Nova's ~2,600
# Per context file whose text is added after counting (inputs.py counts each file's block empty): the two
# 16-character boundaries, which differ between the empty block and the real one, and the pieces of the
# two newlines the text goes between.
DOCUMENT_SLACK = 2 * 16 + 8
JOIN_BYTES = 2  # "\n\n" between two turns of one role that the history merges


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=True)


def block_bound(block: Mapping[str, Any]) -> int:
    """The most tokens one Converse content block can be read as (a cache point: none)."""
    if "cachePoint" in block:
        return 0
    if "text" in block:
        return BLOCK_OVERHEAD + token_bound(block["text"])
    if "image" in block:
        return BLOCK_OVERHEAD + IMAGE_TOKENS
    if "toolUse" in block:
        use = block["toolUse"]
        return (BLOCK_OVERHEAD + token_bound(use["toolUseId"]) + token_bound(use["name"])
                + token_bound(_json(use["input"])))
    if "toolResult" in block:
        result = block["toolResult"]
        return (BLOCK_OVERHEAD + token_bound(result["toolUseId"]) + token_bound(result.get("status") or "")
                + sum(block_bound(item) for item in result.get("content") or ()))
    if "json" in block:
        return BLOCK_OVERHEAD + token_bound(_json(block["json"]))
    # A kind of block this app never builds (chalicelib/chat/conversation.py makes only the above): its JSON.
    return BLOCK_OVERHEAD + token_bound(_json(dict(block)))


def tools_bound(tool_config: Mapping[str, Any]) -> int:
    specs = [tool["toolSpec"] for tool in tool_config.get("tools", ()) if "toolSpec" in tool]
    if not specs:
        return 0
    return TOOL_PROMPT + sum(TOOL_OVERHEAD + token_bound(_json(spec)) for spec in specs)


def input_bound(request: Mapping[str, Any]) -> int:
    """The most input tokens Bedrock can charge for a Converse request ({"messages", "system"?, "toolConfig"?})."""
    total = REQUEST_OVERHEAD + tools_bound(request.get("toolConfig") or {})
    total += sum(block_bound(block) for block in request.get("system") or ())
    for message in request["messages"]:
        total += MESSAGE_OVERHEAD + sum(block_bound(block) for block in message["content"])
    return total


def history_bound(tokens: int, messages: int) -> int:
    """The most tokens a session's history loaded within `tokens` (the app's measure: 4 bytes a token, rounded
    up, so at most 4 times as many bytes) and `messages` can add: its bytes, and per message one text block
    in its own message (and the join of two merged turns)."""
    return BYTES_PER_TOKEN * tokens + messages * (MESSAGE_OVERHEAD + BLOCK_OVERHEAD + JOIN_BYTES)


def documents_bound(tokens: int, documents: int) -> int:
    """The most tokens the text of `documents` context files loaded within `tokens` (the app's measure) adds to
    their blocks counted empty."""
    return BYTES_PER_TOKEN * tokens + documents * DOCUMENT_SLACK
