"""OpenAI Chat Completions: a request into `chat.send` parameters, the chat's events into its answers.

Request fields as IDE-BRIDGE.md lists them; fields OpenAI knows but we cannot honour (`n` > 1,
`logprobs`, audio, a `response_format` other than text) are a 400 naming the field; any other
field is ignored, as OpenAI ignores what it does not know.
"""
from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

from client.bridge.errors import invalid
from client.bridge.fields import optional_boolean, require_object, require_string, text_blocks, tool_use_id
from client.bridge.origins import Origins, Sourced
from client.bridge.reply import ChatCall, End, Event, Text, ToolCall, Usage

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "cancelled": "stop", "max_tokens": "length",
                  "model_context_window_exceeded": "length",
                  "tool_use": "tool_calls", "content_filtered": "content_filter",
                  "guardrail_intervened": "content_filter"}
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)
MAX_STOP_SEQUENCES = 4
# The caller's name of a protocol block's field, after the path of the part, call or message it came from.
LEAVES = {"image": {"data": ".image_url.url", "format": ".image_url.url"},
          "toolUse": {"toolUseId": ".id", "name": ".function.name", "input": ".function.arguments"},
          "toolResult": {"toolUseId": ".tool_call_id"}}
TOOL_LEAVES = {"name": ".function.name", "description": ".function.description", "inputSchema": ".function.parameters"}
# The first bytes of each format Bedrock reads (the WebP's RIFF header holds its name at byte 8).
MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF87a", "gif"), (b"GIF89a", "gif"))





def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    match = DATA_URL.fullmatch(require_string(url, f"{where}.image_url.url"))
    if not match:
        raise invalid(f"{where}.image_url.url", "only data: URLs (data:image/png;base64,...) are supported")
    image_format = IMAGE_FORMATS.get(match["type"].lower())
    if image_format is None:
        raise invalid(f"{where}.image_url.url", f"image type {match['type']!r} is not one of png, jpeg, gif, webp")
    data = "".join(match["data"].split())
    return {"type": "image", "format": _sniffed(data) or image_format, "data": data}


def _sniffed(data: str) -> str | None:
    """The format an image's bytes say, whatever its data: URL says: OpenAI reads a JPEG sent as image/png
    (clients name the type after a file's name or the clipboard's), Bedrock refuses the mismatch."""
    try:
        head = base64.b64decode(data[:16] + "=" * (-len(data[:16]) % 4))
    except ValueError:  # binascii.Error is one
        return None  # not base64: the backend says so, naming the block
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((name for magic, name in MAGIC if head.startswith(magic)), None)


def _content(content: Any, where: str, *, images: bool) -> Sourced:
    """A message's `content` (a string or parts) as protocol blocks, each with the caller's path of it."""
    if content is None:
        return []
    if isinstance(content, str):
        return [(f"{where}.content", block) for block in text_blocks(content)]
    if not isinstance(content, list):
        raise invalid(f"{where}.content", "must be a string or an array of content parts")
    blocks: Sourced = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = require_object(part, at).get("type")
        if kind == "text":
            blocks += [(at, block) for block in text_blocks(require_string(part.get("text"), f"{at}.text"))]
        elif kind == "refusal":
            blocks += [(at, block) for block in text_blocks(require_string(part.get("refusal"), f"{at}.refusal"))]
        elif kind == "image_url" and images:
            blocks.append((at, _image(part, at)))
        else:
            allowed = "text and image_url" if images else "text"
            raise invalid(f"{at}.type", f"content part type {kind!r} is not supported here (only {allowed})")
    return blocks


def _tool_uses(tool_calls: Any, where: str) -> Sourced:
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list):
        raise invalid(f"{where}.tool_calls", "must be an array")
    blocks: Sourced = []
    for j, call in enumerate(tool_calls):
        at = f"{where}.tool_calls[{j}]"
        function = require_object(require_object(call, at).get("function"), f"{at}.function")
        arguments = function.get("arguments") or "{}"
        try:
            parsed = json.loads(require_string(arguments, f"{at}.function.arguments"))
        except ValueError:
            raise invalid(f"{at}.function.arguments", "must be a JSON object in a string") from None
        if not isinstance(parsed, dict):
            raise invalid(f"{at}.function.arguments", "must be a JSON object in a string")
        blocks.append((at, {"type": "toolUse", "toolUseId": tool_use_id(call.get("id"), f"{at}.id"),
                            "name": require_string(function.get("name"), f"{at}.function.name"), "input": parsed}))
    return blocks


def _messages(messages: Any, origins: Origins) -> tuple[list[dict[str, Any]], list[str]]:
    """The conversation as protocol messages, and the system and developer messages' texts."""
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "must be a non-empty array")
    conversation: list[dict[str, Any]] = []
    system: list[str] = []

    def append(role: str, blocks: Sourced, where: str) -> None:
        at = f"messages[{len(conversation)}]"
        origins.add(at, where)
        for j, (origin, block) in enumerate(blocks):
            origins.add_block(f"{at}.content[{j}]", origin, block, LEAVES)
        conversation.append({"role": role, "content": [block for _, block in blocks]})

    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = require_object(message, where).get("role")
        if role in ("system", "developer"):
            system += [b["text"] for _, b in _content(message.get("content"), where, images=False)]
        elif role == "user":
            blocks = _content(message.get("content"), where, images=True)
            if not blocks:
                raise invalid(f"{where}.content", "a user message must have some content")
            append("user", blocks, where)
        elif role == "assistant":
            blocks = _content(message.get("content"), where, images=False) + _tool_uses(message.get("tool_calls"),
                                                                                          where)
            if blocks:  # an empty assistant turn says nothing to the model
                append("assistant", blocks, where)
        elif role == "tool":
            result = [block for _, block in _content(message.get("content"), where, images=False)]
            append("user", [(where, {
                "type": "toolResult", "toolUseId": tool_use_id(message.get("tool_call_id"), f"{where}.tool_call_id"),
                "status": "success", "content": result})], where)
        else:
            raise invalid(f"{where}.role", f"role {role!r} is not one of system, developer, user, assistant, tool")
    if not conversation or conversation[0]["role"] != "user":
        raise invalid("messages", "the conversation must begin with a user message (after any system messages)")
    if conversation[-1]["role"] != "user":
        raise invalid("messages", "the conversation must end with a user or tool message")
    return conversation, system


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise invalid("tools", "must be an array")
    converted = []
    for i, tool in enumerate(tools):
        if require_object(tool, f"tools[{i}]").get("type") != "function":
            raise invalid(f"tools[{i}].type", "only function tools are supported")
        function = require_object(tool.get("function"), f"tools[{i}].function")
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        converted.append({"name": require_string(function.get("name"), f"tools[{i}].function.name"),
                          "description": str(function.get("description") or ""),
                          "inputSchema": require_object(schema, f"tools[{i}].function.parameters")})
    return converted


def _tool_choice(choice: Any, *, has_tools: bool) -> Any:
    """OpenAI's tool_choice as the protocol's toolChoice; None for `none` (the tools are left out).

    One that asks for a tool (`required`, a named function) without tools is a 400, as OpenAI's."""
    if choice in ("auto", "none"):
        return "auto" if choice == "auto" else None
    if choice == "required":
        converted: Any = "any"
    elif isinstance(choice, dict) and choice.get("type") == "function":
        converted = {"name": require_string(require_object(choice.get("function"), "tool_choice.function").get(
            "name"), "tool_choice.function.name")}
    else:
        raise invalid("tool_choice", "must be 'auto', 'required', 'none' or {'type': 'function', 'function': {'name'}}")
    if not has_tools:
        raise invalid("tool_choice", "asks for a tool, but the request has no tools")
    return converted


def _unsupported(body: dict[str, Any]) -> None:
    if body.get("n") not in (None, 1):
        raise invalid("n", "only one choice (n = 1) is supported")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise invalid("logprobs" if body.get("logprobs") else "top_logprobs", "log probabilities are not supported")
    if body.get("audio") is not None or "audio" in (body.get("modalities") or []):
        raise invalid("audio" if body.get("audio") is not None else "modalities", "audio output is not supported")
    for legacy in ("functions", "function_call"):  # deprecated by OpenAI; dropped, the model would not see them
        if body.get(legacy) is not None:
            raise invalid(legacy, "deprecated function calling is not supported; send `tools` and `tool_choice`")
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, dict) or response_format.get("type") != "text"):
        raise invalid("response_format", "only the 'text' response format is supported")


def _positive_integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(where, "must be a positive integer")
    return value


def _stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("stop", "must be a string or an array of strings")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise invalid("stop", f"at most {MAX_STOP_SEQUENCES} stop sequences")
    return tuple(s for s in stops if s)


def chat_call(body: Any) -> ChatCall:
    """A POST /v1/chat/completions body as a ChatCall; ApiError 400 naming the field when it is wrong."""
    body = require_object(body, "body")
    _unsupported(body)
    origins = Origins({"toolChoice": "tool_choice", "toolChoice.name": "tool_choice.function.name",
                       "temperature": "temperature"})
    conversation, system = _messages(body.get("messages"), origins)
    params: dict[str, Any] = {"messages": conversation}
    if body.get("model") is not None:
        params["model"] = require_string(body["model"], "model")
    if system:
        params["system"] = "\n\n".join(system)
    tools = _tools(body["tools"]) if body.get("tools") is not None else []
    choice = _tool_choice(body["tool_choice"], has_tools=bool(tools)) if body.get("tool_choice") is not None else None
    if tools and body.get("tool_choice") != "none":
        params["tools"] = tools
        for i in range(len(tools)):
            origins.add(f"tools[{i}]", f"tools[{i}]", TOOL_LEAVES)
        if choice is not None:
            params["toolChoice"] = choice
    for name in ("max_completion_tokens", "max_tokens"):
        if body.get(name) is not None:
            params["maxTokens"] = _positive_integer(body[name], name)
            origins.add("maxTokens", name)
            break
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise invalid("temperature", "must be a number")
        params["temperature"] = temperature
    stream = optional_boolean(body.get("stream"), "stream")
    options = body.get("stream_options")
    options = {} if options is None else require_object(options, "stream_options")
    include_usage = stream and optional_boolean(options.get("include_usage"), "stream_options.include_usage")
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid("parallel_tool_calls", "must be a boolean")
    return ChatCall(params=params, stream=stream, stop=_stop(body.get("stop")), include_usage=include_usage,
                    parallel_tool_calls=parallel is not False, origins=origins)


# --- answers ---------------------------------------------------------------------------------

def usage(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cache_read_input_tokens}}


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.tool_use_id, "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.input, ensure_ascii=False)}}


class Completion:
    """The events of one chat, gathered into a `chat.completion` object."""

    def __init__(self, request_id: str, model: str, created: int | None = None) -> None:
        self.id, self.model, self.created = f"chatcmpl-{request_id}", model, created or int(time.time())
        self._text: list[str] = []
        self._calls: list[dict[str, Any]] = []
        self._end: End | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, Text):
            self._text.append(event.text)
        elif isinstance(event, ToolCall):
            self._calls.append(_tool_call(event))
        else:
            self._end = event

    def body(self) -> dict[str, Any]:
        end = self._end or End("end_turn", Usage())
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._text) or None, "refusal": None}
        if self._calls:
            message["tool_calls"] = self._calls
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": FINISH_REASONS.get(end.stop_reason, "stop")}],
                "usage": usage(end.usage)}


class ChunkStream:
    """The events of one chat as `chat.completion.chunk` objects (each one server-sent event)."""

    def __init__(self, request_id: str, model: str, *, include_usage: bool, created: int | None = None) -> None:
        self.id, self.model, self.created = f"chatcmpl-{request_id}", model, created or int(time.time())
        self._include_usage = include_usage
        self._tool_index = 0

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def start(self) -> dict[str, Any]:
        return self._chunk({"role": "assistant", "content": ""})

    def chunks(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, Text):
            return [self._chunk({"content": event.text})]
        if isinstance(event, ToolCall):
            index, self._tool_index = self._tool_index, self._tool_index + 1
            return [self._chunk({"tool_calls": [{"index": index, **_tool_call(event)}]})]
        chunks = [self._chunk({}, FINISH_REASONS.get(event.stop_reason, "stop"))]
        if self._include_usage:
            chunks.append({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                           "model": self.model, "choices": [], "usage": usage(event.usage)})
        return chunks


def models(listed: list[dict[str, Any]], created: int) -> dict[str, Any]:
    """GET /v1/models from `models.list`; `owned_by` is the provider part of the Bedrock model id."""
    return {"object": "list", "data": [{"id": m["id"], "object": "model", "created": created,
                                        "owned_by": _provider(m["id"])} for m in listed]}


def _provider(model_id: str) -> str:
    parts = model_id.split(".")
    # Cross-region inference profiles put a geography first: us.anthropic.claude-...
    if len(parts) > 2 and parts[0] in ("us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"):
        parts = parts[1:]
    return parts[0] if len(parts) > 1 else "llm-ide"
