"""Where each field of a `chat.send` came from in the caller's request, to name it in the backend's errors.

The backend names the field of the request it received, the bridge's: `'messages[0].content[1].data'
is not valid base64`. The caller sent other names (`image_url.url`, `tool_call_id`, `max_tokens`) and,
where the bridge left out system messages and blank texts or turned tool calls into blocks, other
indexes. `Origins` maps the one onto the other.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from client.bridge.errors import ApiError

QUOTED_PATH = re.compile(r"'([A-Za-z]\w*(?:\[\d+\]|\.\w+)*)'")
Sourced = list[tuple[str, dict[str, Any]]]  # protocol blocks, each with the caller's path of what it came from


class Origins:
    """Protocol paths (`messages[2].content[0]`, `maxTokens`) and the caller's names of them."""

    def __init__(self, names: Mapping[str, str] | None = None) -> None:
        self._names: dict[str, str] = dict(names or {})

    def add(self, path: str, origin: str, leaves: Mapping[str, str] | None = None) -> None:
        """`path` came from the caller's `origin`; each of its `leaves` (`data`) is `origin` + the leaf's suffix."""
        self._names[path] = origin
        for leaf, suffix in (leaves or {}).items():
            self._names[f"{path}.{leaf}"] = origin + suffix

    def add_block(self, path: str, origin: str, block: Mapping[str, Any],
                  leaves: Mapping[str, Mapping[str, str]]) -> None:
        """A protocol block at `path` from the caller's `origin`, its fields named by `leaves[its type]`; a text
        block from a string `content` is that string (`messages[0].content`, not `messages[0].content.text`)."""
        string = block["type"] == "text" and origin.endswith(".content")
        self.add(path, origin, {"text": ""} if string else leaves.get(block["type"]))

    def name(self, path: str) -> str | None:
        """The caller's name of a protocol path (its longest known prefix, renamed); None when none is known."""
        cut = len(path)
        while cut > 0:
            if path[:cut] in self._names:
                return self._names[path[:cut]] + path[cut:]
            cut = max(path.rfind(".", 0, cut), path.rfind("[", 0, cut))
        return None

    def rename(self, error: ApiError) -> ApiError:
        """The backend's error with each quoted path it names in the caller's terms; `param` the first of them."""
        named: list[str] = []

        def caller_name(match: re.Match[str]) -> str:
            name = self.name(match[1])
            if name is None:
                return match[0]
            named.append(name)
            return f"'{name}'"

        message = QUOTED_PATH.sub(caller_name, error.message)
        if not named:
            return error
        return ApiError(error.status, error.code, message, retry_after=error.retry_after, param=named[0])
