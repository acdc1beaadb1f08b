"""The session.* actions: parameters in, store calls, result frames out."""
from __future__ import annotations

import json
from typing import Any

from chalicelib import protocol
from chalicelib.errors import BadRequest
from chalicelib.sessions.store import Message, SessionStore, check_session_id

TITLE_MAX_CHARS = 200
DEFAULT_TITLE = "Untitled"
PAGE_MAX = 100
# A result frame must stay under API Gateway's 128 KiB message limit, with room to spare.
RESULT_BUDGET_BYTES = 120 * 1024


def session_create(ctx) -> dict[str, Any]:
    title = ctx.frame.params.string("title", max_length=TITLE_MAX_CHARS)
    title = _checked_title(title) if title else DEFAULT_TITLE
    session = ctx.services.sessions.create(ctx.connection.user_sub, title=title)
    return protocol.result(ctx.frame.id, {"session": session.wire()})


def session_update(ctx) -> dict[str, Any]:
    """Rename: `sessionId` and `title` (1-200 characters, no control characters) required."""
    params = ctx.frame.params
    session_id = check_session_id(params.string("sessionId", required=True))
    title = _checked_title(params.string("title", required=True, max_length=TITLE_MAX_CHARS) or "")
    if not title.strip():
        raise BadRequest("'title' must not be blank")
    session = ctx.services.sessions.rename(ctx.connection.user_sub, session_id, title=title)
    return protocol.result(ctx.frame.id, {"session": session.wire()})


def session_list(ctx) -> dict[str, Any]:
    params = ctx.frame.params
    limit = params.integer("limit", minimum=1, maximum=PAGE_MAX) or 20
    cursor = params.string("cursor")
    sessions, next_cursor = ctx.services.sessions.list(ctx.connection.user_sub, limit=limit, cursor=cursor)
    return protocol.result(ctx.frame.id, {"sessions": [s.wire() for s in sessions], "cursor": next_cursor})


def session_get(ctx) -> dict[str, Any]:
    """The session and its messages, oldest first, as many as fit one frame; `cursor` for the rest."""
    params = ctx.frame.params
    session_id = check_session_id(params.string("sessionId", required=True))
    limit = params.integer("limit", minimum=1, maximum=PAGE_MAX) or PAGE_MAX
    store: SessionStore = ctx.services.sessions
    session = store.require_session(ctx.connection.user_sub, session_id)
    messages, more = store.messages_page(ctx.connection.user_sub, session_id, cursor=params.string("cursor"),
                                         limit=limit)
    page: list[dict[str, Any]] = []
    used = _size(session.wire()) + 256
    last: Message | None = None
    for message in messages:
        wire = _wire_message(store, message)
        size = _size(wire)
        if page and used + size > RESULT_BUDGET_BYTES:
            more = True
            break
        page.append(wire)
        used += size
        last = message
    cursor = store.messages_cursor(last) if more and last is not None else None
    return protocol.result(ctx.frame.id, {"session": session.wire(), "messages": page, "cursor": cursor})


def session_delete(ctx) -> dict[str, Any]:
    session_id = check_session_id(ctx.frame.params.string("sessionId", required=True))
    ctx.services.sessions.delete(ctx.connection.user_sub, session_id)
    return protocol.result(ctx.frame.id, {"deleted": True})


def _checked_title(title: str) -> str:
    if any(ord(ch) < 0x20 or ch == "\x7f" for ch in title):
        raise BadRequest("'title' must not contain control characters")
    return title


def _wire_message(store: SessionStore, message: Message) -> dict[str, Any]:
    wire: dict[str, Any] = {"messageId": message.message_id, "role": message.role, "content": message.content,
                            "size": message.size, "createdAt": message.created_at, "requestId": message.request_id}
    if message.cancelled:
        wire["cancelled"] = True
    if message.content_key is not None:
        # Too large for a frame: the client fetches it with a short-lived presigned GET.
        wire["contentUrl"] = store.content_url(message)
    return wire


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
