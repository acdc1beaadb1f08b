"""The context.* actions: parameters in, ContextStore calls, result frames out."""
from __future__ import annotations

from typing import Any

from chalicelib import protocol
from chalicelib.sessions.actions import RESULT_BUDGET_BYTES
from chalicelib.sessions.store import check_session_id

LIST_MAX = 1000


def _session_id(ctx) -> str | None:
    session_id = ctx.frame.params.string("sessionId")
    return None if session_id is None else check_session_id(session_id)


def context_put(ctx) -> dict[str, Any]:
    params = ctx.frame.params
    path = params.path("path", required=True)
    content = params.string("content", required=True, allow_empty=True)
    data = ctx.services.context.put(ctx.connection.user_sub, path, content, session_id=_session_id(ctx))
    return protocol.result(ctx.frame.id, data)


def context_upload_url(ctx) -> dict[str, Any]:
    params = ctx.frame.params
    path = params.path("path", required=True)
    store = ctx.services.context
    size = params.integer("size", required=True, minimum=0, maximum=2 ** 53)
    data = store.upload_url(ctx.connection.user_sub, path, size, session_id=_session_id(ctx),
                            content_type=params.string("contentType", max_length=200))
    return protocol.result(ctx.frame.id, data)


def context_list(ctx) -> dict[str, Any]:
    params = ctx.frame.params
    prefix = params.string("prefix", allow_empty=True, max_length=1024)
    limit = params.integer("limit", minimum=1, maximum=LIST_MAX) or LIST_MAX
    items, cursor = ctx.services.context.list(ctx.connection.user_sub, prefix, session_id=_session_id(ctx),
                                              cursor=params.string("cursor"), limit=limit,
                                              budget_bytes=RESULT_BUDGET_BYTES)
    return protocol.result(ctx.frame.id, {"items": items, "cursor": cursor})


def context_get(ctx) -> dict[str, Any]:
    path = ctx.frame.params.path("path", required=True)
    return protocol.result(ctx.frame.id, ctx.services.context.get(ctx.connection.user_sub, path,
                                                                  session_id=_session_id(ctx)))


def context_delete(ctx) -> dict[str, Any]:
    path = ctx.frame.params.path("path", required=True)
    ctx.services.context.delete(ctx.connection.user_sub, path, session_id=_session_id(ctx))
    return protocol.result(ctx.frame.id, {"deleted": True})
