"""`tools` and `toolChoice` of a chat.send, checked and turned into Converse's `toolConfig`.

Protocol shapes (docs/PROTOCOL.md): `tools` is `[{"name", "description", "inputSchema"}]`,
`toolChoice` is `"auto"` (the default), `"any"` or `{"name": "<tool>"}`. Converse's:
`{"tools": [{"toolSpec": {"name", "description", "inputSchema": {"json": schema}}}],
"toolChoice": {"auto": {}} | {"any": {}} | {"tool": {"name"}}}`. Every fault is a
BAD_REQUEST naming the field (`tools[3].inputSchema`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import BadRequest
from chalicelib.tokens import estimate_tokens

TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOOL_FIELDS = frozenset({"name", "description", "inputSchema"})
# The system prompt Anthropic adds to a request with tools, in tokens (the table "Pricing" of
# Anthropic's tool-use documentation: 346 for auto/none, 313 for any/tool with Claude 3.5-4).
# The reservation counts the larger.
TOOL_USE_SYSTEM_TOKENS = 346


@dataclass(frozen=True)
class ToolConfig:
    """The tools a chat offers the model, as Converse's `toolConfig`."""

    specs: tuple[dict[str, Any], ...]  # Converse toolSpec objects, in the client's order
    choice: dict[str, Any] | None  # Converse toolChoice, None for the default (auto)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(spec["toolSpec"]["name"] for spec in self.specs)

    def converse(self) -> dict[str, Any]:
        config: dict[str, Any] = {"tools": [dict(spec) for spec in self.specs]}
        if self.choice is not None:
            config["toolChoice"] = self.choice
        return config


def parse_tools(tools: Any, choice: Any, *, max_tools: int, model_has_tools: bool, model: str) -> ToolConfig | None:
    """The chat's ToolConfig, or None when it offers no tools (`tools` absent or empty, no `toolChoice`)."""
    if tools is None or tools == []:
        if choice is not None:
            raise BadRequest("'toolChoice' needs 'tools'")
        return None
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be a list")
    if not model_has_tools:
        raise BadRequest(f"model {model!r} does not take tools")
    if len(tools) > max_tools:
        raise BadRequest(f"'tools' has {len(tools)} tools; at most {max_tools} are allowed")
    specs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise BadRequest(f"'{where}' must be an object")
        unknown = set(tool) - _TOOL_FIELDS
        if unknown:
            raise BadRequest(f"'{where}' has an unknown field {sorted(unknown)[0]!r}")
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise BadRequest(f"'{where}.name' must be 1-64 characters of [A-Za-z0-9_-]")
        if name in seen:
            raise BadRequest(f"'{where}.name': another tool is named {name!r}")
        seen.add(name)
        spec: dict[str, Any] = {"name": name, "inputSchema": {"json": _schema(tool.get("inputSchema"), where)}}
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise BadRequest(f"'{where}.description' must be a string")
        if description and description.strip():  # Bedrock takes no description rather than a blank one
            spec["description"] = description
        specs.append({"toolSpec": spec})
    return ToolConfig(specs=tuple(specs), choice=_choice(choice, seen))


def _schema(schema: Any, where: str) -> dict[str, Any]:
    # A tool's input is an object, and Claude wants its schema to say so at the top (Anthropic's API
    # refuses a schema without it): one that does not say is given it, one that says otherwise is
    # refused. Beyond that, the schema is the model's to read.
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise BadRequest(f"'{where}.inputSchema' must be a JSON Schema object with \"type\": \"object\"")
    return schema if "type" in schema else {"type": "object", **schema}


def _choice(choice: Any, names: set[str]) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        return None if choice is None else {"auto": {}}
    if choice == "any":
        return {"any": {}}
    if isinstance(choice, dict) and set(choice) == {"name"}:
        if not isinstance(choice["name"], str) or choice["name"] not in names:  # a list cannot be looked up
            raise BadRequest("'toolChoice.name' names no tool of 'tools'")
        return {"tool": {"name": choice["name"]}}
    raise BadRequest("'toolChoice' must be \"auto\", \"any\" or {\"name\": \"<tool>\"}")


def config_tokens(config: dict[str, Any]) -> int:
    """The tokens a Converse `toolConfig` adds to the input: each spec as JSON, and the tool-use system prompt."""
    specs = [tool for tool in config.get("tools", ()) if "toolSpec" in tool]
    if not specs:
        return 0
    return TOOL_USE_SYSTEM_TOKENS + sum(estimate_tokens(json.dumps(tool, ensure_ascii=False)) for tool in specs)
