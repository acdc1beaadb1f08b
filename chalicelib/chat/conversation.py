"""`messages` of a chat.send, checked against every rule of the protocol and turned into Converse's.

The protocol's blocks (docs/PROTOCOL.md) map one to one onto Converse content blocks:

    {"type": "text", "text"}                       -> {"text"}
    {"type": "image", "format", "data": base64}    -> {"image": {"format", "source": {"bytes"}}}
    {"type": "toolUse", "toolUseId", "name", "input"}   -> {"toolUse": {...}}
    {"type": "toolResult", "toolUseId", "status", "content": [text | image | json]}
                                                   -> {"toolResult": {"toolUseId", "status", "content"}}
    {"type": "cachePoint"}                         -> {"cachePoint": {"type": "default"}}

Consecutive messages of one role are merged, in order. Every fault is found here, before the
chat is admitted, and answered with a BAD_REQUEST (PAYLOAD_TOO_LARGE for an image over
Bedrock's size) that names the message as the client sent it: `messages[3].content[0].toolUseId`.

Two mappings are the server's own (docs/PROTOCOL.md, "Additions"): on a model without prompt
caching, `cachePoint` blocks are dropped; and when the chat offers no `tools`, toolUse and
toolResult blocks reach the model as text, because Bedrock refuses those blocks without a
`toolConfig` (so the model cannot call a tool in that turn, as the client asked).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib.chat import images
from chalicelib.chat.tools import TOOL_NAME
from chalicelib.errors import BadRequest, PayloadTooLarge
from chalicelib.models import MAX_CACHE_POINTS
from chalicelib.protocol import check_text

ROLES = ("user", "assistant")
TOOL_USE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # Converse's ToolUseBlock.toolUseId
STATUSES = ("success", "error")
CACHE_POINT = {"cachePoint": {"type": "default"}}
EMPTY_RESULT = "(no content)"  # what the model reads for a toolResult with no content (Bedrock refuses none)
_FIELDS = {
    "text": frozenset({"type", "text"}),
    "image": frozenset({"type", "format", "data"}),
    "toolUse": frozenset({"type", "toolUseId", "name", "input"}),
    "toolResult": frozenset({"type", "toolUseId", "status", "content"}),
    "cachePoint": frozenset({"type"}),
}
_RESULT_FIELDS = {"text": frozenset({"type", "text"}), "image": _FIELDS["image"], "json": frozenset({"type", "json"})}
# The base64 length of the largest image Bedrock takes: a longer `data` is refused before it is decoded.
_MAX_BASE64 = 4 * -(-images.MAX_IMAGE_BYTES // 3)


@dataclass(frozen=True)
class ContentRules:
    """What a chat's content is checked against: its model's entry in the model table (as it was when
    the chat was admitted: the worker checks the content again by the same rules) and the stage's limit."""

    model: str
    images: bool = False
    tools: bool = False
    prompt_cache: bool = False
    min_cache_tokens: int = 0
    context_tokens: int = 0  # the input and output the model can hold (0: not checked)
    max_tools: int = 0  # CHAT_MAX_TOOLS


@dataclass
class Turn:
    role: str
    blocks: list[dict[str, Any]] = field(default_factory=list)  # Converse content blocks
    origins: list[str] = field(default_factory=list)  # where each block was in the request

    def converse(self, *, tools_offered: bool) -> dict[str, Any]:
        content = list(self.blocks) if tools_offered else [part for block in self.blocks
                                                            for part in _without_tools(block)]
        return {"role": self.role, "content": content}


@dataclass(frozen=True)
class Conversation:
    turns: tuple[Turn, ...]  # merged, user first and last
    has_tool_blocks: bool  # toolUse or toolResult anywhere

    def converse_messages(self, *, tools_offered: bool) -> list[dict[str, Any]]:
        """Converse's `messages` (fresh lists: the caller may append to them)."""
        return [turn.converse(tools_offered=tools_offered) for turn in self.turns]


def parse_messages(raw: Any, rules: ContentRules) -> Conversation:
    """The conversation, or the BAD_REQUEST (PAYLOAD_TOO_LARGE) naming the first fault."""
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'messages' must be a non-empty list")
    counts = _Counts()
    turns: list[Turn] = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        role, blocks = _message(message, where, rules, counts)
        if turns and turns[-1].role == role:
            turn = turns[-1]
        else:
            turn = Turn(role)
            turns.append(turn)
        for origin, block in blocks:
            turn.blocks.append(block)
            turn.origins.append(origin)
    if counts.images > images.MAX_IMAGES:
        raise BadRequest(f"'messages' holds {counts.images} images; Bedrock takes at most {images.MAX_IMAGES}")
    if counts.cache_points > MAX_CACHE_POINTS:
        raise BadRequest(f"'messages' holds {counts.cache_points} cachePoint blocks; "
                         f"Bedrock takes at most {MAX_CACHE_POINTS}")
    if turns[0].role != "user":
        raise BadRequest("'messages[0]' must be a user message")
    if turns[-1].role != "user":
        raise BadRequest(f"'messages[{len(raw) - 1}]' must be a user message (the last message is the user's)")
    _check_pairs(turns)
    return Conversation(turns=tuple(turns), has_tool_blocks=counts.tool_blocks > 0)


@dataclass
class _Counts:
    images: int = 0
    cache_points: int = 0
    tool_blocks: int = 0


def _message(message: Any, where: str, rules: ContentRules,
             counts: _Counts) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    if not isinstance(message, dict):
        raise BadRequest(f"'{where}' must be an object")
    unknown = set(message) - {"role", "content"}
    if unknown:
        raise BadRequest(f"'{where}' has an unknown field {sorted(unknown)[0]!r}")
    role = message.get("role")
    if role not in ROLES:
        raise BadRequest(f"'{where}.role' must be \"user\" or \"assistant\"")
    content = message.get("content")
    if isinstance(content, str):
        return role, [(f"{where}.content", {"text": check_text(content, f"{where}.content")})]
    if not isinstance(content, list) or not content:
        raise BadRequest(f"'{where}.content' must be a text or a non-empty list of blocks")
    blocks = []
    for index, block in enumerate(content):
        at = f"{where}.content[{index}]"
        converted = _block(block, at, role, rules, counts)
        if converted is not None:
            blocks.append((at, converted))
    if all(isinstance(block, dict) and block.get("type") == "cachePoint" for block in content):
        raise BadRequest(f"'{where}.content' holds nothing but cachePoint blocks")
    return role, blocks


def _block(block: Any, at: str, role: str, rules: ContentRules, counts: _Counts) -> dict[str, Any] | None:
    kind = _kind(block, at, _FIELDS)
    if kind == "text":
        return {"text": _text(block, at)}
    if kind == "cachePoint":
        counts.cache_points += 1
        return dict(CACHE_POINT) if rules.prompt_cache else None
    if kind == "image":
        _only_in(role, "user", at, "image")
        return _image(block, at, rules, counts)
    counts.tool_blocks += 1
    if kind == "toolUse":
        _only_in(role, "assistant", at, "toolUse")
        name = block.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise BadRequest(f"'{at}.name' must be 1-64 characters of [A-Za-z0-9_-]")
        if not isinstance(block.get("input"), dict):
            raise BadRequest(f"'{at}.input' must be an object")
        return {"toolUse": {"toolUseId": _tool_use_id(block, at), "name": name, "input": block["input"]}}
    _only_in(role, "user", at, "toolResult")
    status = block.get("status", "success")
    if status not in STATUSES:
        raise BadRequest(f"'{at}.status' must be \"success\" or \"error\"")
    content = block.get("content", [])
    if not isinstance(content, list):
        raise BadRequest(f"'{at}.content' must be a list of text, image and json blocks")
    results = [_result(item, f"{at}.content[{index}]", rules, counts) for index, item in enumerate(content)]
    return {"toolResult": {"toolUseId": _tool_use_id(block, at), "status": status,
                           "content": results or [{"text": EMPTY_RESULT}]}}


def _result(item: Any, at: str, rules: ContentRules, counts: _Counts) -> dict[str, Any]:
    kind = _kind(item, at, _RESULT_FIELDS)
    if kind == "text":
        return {"text": _text(item, at)}
    if kind == "image":
        return _image(item, at, rules, counts)
    if "json" not in item or item["json"] is None:
        raise BadRequest(f"'{at}.json' is required")
    return {"json": item["json"]}


def _kind(block: Any, at: str, kinds: dict[str, frozenset[str]]) -> str:
    if not isinstance(block, dict):
        raise BadRequest(f"'{at}' must be an object")
    kind = block.get("type")
    if not isinstance(kind, str) or kind not in kinds:  # a list or an object cannot even be looked up
        raise BadRequest(f"'{at}.type' must be one of {', '.join(kinds)}")
    unknown = set(block) - kinds[kind]
    if unknown:
        raise BadRequest(f"'{at}' has an unknown field {sorted(unknown)[0]!r}")
    return kind


def _only_in(role: str, allowed: str, at: str, kind: str) -> None:
    if role != allowed:
        raise BadRequest(f"'{at}': {kind} blocks belong in {allowed} messages")


def _text(block: dict[str, Any], at: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise BadRequest(f"'{at}.text' must be a string")
    return check_text(text, f"{at}.text")


def _tool_use_id(block: dict[str, Any], at: str) -> str:
    value = block.get("toolUseId")
    if not isinstance(value, str) or not TOOL_USE_ID.fullmatch(value):
        raise BadRequest(f"'{at}.toolUseId' must be 1-64 characters of [A-Za-z0-9_-]")
    return value


def _image(block: dict[str, Any], at: str, rules: ContentRules, counts: _Counts) -> dict[str, Any]:
    if not rules.images:
        raise BadRequest(f"'{at}': model {rules.model!r} does not take images")
    declared = block.get("format")
    if declared not in images.FORMATS:
        raise BadRequest(f"'{at}.format' must be one of {', '.join(images.FORMATS)}")
    data = block.get("data")
    if not isinstance(data, str) or not data:
        raise BadRequest(f"'{at}.data' must be the image's bytes in base64")
    if len(data) > _MAX_BASE64:  # so its bytes would be more than Bedrock takes: refused before decoding
        raise PayloadTooLarge(f"'{at}.data' is over the {images.MAX_IMAGE_BYTES} bytes Bedrock takes for an image")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"'{at}.data' is not valid base64") from None
    info = images.inspect(raw)
    if info is None or info.format != declared:
        found = info.format if info is not None else images.sniff(raw)
        seen = f"its bytes are {found}" if found else "its bytes are no image Bedrock reads"
        raise BadRequest(f"'{at}.data' is not a {declared} image ({seen})")
    problem = images.damage(raw, declared)
    if problem is not None:
        raise BadRequest(f"'{at}.data' is not a whole {declared} image ({problem})")
    if max(info.width, info.height) > images.MAX_IMAGE_SIDE:
        raise BadRequest(f"'{at}.data' is {info.width}x{info.height} px; Bedrock takes at most "
                         f"{images.MAX_IMAGE_SIDE} px a side")
    counts.images += 1
    return {"image": {"format": declared, "source": {"bytes": raw}}}


def _check_pairs(turns: Sequence[Turn]) -> None:
    """Every toolResult answers a toolUse of the message before; every toolUse is answered in the next one."""
    for position, turn in enumerate(turns):
        if turn.role != "user":
            continue  # an assistant turn is always followed by a user turn: its calls are checked there
        calls = _ids(turns[position - 1], "toolUse") if position > 0 else []
        asked = {tool_id for tool_id, _ in calls}
        results = _ids(turn, "toolResult")
        for tool_id, origin in results:
            if tool_id not in asked:
                raise BadRequest(f"'{origin}.toolUseId': {tool_id!r} answers no toolUse of the message before")
        answered = {tool_id for tool_id, _ in results}
        for tool_id, origin in calls:
            if tool_id not in answered:
                raise BadRequest(f"'{origin}.toolUseId': the next user message has no toolResult for {tool_id!r}")


def _ids(turn: Turn, kind: str) -> list[tuple[str, str]]:
    """(toolUseId, origin) of the turn's blocks of `kind`; BAD_REQUEST for an id given twice."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for block, origin in zip(turn.blocks, turn.origins, strict=True):
        if kind in block:
            tool_id = block[kind]["toolUseId"]
            if tool_id in seen:
                raise BadRequest(f"'{origin}.toolUseId': {tool_id!r} is given twice in one message")
            seen.add(tool_id)
            found.append((tool_id, origin))
    return found


def _without_tools(block: dict[str, Any]) -> list[dict[str, Any]]:
    """A block for a chat that offers no tools: a toolUse or toolResult as text (and a result's images as
    they are), since Bedrock takes those blocks only with a toolConfig."""
    if "toolUse" in block:
        use = block["toolUse"]
        return [{"text": f"[tool call {use['name']} id={use['toolUseId']} input={json.dumps(use['input'])}]"}]
    if "toolResult" in block:
        result = block["toolResult"]
        texts = [item["text"] if "text" in item else json.dumps(item["json"])
                 for item in result["content"] if "image" not in item]
        header = f"[tool result id={result['toolUseId']} status={result['status']}]"
        return [{"text": "\n".join([header, *texts])}] + [item for item in result["content"] if "image" in item]
    return [block]
