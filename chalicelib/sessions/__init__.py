"""Sessions: a user's conversations, their messages and their history for the model.

The interface for chat (the worker gets the stores from `services`):

    sessions = services.sessions            # SessionStore
    sessions.require_session(user_sub, session_id) -> Session     # NOT_FOUND unless the caller's
    sessions.history_for(user_sub, session_id, token_limit) -> [{"role", "content"}]
        # the most recent messages fitting token_limit (HISTORY_TOKEN_LIMIT), oldest first,
        # starting with "user", roles alternating, ending with "assistant"; NOT_FOUND as above
    sessions.append_exchange(user_sub, session_id, request_id, prompt, reply, cancelled)
        # after the stream, also when cancelled (the partial reply, marked cancelled)

    context = services.context               # ContextStore (chalicelib/context_store.py)
    context.context_documents(user_sub, session_id, paths, token_limit) -> [(path, text)]
        # CONTEXT_TOKEN_LIMIT: PAYLOAD_TOO_LARGE past it; NOT_FOUND for a missing path;
        # BAD_REQUEST for a bad path or a file that is not UTF-8 text
    converse.build_converse_input(system=, history=, documents=, prompt=) -> {"messages", "system"?}
    converse.estimate_tokens(text), converse.input_tokens(request) for the reservation

`user_sub` is always `ctx.connection.user_sub`, never anything read from a frame.
"""
from __future__ import annotations

from chalicelib.sessions.store import Message, Session, SessionStore, check_session_id

__all__ = ["Message", "Session", "SessionStore", "check_session_id"]
