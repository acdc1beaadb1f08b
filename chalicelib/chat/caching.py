"""Prompt caching: where a Converse request asks Bedrock to cache its prefix.

For a model whose `promptCache` is true, Bedrock caches the prefix of a request up to each
cache point (tools, then system, then messages), at most four per request, and only a
prefix of at least the model's minimum (`minCacheTokens`, 1,024 for most Claude models)
is cached at all (Bedrock user guide, "Prompt caching"). What agents resend turn after turn
is the same system prompt and tools and an ever longer conversation, so the server adds, in
this order of value and while the limit allows:

1. a cache point at the end of the message before the last user message: the whole
   conversation so far, which the next turn sends again as its prefix;
2. a cache point at the end of the system prompt: the tools and the system prompt, which
   stay the same when the conversation starts over.

The client's own `cachePoint` blocks are kept where they are (one that starts a message, which
Bedrock refuses, marks the same prefix at the end of what comes before) and count first; a point of
the server's is left out where one already stands or where its prefix is under the model's
minimum (it would cost a slot and cache nothing). Tools get no cache point of their own:
the system point covers them, and Amazon Nova takes cache points only in system and messages.
"""
from __future__ import annotations

from typing import Any

from chalicelib.chat.conversation import CACHE_POINT
from chalicelib.chat.converse import block_tokens
from chalicelib.chat.tools import config_tokens
from chalicelib.models import MAX_CACHE_POINTS


def place_cache_points(request: dict[str, Any], *, min_tokens: int) -> None:
    """Add the server's cache points to a Converse request (in place), within Bedrock's limit."""
    _move_leading_points(request)
    messages = request["messages"]
    used = sum(1 for message in messages for block in message["content"] if "cachePoint" in block)
    tools_tokens = config_tokens(request.get("toolConfig") or {})
    system = request.get("system") or []
    system_tokens = tools_tokens + sum(block_tokens(block) for block in system)
    if used < MAX_CACHE_POINTS and len(messages) >= 2:
        before_last = messages[-2]["content"]
        prefix = system_tokens + sum(block_tokens(b) for m in messages[:-1] for b in m["content"])
        if prefix >= min_tokens and "cachePoint" not in before_last[-1]:
            before_last.append(dict(CACHE_POINT))
            used += 1
    if used < MAX_CACHE_POINTS and system and "cachePoint" not in system[-1] and system_tokens >= min_tokens:
        system.append(dict(CACHE_POINT))


def _move_leading_points(request: dict[str, Any]) -> None:
    """The client's cache points that start a message, where Bedrock takes them.

    Bedrock refuses a cache point with nothing before it in its message ("There is nothing available to
    cache"). The prefix it marks is everything before it, which is just as well marked at the end of the
    message before (or of the system prompt, for the first message): it moves there, unless a point already
    stands there; before the first message and without a system prompt there is nothing to cache, and it goes.
    """
    messages = request["messages"]
    for index, message in enumerate(messages):
        content = message["content"]
        while content and "cachePoint" in content[0]:  # never all of it: such a message is refused before
            content.pop(0)
            before = messages[index - 1]["content"] if index else request.get("system")
            if before and "cachePoint" not in before[-1]:
                before.append(dict(CACHE_POINT))
