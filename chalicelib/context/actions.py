"""The context.* actions: parameters in, ContextStore calls, result frames out."""
from __future__ import annotations

from typing import Any

from chalicelib import protocol
from chalicelib.context.store import ContextStore
from chalicelib.dispatch.contract import ActionContext
from chalicelib.sessions.store import check_session_id

LIST_MAX = 1000


def _session_id(ctx: ActionContext) -> str | None:
    session_id = ctx.frame.params.string("sessionId")
    return None if session_id is None else check_session_id(session_id)


class ContextActions:
    def __init__(self, store: ContextStore) -> None:
        self._store = store

    def put(self, ctx: ActionContext) -> dict[str, Any]:
        params = ctx.frame.params
        path = params.path("path", required=True)
        content = params.string("content", required=True, allow_empty=True)
        data = self._store.put(ctx.connection.user_sub, path, content, session_id=_session_id(ctx))
        return protocol.result(ctx.frame.id, data)

    def upload_url(self, ctx: ActionContext) -> dict[str, Any]:
        params = ctx.frame.params
        path = params.path("path", required=True)
        size = params.integer("size", required=True, minimum=0, maximum=None)  # past the limit: PAYLOAD_TOO_LARGE
        data = self._store.upload_url(ctx.connection.user_sub, path, size, session_id=_session_id(ctx),
                                      content_type=params.string("contentType", max_length=200))
        return protocol.result(ctx.frame.id, data)

    def list_page(self, ctx: ActionContext) -> dict[str, Any]:
        params = ctx.frame.params
        prefix = params.string("prefix", allow_empty=True, max_length=1024)
        limit = params.integer("limit", minimum=1, maximum=LIST_MAX) or LIST_MAX
        items, cursor = self._store.page(ctx.connection.user_sub, prefix, session_id=_session_id(ctx),
                                         cursor=params.string("cursor"), limit=limit,
                                         budget_bytes=protocol.RESULT_BUDGET_BYTES)
        return protocol.result(ctx.frame.id, {"items": items, "cursor": cursor})

    def get(self, ctx: ActionContext) -> dict[str, Any]:
        path = ctx.frame.params.path("path", required=True)
        return protocol.result(ctx.frame.id, self._store.get(ctx.connection.user_sub, path,
                                                             session_id=_session_id(ctx)))

    def delete(self, ctx: ActionContext) -> dict[str, Any]:
        path = ctx.frame.params.path("path", required=True)
        self._store.delete(ctx.connection.user_sub, path, session_id=_session_id(ctx))
        return protocol.result(ctx.frame.id, {"deleted": True})
