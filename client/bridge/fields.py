"""Reading an OpenAI or Anthropic request's fields: each mistake a 400 that names the field."""
from __future__ import annotations

import hashlib
import re
from typing import Any

from client.bridge.errors import invalid

TOOL_USE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # Bedrock's (and the protocol's) toolUseId


def require_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(where, "must be an object")
    return value


def require_string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise invalid(where, "must be a string")
    return value


def optional_boolean(value: Any, where: str) -> bool:
    """A boolean field that may be left out or null (false); any other type is a 400, falsy or not."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(where, "must be a boolean")
    return value


def text_blocks(text: str) -> list[dict[str, Any]]:
    """A protocol text block, or none for blank text: the protocol refuses blank text, both APIs allow it."""
    return [{"type": "text", "text": text}] if text.strip() else []


def tool_use_id(value: Any, where: str) -> str:
    """A tool call's id as the protocol takes it (1-64 of [A-Za-z0-9_-], Bedrock's rule).

    Ids that another provider made may break it (Kimi's `functions.read:0`, long ones): such an id
    becomes its allowed characters and a hash of the whole, the same for the call and its result,
    so their pairing holds and two ids never become one.
    """
    tool_id = require_string(value, where)
    if TOOL_USE_ID.fullmatch(tool_id):
        return tool_id
    digest = hashlib.sha256(tool_id.encode("utf-8")).hexdigest()[:24]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', tool_id)[:39]}_{digest}"
