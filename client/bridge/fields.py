"""Reading an OpenAI or Anthropic request's fields: each mistake a 400 that names the field."""
from __future__ import annotations

from typing import Any

from client.bridge.errors import invalid


def require_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(where, "must be an object")
    return value


def require_string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise invalid(where, "must be a string")
    return value


def text_blocks(text: str) -> list[dict[str, Any]]:
    """A protocol text block, or none for blank text: the protocol refuses blank text, both APIs allow it."""
    return [{"type": "text", "text": text}] if text.strip() else []
