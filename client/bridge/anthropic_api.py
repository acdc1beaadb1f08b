"""Anthropic Messages: a request into `chat.send` parameters, the chat's events into its answers.

`cache_control` on a message's content block becomes a `cachePoint` after it (the backend also
caches after the system prompt and the tools by itself). `thinking` blocks of earlier turns are
dropped (they cannot be replayed to another model), the `thinking` option, `top_k`, `top_p` and
`metadata` are ignored, and server tools (web search, ...) and structured outputs (`output_config.format`)
are a 400 naming the tool or the field.
"""
from __future__ import annotations

import json
from typing import Any

from client.bridge.errors import invalid
from client.bridge.fields import optional_boolean, require_object, require_string, text_blocks, tool_use_id
from client.bridge.origins import Origins, Sourced
from client.bridge.reply import ChatCall, End, Event, Text, ToolCall, Usage

STOP_REASONS = {"end_turn": "end_turn", "stop_sequence": "stop_sequence", "max_tokens": "max_tokens",
                "tool_use": "tool_use", "cancelled": "end_turn", "content_filtered": "refusal",
                "guardrail_intervened": "refusal", "model_context_window_exceeded": "model_context_window_exceeded"}
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
DROPPED_BLOCKS = ("thinking", "redacted_thinking")
# The caller's name of a protocol block's field, after the path of the block it came from.
LEAVES = {"image": {"data": ".source.data", "format": ".source.media_type"}, "toolUse": {"toolUseId": ".id"},
          "toolResult": {"toolUseId": ".tool_use_id"}}
TOOL_LEAVES = {"inputSchema": ".input_schema"}





def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = require_object(block.get("source"), f"{where}.source")
    if source.get("type") != "base64":
        raise invalid(f"{where}.source.type", "only base64 image sources are supported")
    media_type = require_string(source.get("media_type"), f"{where}.source.media_type")
    if media_type not in IMAGE_FORMATS:
        raise invalid(f"{where}.source.media_type", f"{media_type!r} is not one of {', '.join(IMAGE_FORMATS)}")
    return {"type": "image", "format": IMAGE_FORMATS[media_type],
            "data": require_string(source.get("data"), f"{where}.source.data")}


def _tool_result_content(content: Any, where: str) -> Sourced:
    if content is None:
        return []
    if isinstance(content, str):
        return [(where, block) for block in text_blocks(content)]
    if not isinstance(content, list):
        raise invalid(where, "must be a string or an array of text and image blocks")
    blocks: Sourced = []
    for k, block in enumerate(content):
        at = f"{where}[{k}]"
        kind = require_object(block, at).get("type")
        if kind == "text":
            blocks += [(at, text) for text in text_blocks(require_string(block.get("text"), f"{at}.text"))]
        elif kind == "image":
            blocks.append((at, _image(block, at)))
        else:
            raise invalid(f"{at}.type", f"block type {kind!r} is not supported in a tool result (text, image)")
    return blocks


def _block(block: Any, where: str, role: str) -> list[tuple[dict[str, Any], Sourced]]:
    """One content block as protocol blocks, each with the blocks inside it (a tool result's) and their paths."""
    kind = require_object(block, where).get("type")
    nested: Sourced = []
    if kind == "text":
        converted = text_blocks(require_string(block.get("text"), f"{where}.text"))
    elif kind == "image" and role == "user":
        converted = [_image(block, where)]
    elif kind == "tool_use" and role == "assistant":
        converted = [{"type": "toolUse", "toolUseId": tool_use_id(block.get("id"), f"{where}.id"),
                      "name": require_string(block.get("name"), f"{where}.name"),
                      "input": require_object(block.get("input", {}), f"{where}.input")}]
    elif kind == "tool_result" and role == "user":
        nested = _tool_result_content(block.get("content"), f"{where}.content")
        converted = [{"type": "toolResult", "toolUseId": tool_use_id(block.get("tool_use_id"), f"{where}.tool_use_id"),
                      "status": "error" if block.get("is_error") else "success",
                      "content": [b for _, b in nested]}]
    elif kind in DROPPED_BLOCKS:
        return []
    else:
        raise invalid(f"{where}.type", f"block type {kind!r} is not supported in a {role} message")
    if converted and block.get("cache_control"):
        converted.append({"type": "cachePoint"})
    return [(b, nested) for b in converted]


def _messages(messages: Any, origins: Origins) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "must be a non-empty array")
    conversation: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = require_object(message, where).get("role")
        if role not in ("user", "assistant"):
            raise invalid(f"{where}.role", f"role {role!r} is not one of user, assistant")
        content = message.get("content")
        blocks: list[tuple[str, dict[str, Any], Sourced]]  # each with its caller's path, and its tool result's
        if isinstance(content, str):
            blocks = [(f"{where}.content", block, []) for block in text_blocks(content)]
        elif isinstance(content, list):
            blocks = [(f"{where}.content[{j}]", b, nested) for j, block in enumerate(content)
                      for b, nested in _block(block, f"{where}.content[{j}]", role)]
        else:
            raise invalid(f"{where}.content", "must be a string or an array of content blocks")
        if blocks:
            at = f"messages[{len(conversation)}]"
            origins.add(at, where)
            for j, (origin, block, nested) in enumerate(blocks):
                origins.add_block(f"{at}.content[{j}]", origin, block, LEAVES)
                for k, (inner_origin, inner) in enumerate(nested):
                    origins.add_block(f"{at}.content[{j}].content[{k}]", inner_origin, inner, LEAVES)
            conversation.append({"role": role, "content": [block for _, block, _ in blocks]})
        elif role == "user":
            raise invalid(f"{where}.content", "a user message must have some content")
    if conversation[0]["role"] != "user":
        raise invalid("messages", "the first message must use the user role")
    if conversation[-1]["role"] != "user":
        raise invalid("messages", "the last message must use the user role (assistant prefill is not supported)")
    return conversation


def _system(system: Any) -> str | None:
    if system is None:
        return None
    if isinstance(system, str):
        return system if system.strip() else None
    if not isinstance(system, list):
        raise invalid("system", "must be a string or an array of text blocks")
    texts = []
    for i, block in enumerate(system):
        if require_object(block, f"system[{i}]").get("type") != "text":
            raise invalid(f"system[{i}].type", "only text blocks are supported in system")
        texts.append(require_string(block.get("text"), f"system[{i}].text"))
    joined = "\n\n".join(t for t in texts if t.strip())
    return joined or None


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise invalid("tools", "must be an array")
    converted = []
    for i, tool in enumerate(tools):
        if require_object(tool, f"tools[{i}]").get("type") not in (None, "custom"):
            raise invalid(f"tools[{i}].type", f"server tool {tool.get('type')!r} is not supported; define it yourself")
        converted.append({"name": require_string(tool.get("name"), f"tools[{i}].name"),
                          "description": str(tool.get("description") or ""),
                          "inputSchema": require_object(tool.get("input_schema"), f"tools[{i}].input_schema")})
    return converted


def _tool_choice(choice: Any) -> Any:
    """Anthropic's tool_choice as the protocol's; None for `none` (the tools are left out)."""
    kind = require_object(choice, "tool_choice").get("type")
    if kind in ("auto", "any"):
        return kind
    if kind == "tool":
        return {"name": require_string(choice.get("name"), "tool_choice.name")}
    if kind == "none":
        return None
    raise invalid("tool_choice.type", "must be one of auto, any, tool, none")


def _conversation(body: Any) -> tuple[dict[str, Any], Origins]:
    """What both /v1/messages and count_tokens send (model, system, messages, tools), and the caller's names."""
    body = require_object(body, "body")
    origins = Origins({"maxTokens": "max_tokens", "toolChoice": "tool_choice", "toolChoice.name": "tool_choice.name",
                       "temperature": "temperature"})
    params: dict[str, Any] = {"model": require_string(body.get("model"), "model"),
                              "messages": _messages(body.get("messages"), origins)}
    system = _system(body.get("system"))
    if system is not None:
        params["system"] = system
    tools = _tools(body["tools"]) if body.get("tools") is not None else []
    choice = _tool_choice(body["tool_choice"]) if body.get("tool_choice") is not None else "auto"
    if choice not in ("auto", None) and not tools:
        raise invalid("tool_choice", "asks for a tool, but the request has no tools")
    if tools and choice is not None:
        params["tools"] = tools
        for i in range(len(tools)):
            origins.add(f"tools[{i}]", f"tools[{i}]", TOOL_LEAVES)
        if body.get("tool_choice") is not None:
            params["toolChoice"] = choice
    return params, origins


def _unsupported(body: dict[str, Any]) -> None:
    """Structured outputs (a JSON schema the reply must follow) cannot be had: a 400, as OpenAI's `response_format`,
    rather than a reply in free text that the caller fails to read (`output_format` is the beta's spelling)."""
    if body.get("output_format") is not None:
        raise invalid("output_format", "structured outputs (a JSON schema for the reply) are not supported")
    output_config = body.get("output_config")
    if output_config is not None and require_object(output_config, "output_config").get("format") is not None:
        raise invalid("output_config.format", "structured outputs (a JSON schema for the reply) are not supported")


def chat_call(body: Any) -> ChatCall:
    """A POST /v1/messages body as a ChatCall; ApiError 400 naming the field when it is wrong."""
    params, origins = _conversation(body)
    _unsupported(body)
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise invalid("max_tokens", "is required, a positive integer")
    params["maxTokens"] = max_tokens
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise invalid("temperature", "must be a number")
        params["temperature"] = temperature
    stops = body.get("stop_sequences")
    stops = [] if stops is None else stops
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("stop_sequences", "must be an array of strings")
    stream = optional_boolean(body.get("stream"), "stream")
    choice = body.get("tool_choice") or {}  # an object, _conversation checked
    one_call = optional_boolean(choice.get("disable_parallel_tool_use"), "tool_choice.disable_parallel_tool_use")
    return ChatCall(params=params, stream=stream, stop=tuple(s for s in stops if s), parallel_tool_calls=not one_call,
                    origins=origins)


def count_call(body: Any) -> ChatCall:
    """A POST /v1/messages/count_tokens body as the parameters of the backend's count (`params`)."""
    params, origins = _conversation(body)
    return ChatCall(params=params, origins=origins)


# --- answers ---------------------------------------------------------------------------------

def usage(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": usage.cache_write_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens}


class Message:
    """The events of one chat, gathered into a `message` object."""

    def __init__(self, request_id: str, model: str) -> None:
        self.id, self.model = f"msg_{request_id}", model
        self._content: list[dict[str, Any]] = []
        self._end: End | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, Text):
            if self._content and self._content[-1]["type"] == "text":
                self._content[-1]["text"] += event.text
            else:
                self._content.append({"type": "text", "text": event.text})
        elif isinstance(event, ToolCall):
            self._content.append({"type": "tool_use", "id": event.tool_use_id, "name": event.name,
                                  "input": event.input})
        else:
            self._end = event

    def body(self) -> dict[str, Any]:
        end = self._end or End("end_turn", Usage())
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": self._content, "stop_reason": STOP_REASONS.get(end.stop_reason, "end_turn"),
                "stop_sequence": end.stop_sequence, "usage": usage(end.usage)}


class EventStream:
    """The events of one chat as Anthropic's stream: (event name, data) pairs."""

    def __init__(self, request_id: str, model: str) -> None:
        self.id, self.model = f"msg_{request_id}", model
        self._index = -1
        self._open: str | None = None  # the type of the content block being streamed

    def start(self) -> list[tuple[str, dict[str, Any]]]:
        message: dict[str, Any] = {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage(Usage())}
        return [("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[tuple[str, dict[str, Any]]]:
        if self._open is None:
            return []
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def _begin(self, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events = self._close()
        self._index += 1
        self._open = block["type"]
        return [*events, ("content_block_start", {"type": "content_block_start", "index": self._index,
                                                  "content_block": block})]

    def _delta(self, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return ("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def events(self, event: Event) -> list[tuple[str, dict[str, Any]]]:
        if isinstance(event, Text):
            opening = [] if self._open == "text" else self._begin({"type": "text", "text": ""})
            return [*opening, self._delta({"type": "text_delta", "text": event.text})]
        if isinstance(event, ToolCall):
            opening = self._begin({"type": "tool_use", "id": event.tool_use_id, "name": event.name, "input": {}})
            return [*opening, self._delta({"type": "input_json_delta",
                                           "partial_json": json.dumps(event.input, ensure_ascii=False)}),
                    *self._close()]
        return [*self._close(),
                ("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": STOP_REASONS.get(event.stop_reason, "end_turn"),
                                             "stop_sequence": event.stop_sequence},
                                   "usage": usage(event.usage)}),
                ("message_stop", {"type": "message_stop"})]
