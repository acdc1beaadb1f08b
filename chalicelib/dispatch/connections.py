"""The registry of open WebSocket connections: who is behind each connection id."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.aws.dynamo import condition_failed, error_code
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


class ConnectionQuotaExceeded(Exception):
    """The user already holds their maximum of open connections (MAX_CONNECTIONS_PER_USER)."""


@dataclass(frozen=True)
class FrameCount:
    """A frame counted against its connection's window: the connection behind it, and the frames its
    current window holds now, this one included."""

    connection: Connection | None  # None: no such connection (gone, or never stored)
    frames: int
    window_ends: float  # epoch seconds


class ConnectionStore:
    """Connections in DynamoDB, keyed by connection id; the id is the only key a frame can use.

    Beside each connection's item, a user item (`connectionId` `user#<sub>`, never an API Gateway
    id, which holds no `#`) lists the user's open connections with the time each one ends at the
    latest (API Gateway closes every connection after two hours): `$connect` adds to it only below
    the user's cap, in one transaction with the connection's item and on condition that the list
    did not change since it was read, so concurrent handshakes cannot outrun the cap; `$disconnect`
    takes the connection out. A connection whose `$disconnect` never came (API Gateway delivers it
    on a best-effort basis) holds its place until its two hours have passed.

    Each frame is counted in its connection's item, in fixed windows (`count_frame`): the one
    UpdateItem that counts it also reads the connection, so the count costs no extra call.
    """

    def __init__(self, table: Any, *, ttl_seconds: int, max_per_user: int, frame_window_seconds: int) -> None:
        self._table = table
        self._ttl_seconds = ttl_seconds
        self._max_per_user = max_per_user
        self._frame_window = frame_window_seconds

    def add(self, *, connection_id: str, user_sub: str, username: str, groups: tuple[str, ...],
            token_expires_at: int, endpoint: str, now: float | None = None) -> Connection:
        """Store the connection; ConnectionQuotaExceeded when the user holds their maximum already."""
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
        ends = int(now) + self._ttl_seconds
        item = {
            "connectionId": connection.connection_id,
            "userSub": connection.user_sub,
            "username": connection.username,
            "groups": list(connection.groups),
            "tokenExpiresAt": connection.token_expires_at,
            "connectedAt": connection.connected_at,
            "endpoint": connection.endpoint,
            "ttl": ends,
        }
        client, name = self._table.meta.client, self._table.name
        for attempt in range(ADD_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 5)))  # full jitter: concurrent handshakes spread
            holder = self._table.get_item(Key={"connectionId": _user_key(user_sub)}, ConsistentRead=True).get("Item")
            version = int(holder["version"]) if holder else 0
            open_now = {cid: int(end) for cid, end in (holder or {}).get("open", {}).items() if int(end) > now}
            if len(open_now) >= self._max_per_user:
                raise ConnectionQuotaExceeded(f"{len(open_now)} connections are open")
            open_now[connection_id] = ends
            user = {"connectionId": _user_key(user_sub), "userSub": user_sub, "open": open_now,
                    "version": version + 1, "ttl": max(open_now.values())}
            try:
                client.transact_write_items(TransactItems=[
                    # The resource's client serialises Python values itself, as Table methods do.
                    {"Put": {"TableName": name, "Item": item}},
                    {"Put": {"TableName": name, "Item": user,
                             "ConditionExpression": "attribute_not_exists(version) OR version = :seen",
                             "ExpressionAttributeValues": {":seen": version}}},
                ])
            except ClientError as error:
                if error_code(error) == "TransactionCanceledException":
                    continue  # another handshake (or a disconnect) changed the list: read it again
                raise
            return connection
        raise ConnectionQuotaExceeded("the connection list kept changing")

    def get(self, connection_id: str) -> Connection | None:
        item = self._table.get_item(Key={"connectionId": connection_id}, ConsistentRead=True).get("Item")
        return None if item is None or "userSub" not in item or _is_user_key(connection_id) else _connection(item)

    def of_user(self, user_sub: str) -> list[Connection]:
        """The user's open connections, from their list in the user item (read consistently, so a
        connection stored a moment ago is there)."""
        holder = self._table.get_item(Key={"connectionId": _user_key(user_sub)}, ConsistentRead=True).get("Item")
        found = (self.get(connection_id) for connection_id in sorted((holder or {}).get("open", {})))
        return [connection for connection in found if connection is not None]

    def count_frame(self, connection_id: str, now: float) -> FrameCount:
        """Count one frame in the connection's current window and read the connection, in one call
        (two when the window is new)."""
        window = int(now // self._frame_window) * self._frame_window
        ends = window + self._frame_window
        if _is_user_key(connection_id):
            return FrameCount(None, 0, ends)
        for _ in range(ADD_ATTEMPTS):
            try:
                item = self._table.update_item(
                    Key={"connectionId": connection_id}, UpdateExpression="ADD frames :one",
                    ConditionExpression="frameWindow = :window",
                    ExpressionAttributeValues={":one": 1, ":window": window}, ReturnValues="ALL_NEW")["Attributes"]
                return FrameCount(_connection(item), int(item["frames"]), ends)
            except ClientError as error:
                if not condition_failed(error):
                    raise
            try:  # a new window (or no such connection: then nothing is written)
                item = self._table.update_item(
                    Key={"connectionId": connection_id}, UpdateExpression="SET frameWindow = :window, frames = :one",
                    ConditionExpression="attribute_exists(userSub) AND "
                                        "(attribute_not_exists(frameWindow) OR frameWindow < :window)",
                    ExpressionAttributeValues={":one": 1, ":window": window}, ReturnValues="ALL_NEW")["Attributes"]
                return FrameCount(_connection(item), 1, ends)
            except ClientError as error:
                if not condition_failed(error):
                    raise
            if self.get(connection_id) is None:
                return FrameCount(None, 0, ends)
            # Another frame of this connection opened the window between the two calls: count again.
        raise RuntimeError("the frame window kept changing")  # two concurrent writers settle within one retry

    def remove(self, connection_id: str) -> None:
        """Forget the connection, and take it out of its user's list."""
        old = self._table.delete_item(Key={"connectionId": connection_id}, ReturnValues="ALL_OLD").get("Attributes")
        if not old or "userSub" not in old:
            return
        try:
            self._table.update_item(
                Key={"connectionId": _user_key(old["userSub"])}, UpdateExpression="REMOVE #open.#id ADD version :one",
                ConditionExpression="attribute_exists(version)",
                ExpressionAttributeNames={"#open": "open", "#id": connection_id},
                ExpressionAttributeValues={":one": 1})
        except ClientError as error:
            if not condition_failed(error):
                raise


ADD_ATTEMPTS = 12  # each round of concurrent handshakes of one user lets one through


def _user_key(user_sub: str) -> str:
    return f"user#{user_sub}"


def _is_user_key(connection_id: str) -> bool:
    return connection_id.startswith("user#")


def _connection(item: dict[str, Any]) -> Connection:
    return Connection(
        connection_id=item["connectionId"],
        user_sub=item["userSub"],
        username=item["username"],
        groups=tuple(item.get("groups") or ()),
        token_expires_at=int(item["tokenExpiresAt"]),
        connected_at=item["connectedAt"],
        endpoint=item["endpoint"],
    )
