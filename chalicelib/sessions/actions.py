"""The session.* actions: parameters in, SessionStore calls, result frames out."""
from __future__ import annotations

import unicodedata
from typing import Any

from chalicelib import protocol
from chalicelib.dispatch.contract import ActionContext
from chalicelib.errors import BadRequest
from chalicelib.sessions.store import Message, SessionStore, check_session_id

TITLE_MAX_CHARS = 200
DEFAULT_TITLE = "Untitled"
PAGE_MAX = 100


class SessionActions:
    def __init__(self, store: SessionStore) -> None:
        self._store = store

    def create(self, ctx: ActionContext) -> dict[str, Any]:
        title = ctx.frame.params.string("title", max_length=TITLE_MAX_CHARS)
        session = self._store.create(ctx.connection.user_sub, title=_checked_title(title) if title else DEFAULT_TITLE)
        return protocol.result(ctx.frame.id, {"session": session.wire()})

    def update(self, ctx: ActionContext) -> dict[str, Any]:
        """Rename: `sessionId` and `title` (1-200 characters, not blank, no control characters) required."""
        params = ctx.frame.params
        session_id = check_session_id(params.string("sessionId", required=True))
        title = _checked_title(params.string("title", required=True, max_length=TITLE_MAX_CHARS))
        session = self._store.rename(ctx.connection.user_sub, session_id, title=title)
        return protocol.result(ctx.frame.id, {"session": session.wire()})

    def list_page(self, ctx: ActionContext) -> dict[str, Any]:
        params = ctx.frame.params
        limit = params.integer("limit", minimum=1, maximum=PAGE_MAX) or 20
        cursor = params.string("cursor")
        sessions, next_cursor = self._store.page(ctx.connection.user_sub, limit=limit, cursor=cursor)
        return protocol.result(ctx.frame.id, {"sessions": [s.wire() for s in sessions], "cursor": next_cursor})

    def get(self, ctx: ActionContext) -> dict[str, Any]:
        """The session and its messages, oldest first, as many as fit one frame; `cursor` for the rest."""
        params = ctx.frame.params
        session_id = check_session_id(params.string("sessionId", required=True))
        limit = params.integer("limit", minimum=1, maximum=PAGE_MAX) or PAGE_MAX
        store = self._store
        session = store.require_session(ctx.connection.user_sub, session_id)
        messages, more = store.messages_page(ctx.connection.user_sub, session_id, cursor=params.string("cursor"),
                                             limit=limit)
        page: list[dict[str, Any]] = []
        used = protocol.encoded_size(session.wire()) + 256
        last: Message | None = None
        for message in messages:
            wire = _wire_message(store, message)
            size = protocol.encoded_size(wire)
            if page and used + size > protocol.RESULT_BUDGET_BYTES:
                more = True
                break
            page.append(wire)
            used += size
            last = message
        cursor = store.messages_cursor(last) if more and last is not None else None
        return protocol.result(ctx.frame.id, {"session": session.wire(), "messages": page, "cursor": cursor})

    def delete(self, ctx: ActionContext) -> dict[str, Any]:
        session_id = check_session_id(ctx.frame.params.string("sessionId", required=True))
        self._store.delete(ctx.connection.user_sub, session_id)
        return protocol.result(ctx.frame.id, {"deleted": True})


def _checked_title(title: str) -> str:
    """A title as session.create and session.update take it (the string is already 1-200 characters): one line
    (no control character, C0 or C1, and no line or paragraph separator) with something to see (not only
    white space and invisible format characters such as a zero-width space)."""
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in title):
        raise BadRequest("'title' must be one line, without control characters")
    if all(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in title):
        raise BadRequest("'title' must not be blank")
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
