"""The registry of open WebSocket connections: who is behind each connection id."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chalicelib.times import iso


@dataclass(frozen=True)
class Connection:
    """An open connection and the verified identity behind it."""

    connection_id: str
    user_sub: str
    username: str
    groups: tuple[str, ...]
    token_expires_at: int
    connected_at: str
    endpoint: str  # the Management API endpoint that reaches this connection

    def token_expired(self, now: float) -> bool:
        return now >= self.token_expires_at


class ConnectionStore:
    """Connections in DynamoDB, keyed by connection id; the id is the only key a frame can use."""

    def __init__(self, table: Any, *, ttl_seconds: int) -> None:
        self._table = table
        self._ttl_seconds = ttl_seconds

    def add(self, *, connection_id: str, user_sub: str, username: str, groups: tuple[str, ...],
            token_expires_at: int, endpoint: str, now: float | None = None) -> Connection:
        now = time.time() if now is None else now
        connection = Connection(
            connection_id=connection_id,
            user_sub=user_sub,
            username=username,
            groups=tuple(groups),
            token_expires_at=int(token_expires_at),
            connected_at=iso(now),
            endpoint=endpoint,
        )
        self._table.put_item(Item={
            "connectionId": connection.connection_id,
            "userSub": connection.user_sub,
            "username": connection.username,
            "groups": list(connection.groups),
            "tokenExpiresAt": connection.token_expires_at,
            "connectedAt": connection.connected_at,
            "endpoint": connection.endpoint,
            "ttl": int(now) + self._ttl_seconds,
        })
        return connection

    def get(self, connection_id: str) -> Connection | None:
        item = self._table.get_item(Key={"connectionId": connection_id}, ConsistentRead=True).get("Item")
        if item is None:
            return None
        return Connection(
            connection_id=item["connectionId"],
            user_sub=item["userSub"],
            username=item["username"],
            groups=tuple(item.get("groups") or ()),
            token_expires_at=int(item["tokenExpiresAt"]),
            connected_at=item["connectedAt"],
            endpoint=item["endpoint"],
        )

    def remove(self, connection_id: str) -> None:
        self._table.delete_item(Key={"connectionId": connection_id})
