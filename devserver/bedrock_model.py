"""The Bedrock emulator's model: what a Converse request is checked against, counted as, and answered with.

Checks, as Bedrock makes them (each a ValidationException): messages that start with the user
and alternate; no blank text block; images Bedrock reads (decoded with Pillow, the format
their bytes really have, 3.75 MB and 8,000 px at most) and only for models that take images;
toolUse/toolResult blocks only with a `toolConfig`, every toolResult answering a toolUse of
the turn before and every toolUse answered in the turn after; at most four cache points, only
for models that cache prompts, and none as the first block of a message (Bedrock finds "nothing
available to cache" there).

Tokens: every text the model reads (text blocks, tool specs, tool inputs and results as JSON)
counted by the emulator's tokenizer (devserver/tokenizer.py: a tokenizer's rule, not a byte
estimate), an image `width * height / 750` after Claude's downscaling, in the order Bedrock
reads a request: tools, system, messages. CountTokens answers the same count.

Prompt cache: a cache point's prefix (everything before it) of at least the model's minimum
(1,024 tokens unless the model table says otherwise) is cached for five minutes from its last
use, per model. The longest cached prefix of a request is reported as `cacheReadInputTokens`;
the rest up to its last eligible cache point as `cacheWriteInputTokens`; `inputTokens` is what
is left, as Bedrock reports them.

The reply echoes the last user message's text. `[[tool:NAME {json}]]` there (NAME one of the
request's tools) makes the model call NAME with that input after the text before it; the
emulator streams the input in pieces, as Bedrock does, and stops with `tool_use`.

A `toolChoice` that asks for a tool is obeyed as Bedrock does it: "the model must request the
specified tool" (`{"tool": {"name"}}`), or "at least one tool" (`{"any": {}}`), and "no text is
generated". The call is the prompt's `[[tool:...]]` of such a tool when it has one, else a call of
the named tool (for `any`, the first tool) whose input is made from its `inputSchema`: its required
properties, each a plausible value of its JSON type.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from chalicelib.models import builtin
from devserver.tokenizer import count_tokens, split_tokens

CACHE_SECONDS = 300
DEFAULT_MIN_CACHE_TOKENS = 1024
MAX_CACHE_POINTS = 4
MAX_IMAGE_BYTES = 3_750_000
MAX_IMAGE_SIDE = 8000
KEPT_PREFIXES = 4096
TOOL_PIECE_CHARS = 8  # Bedrock streams a tool's input JSON in pieces of a few characters
# A forced tool call's made-up input stays small whatever its schema asks (a minLength of 10**9 is not made).
EXAMPLE_CHARS = 1000
EXAMPLE_ITEMS = 16
_TOOL_DIRECTIVE = re.compile(r"\[\[tool:([A-Za-z0-9_-]{1,64})\s+(\{.*?\})\]\]", re.DOTALL)
_PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "GIF": "gif", "WEBP": "webp"}


class Invalid(Exception):
    """A request Bedrock refuses with ValidationException; the message is Bedrock's kind of message."""


@dataclass(frozen=True)
class ToolCall:
    tool_use_id: str
    name: str
    pieces: list[str]  # the input's JSON, as streamed (cut short by maxTokens: the reply stops with max_tokens)
    tokens: int


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    cache_read_input_tokens: int
    cache_write_input_tokens: int

    def wire(self, output_tokens: int) -> dict[str, int]:
        total = self.input_tokens + self.cache_read_input_tokens + self.cache_write_input_tokens + output_tokens
        return {"inputTokens": self.input_tokens, "outputTokens": output_tokens, "totalTokens": total,
                "cacheReadInputTokens": self.cache_read_input_tokens,
                "cacheWriteInputTokens": self.cache_write_input_tokens}


@dataclass
class Reading:
    """A request read in Bedrock's order: its tokens so far, its running hash, its cache points' prefixes."""

    model_id: str
    tokens: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    prefixes: list[tuple[int, str]] = field(default_factory=list)  # (tokens, key) at each cache point
    images: int = 0

    def read(self, block: Any, tokens: int) -> None:
        self.tokens += tokens
        self.digest.update(json.dumps(block, sort_keys=True, ensure_ascii=False).encode("utf-8"))

    def cache_point(self) -> None:
        key = hashlib.sha256(f"{self.model_id}\0{self.digest.copy().hexdigest()}".encode()).hexdigest()
        self.prefixes.append((self.tokens, key))


def json_tokens(value: Any) -> int:
    """The tokens of a JSON value as the model reads it (compact, its punctuation a token each)."""
    return count_tokens(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


class PromptCache:
    """Prefixes seen in the last five minutes, per model (the emulator's own memory, bounded)."""

    def __init__(self, *, clock: Any = time.monotonic) -> None:
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._clock = clock

    def usage(self, reading: Reading, *, min_tokens: int) -> Usage:
        now = self._clock()
        eligible = [(tokens, key) for tokens, key in reading.prefixes if tokens >= min_tokens]
        read = max((tokens for tokens, key in eligible if self._expiry.get(key, 0.0) > now), default=0)
        written = max((tokens for tokens, _ in eligible), default=0)
        for _, key in eligible:  # a hit or a write keeps the prefix for five more minutes
            self._expiry[key] = now + CACHE_SECONDS
            self._expiry.move_to_end(key)
        while len(self._expiry) > KEPT_PREFIXES:
            self._expiry.popitem(last=False)
        total = reading.tokens
        write = max(0, written - read)
        return Usage(input_tokens=total - read - write, cache_read_input_tokens=read, cache_write_input_tokens=write)


def texts(blocks: Any) -> list[str]:
    return [b["text"] for b in blocks or [] if isinstance(b, dict) and isinstance(b.get("text"), str)]


def read_request(model_id: str, request: dict[str, Any]) -> Reading:
    """Check the request as Bedrock does (Invalid) and read it in its order: tools, system, messages."""
    spec = builtin(model_id)
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages must not be empty")
    reading = Reading(model_id)
    tool_config = request.get("toolConfig")
    tool_names = _tools(tool_config, reading)
    for index, block in enumerate(request.get("system") or []):
        _block(block, f"system.{index}", reading)
    calls_before: set[str] = set()
    for m, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        expected = "user" if m % 2 == 0 else "assistant"
        if role != expected:
            raise Invalid("A conversation must start with a user message and alternate between user and "
                          "assistant roles. Try again with a conversation that alternates.")
        content = message.get("content") or []
        if not content:
            raise Invalid(f"The content field in the Message object at messages.{m} is empty.")
        if isinstance(content[0], dict) and "cachePoint" in content[0]:  # it caches what precedes it in its message
            raise Invalid("There is nothing available to cache.")
        calls = [b["toolUse"]["toolUseId"] for b in content if isinstance(b, dict) and "toolUse" in b]
        results = [b["toolResult"]["toolUseId"] for b in content if isinstance(b, dict) and "toolResult" in b]
        if (calls or results) and tool_names is None:
            raise Invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
        if set(results) - calls_before or (role == "user" and calls_before - set(results)):
            raise Invalid(f"The toolResult blocks at messages.{m}.content do not match the toolUse blocks of the "
                          "previous turn.")
        calls_before = set(calls)
        for c, block in enumerate(content):
            _block(block, f"messages.{m}.content.{c}", reading)
    points = len(reading.prefixes)
    if points > MAX_CACHE_POINTS:
        raise Invalid(f"The request has {points} cache points; the maximum is {MAX_CACHE_POINTS}.")
    if points and spec is not None and not spec.prompt_cache:
        raise Invalid("You invoked an unsupported model or your request did not allow prompt caching. "
                      "See the documentation for more information.")
    if reading.images and spec is not None and not spec.images:
        raise Invalid("This model doesn't support the image content block that you provided.")
    return reading


def min_cache_tokens(model_id: str) -> int:
    spec = builtin(model_id)
    return spec.min_cache_tokens if spec is not None else DEFAULT_MIN_CACHE_TOKENS


def _tools(config: Any, reading: Reading) -> set[str] | None:
    if config is None:
        return None
    tools = config.get("tools") if isinstance(config, dict) else None
    if not isinstance(tools, list) or not tools:
        raise Invalid("The toolConfig field must hold at least one tool.")
    names: set[str] = set()
    for tool in tools:
        if isinstance(tool, dict) and "cachePoint" in tool:
            reading.cache_point()
            continue
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if not isinstance(spec, dict) or not isinstance((spec.get("inputSchema") or {}).get("json"), dict):
            raise Invalid("Each tool needs a toolSpec with an inputSchema.json object.")
        names.add(spec["name"])
        reading.read(spec, json_tokens(spec))
    choice = config.get("toolChoice") or {}
    if "tool" in choice and choice["tool"].get("name") not in names:
        raise Invalid("The tool named in toolChoice is not in toolConfig.tools.")
    return names


def _block(block: Any, where: str, reading: Reading) -> None:
    if not isinstance(block, dict):
        raise Invalid(f"The ContentBlock at {where} is not an object.")
    if "cachePoint" in block:
        reading.cache_point()
    elif "text" in block:
        if not block["text"].strip():
            raise Invalid(f"The text field in the ContentBlock object at {where} is blank. "
                          "Add text to the text field, and try again.")
        reading.read(block, count_tokens(block["text"]))
    elif "image" in block:
        reading.images += 1
        reading.read(block, _image_tokens(block["image"], where))
    elif "toolUse" in block:
        use = block["toolUse"]
        reading.read(block, count_tokens(use["name"]) + json_tokens(use["input"]))
    elif "toolResult" in block:
        for index, item in enumerate(block["toolResult"].get("content") or []):
            _block(item, f"{where}.toolResult.content.{index}", reading)
    elif "json" in block:
        reading.read(block, json_tokens(block["json"]))
    else:
        raise Invalid(f"The ContentBlock at {where} has no content this emulator knows.")


def _image_tokens(image: dict[str, Any], where: str) -> int:
    try:
        data = base64.b64decode(image["source"]["bytes"], validate=True)
    except (KeyError, TypeError, binascii.Error, ValueError):
        raise Invalid(f"The image at {where} has no valid bytes.") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise Invalid(f"The image at {where} exceeds the maximum size of 3.75 MB.")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            kind, (width, height) = _PIL_FORMATS.get(opened.format or ""), opened.size
    except (UnidentifiedImageError, OSError):
        raise Invalid(f"The image at {where} could not be processed.") from None
    if kind != image.get("format"):
        raise Invalid(f"The format of the image at {where} does not match its bytes.")
    if max(width, height) > MAX_IMAGE_SIDE:
        raise Invalid(f"The image at {where} exceeds the maximum of 8000 pixels a side.")
    scale = min(1.0, 1568 / max(width, height))
    return min(1600, max(1, math.ceil(width * scale * height * scale / 750)))


def tool_calls(prompt: str, tool_names: set[str] | None) -> tuple[str, list[tuple[str, str]]]:
    """The text before the first `[[tool:NAME {json}]]` of an offered tool, and each such call (name, JSON)."""
    calls: list[tuple[str, str]] = []
    cut = None
    for match in _TOOL_DIRECTIVE.finditer(prompt):
        name, raw = match.group(1), match.group(2)
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if tool_names is None or name not in tool_names or not isinstance(value, dict):
            continue
        cut = match.start() if cut is None else cut
        calls.append((name, json.dumps(value, ensure_ascii=False, separators=(",", ":"))))
    return (prompt if cut is None else prompt[:cut]), calls


def make_calls(calls: list[tuple[str, str]], budget: int) -> tuple[list[ToolCall], bool]:
    """The tool calls within `budget` output tokens; True if one was cut short by it."""
    made: list[ToolCall] = []
    for name, text in calls:
        split = split_tokens(text)
        tokens = len(split)
        cut = tokens > budget
        if cut:
            text, tokens = "".join(split[:budget]), budget
        pieces = [text[i:i + TOOL_PIECE_CHARS] for i in range(0, len(text), TOOL_PIECE_CHARS)]
        made.append(ToolCall(f"tooluse_{secrets.token_urlsafe(16)}", name, pieces, tokens))
        budget -= tokens
        if cut:
            return made, True
    return made, False


def forced_calls(request: dict[str, Any], calls: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """The calls a `toolChoice` of `tool` or `any` makes the model answer with (no text with them), from the prompt's
    `calls` (name, JSON) of a tool it allows or else one made from the tool's `inputSchema`; None for `auto`."""
    config = request.get("toolConfig")
    if not isinstance(config, dict) or not isinstance(config.get("toolChoice"), dict):
        return None
    choice = config["toolChoice"]
    if not {"tool", "any"} & set(choice):
        return None
    specs = [tool["toolSpec"] for tool in config.get("tools") or [] if "toolSpec" in tool]
    named = choice["tool"].get("name") if "tool" in choice else None
    chosen = [call for call in calls if named is None or call[0] == named]
    if chosen:
        return chosen
    spec = next((s for s in specs if named is None or s["name"] == named), None)  # a named one: read_request checked
    if spec is None:  # `any` among no tool specs (cache points only): nothing to call
        return None
    schema = spec["inputSchema"]["json"]
    value = example(schema, schema)
    return [(spec["name"], json.dumps(value if isinstance(value, dict) else {}, ensure_ascii=False,
                                      separators=(",", ":")))]


def example(schema: Any, root: Any, name: str = "value", depth: int = 0) -> Any:
    """A plausible value of a JSON Schema, as a model fills a tool's input: an object's required properties only; a
    `const`, `default`, `enum` or `examples` value where there is one; numbers within their bounds; strings within
    their lengths; local `$ref`s followed, `anyOf`/`oneOf`/`allOf` by their first schema (depth-bound: a recursive
    schema ends in null)."""
    if not isinstance(schema, dict) or depth > 16:
        return None
    reference = schema.get("$ref")
    if isinstance(reference, str) and reference.startswith("#/"):
        target: Any = root
        for part in reference[2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
        return example(target, root, name, depth + 1)
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    for key in ("enum", "examples"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema[key][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example(schema[key][0], root, name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        return {key: example(properties.get(key, {}), root, key, depth + 1) for key in required}
    if kind == "array":
        count = min(max(1, _size(schema, "minItems", 0)), _size(schema, "maxItems", EXAMPLE_ITEMS))
        return [example(schema.get("items", {}), root, name, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"example {name}".ljust(_size(schema, "minLength", 0), "x")[:_size(schema, "maxLength", EXAMPLE_CHARS)]


def _size(schema: dict[str, Any], key: str, default: int) -> int:
    """A length bound of the schema (minItems, maxLength, ...): a count, within what an example is made of."""
    value = schema.get(key)
    size = value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
    return min(size, EXAMPLE_CHARS if key.endswith("Length") else EXAMPLE_ITEMS)


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    """A number the schema's bounds allow: a bound itself, else the midpoint of the two, else 1 or 0 where they fit,
    else one past a bound; bounds that allow none (a schema no model could satisfy) give the lower one."""
    low, low_open = _bound(schema, "minimum", "exclusiveMinimum")
    high, high_open = _bound(schema, "maximum", "exclusiveMaximum")

    def fits(x: float) -> bool:
        return (low is None or x > low or (x == low and not low_open)) and \
            (high is None or x < high or (x == high and not high_open))
    ends = [end for end in (low, high) if end is not None]
    candidates = [*ends, *([(ends[0] + ends[1]) / 2] if len(ends) == 2 else []), 1, 0,
                  *(end + step for end in ends for step in (1, -1))]
    if integer:
        candidates = [whole(c) for c in candidates for whole in (math.ceil, math.floor)]
    found = next((c for c in candidates if fits(c)), ends[0] if ends else 1)
    return int(found) if integer else float(found)


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str) -> tuple[float | None, bool]:
    """A number's bound and whether it is exclusive: draft 6's numeric `exclusive*`, or draft 4's `inclusive` with
    `exclusive*: true`."""
    value, flag = schema.get(inclusive), schema.get(exclusive)
    if isinstance(flag, int | float) and not isinstance(flag, bool):
        return flag, True
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value, flag is True
    return None, False


def tool_names_of(request: dict[str, Any]) -> set[str] | None:
    config = request.get("toolConfig")
    if not isinstance(config, dict):
        return None
    return {tool["toolSpec"]["name"] for tool in config.get("tools") or [] if "toolSpec" in tool}


def dump(model_id: str, request: dict[str, Any]) -> str:
    """The request as the model got it: system and messages (text, and every block where there is more
    than text), inference and tool configuration."""
    messages = []
    for message in request.get("messages") or []:
        content = message.get("content") or []
        entry = {"role": message.get("role"), "text": "".join(texts(content))}
        if any("text" not in block for block in content):
            entry["content"] = content
        messages.append(entry)
    seen: dict[str, Any] = {"modelId": model_id, "system": texts(request.get("system")), "messages": messages,
                            "inferenceConfig": request.get("inferenceConfig") or {}}
    system = request.get("system") or []
    if any("text" not in block for block in system):
        seen["systemContent"] = system
    if request.get("toolConfig"):
        seen["toolConfig"] = request["toolConfig"]
    return json.dumps(seen, ensure_ascii=False)
