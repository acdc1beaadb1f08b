"""Sessions: a user's conversations, their messages and their history for the model.

`SessionStore` (store.py) keeps them in DynamoDB (large messages in S3); the
`session.*` actions (actions.py) serve them; `history.py` picks which messages the
model sees. Chat reaches the store only through its `HistorySource` protocol
(chalicelib/chat/inputs.py): `history_size` and `history_for` size and load a
session's recent turns within HISTORY_TOKEN_LIMIT, and `append_exchange` records a
prompt and its reply. `user_sub` is always the verified caller's, never anything
read from a frame.
"""
from __future__ import annotations

from chalicelib.sessions.store import HistorySize, Message, Session, SessionStore, check_session_id

__all__ = ["HistorySize", "Message", "Session", "SessionStore", "check_session_id"]
