"""Sessions and their messages in DynamoDB, large message content in S3.

Items (table `sessions`, infra/resources.py), all in the caller's partition:
  pk "USER#<sub>", sk "SESSION#<id>"                 the session (title, createdAt, updatedAt)
  pk "USER#<sub>", sk "SESSION#<id>#MSG#<message id>" one message (role, content or contentKey)
The sparse index `byUpdated` (pk, updatedAt) lists sessions newest first.

A session idle for SESSION_TTL_DAYS (no activity since `updatedAt`) is gone for its
user at once: reads answer NOT_FOUND and it is no longer listed, although DynamoDB's
TTL sweep deletes its items only later (up to a day or two).

Every item of a session carries the same `ttl`. When activity finds less than
SESSION_TTL_DAYS left, the TTL of every item moves to now + TTL + one day and the
session's objects in S3 are re-written (restarting their lifecycle clock), so a
sweep happens at most once a day per active session.

Deleting a session and writing into it may run at once; nothing written into it may
outlive it. `delete` first marks the session item (`deleting`, one conditional
UpdateItem): from then on the session is NOT_FOUND to everything but another `delete`,
and every write into it is refused. Then it deletes the session's objects, its
messages, and the session item last; a delete that fails half-way leaves the mark, and
the next `delete` finishes it. A writer checks that the session is live before it
writes, as before, and checks again after (`require_session`, a consistent read): a
write made after the delete listed what to delete is found by that second check, and
undone by its writer, who answers NOT_FOUND. (The delete lists after it has marked,
DynamoDB's consistent reads and S3's listings see every write acknowledged before them:
either the delete's listing sees the write, or the write's second check sees the mark
or no session at all.) TTL updates are conditional on the item existing, so they never
bring a deleted item back. What no code of ours writes (a presigned upload landing
after the delete) is removed by the next recount of the user's storage
(chalicelib/context/quota.py asks `live_sessions`).
"""
from __future__ import annotations

import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, NamedTuple

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib import cursors, protocol
from chalicelib.aws.dynamo import condition_failed, get_many, items, update_if
from chalicelib.aws.objects import SESSION_TAGGING, ObjectStore, session_root
from chalicelib.chat.converse import alternating
from chalicelib.errors import BadRequest, NotFound
from chalicelib.sessions.history import message_tokens, select_recent
from chalicelib.times import iso

logger = logging.getLogger(__name__)

SESSION_ID = re.compile(r"[0-9a-f]{32}")
MESSAGE_ID = re.compile(r"\d{13}-\d-[0-9a-f]{8}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
REFRESH_SLACK_SECONDS = 86400
# How long past its idle expiry a session may still be revived: an activity's update is conditional on the `now`
# it read before sending it (`updatedAt > now - TTL`), so one that read its clock just before the expiry lands
# after it, as late as its Lambda's run allows (15 minutes at most), and hosts' clocks differ. Only a session
# idle past its TTL and this is sure never to be live again (live_sessions).
REVIVAL_SLACK_SECONDS = 3600
MESSAGE_CONTENT_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Session:
    session_id: str
    title: str
    created_at: str
    updated_at: str

    def wire(self) -> dict[str, str]:
        return {"sessionId": self.session_id, "title": self.title, "createdAt": self.created_at,
                "updatedAt": self.updated_at}


@dataclass(frozen=True)
class Message:
    message_id: str
    role: str
    content: str | None  # None when the content is offloaded to `content_key`
    content_key: str | None
    size: int  # bytes of UTF-8 content
    created_at: str
    request_id: str
    cancelled: bool


def check_session_id(session_id: str) -> str:
    if not SESSION_ID.fullmatch(session_id):
        raise BadRequest("'sessionId' is not a session id")
    return session_id


def _pk(user_sub: str) -> str:
    return f"USER#{user_sub}"


def _session_sk(session_id: str) -> str:
    return f"SESSION#{check_session_id(session_id)}"


def _session_key(user_sub: str, session_id: str) -> dict[str, str]:
    return {"pk": _pk(user_sub), "sk": _session_sk(session_id)}


def _messages_prefix(session_id: str) -> str:
    return f"{_session_sk(session_id)}#MSG#"


class SessionStore:
    def __init__(self, table: Any, objects: ObjectStore, *, ttl_days: int, inline_max_bytes: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._objects = objects
        self._ttl_seconds = ttl_days * 86400
        self._inline_max_bytes = inline_max_bytes
        self._clock = clock

    # --- sessions ---------------------------------------------------------

    def create(self, user_sub: str, *, title: str) -> Session:
        now = self._clock()
        session = Session(session_id=uuid.uuid4().hex, title=title, created_at=iso(now), updated_at=iso(now))
        self._table.put_item(Item={
            "pk": _pk(user_sub), "sk": _session_sk(session.session_id), "sessionId": session.session_id,
            "title": title, "createdAt": session.created_at, "updatedAt": session.updated_at,
            "ttl": int(now) + self._ttl_seconds + REFRESH_SLACK_SECONDS,
        }, ConditionExpression="attribute_not_exists(sk)")
        return session

    def require_session(self, user_sub: str, session_id: str) -> Session:
        """The caller's session, or NOT_FOUND (also when it is someone else's, idle past its TTL, or being
        deleted). A consistent read: a writer's check after its write sees a delete begun before it."""
        item = self._table.get_item(Key=_session_key(user_sub, session_id), ConsistentRead=True).get("Item")
        if item is None or not self._live(item):
            raise NotFound("no such session")
        return _session(item)

    def live_sessions(self, user_sub: str, session_ids: Collection[str]) -> set[str]:
        """Which of the caller's session ids name a session that is, or may still become, live: not deleted, not
        being deleted, and not idle past its TTL by more than REVIVAL_SLACK_SECONDS (activity begun before its
        expiry may still land and revive it). Read consistently with BatchGetItem, 100 ids a call. A session
        left out never becomes live again: what is stored under it may be removed."""
        ids = sorted(set(session_ids))
        live: set[str] = set()
        for start in range(0, len(ids), 100):
            named = [(session_id, _session_key(user_sub, session_id)) for session_id in ids[start:start + 100]]
            found = get_many(self._table.meta.client, self._table.name, named)
            live.update(session_id for session_id, item in found.items()
                        if item is not None and self._live(item, slack_seconds=REVIVAL_SLACK_SECONDS))
        return live

    def page(self, user_sub: str, *, limit: int, cursor: str | None) -> tuple[list[Session], str | None]:
        """One page of the caller's sessions, most recently updated first."""
        kwargs: dict[str, Any] = {"IndexName": "byUpdated", "KeyConditionExpression": Key("pk").eq(_pk(user_sub)),
                                  "ScanIndexForward": False, "Limit": limit + 1}
        if cursor:
            position = cursors.decode(cursor, {"u": _TIME, "s": SESSION_ID})
            kwargs["ExclusiveStartKey"] = {"pk": _pk(user_sub), "sk": _session_sk(position["s"]),
                                           "updatedAt": position["u"]}
        live = (_session(item) for item in items(self._table.query, **kwargs) if self._live(item))
        sessions = list(islice(live, limit + 1))
        if len(sessions) <= limit:
            return sessions, None
        last = sessions[limit - 1]
        return sessions[:limit], cursors.encode({"u": last.updated_at, "s": last.session_id})

    def delete(self, user_sub: str, session_id: str) -> None:
        """The session, its messages, offloaded content and session-scoped context: marked `deleting` first (so
        every writer is refused, or undoes its write), then its objects, its messages, the session item last.
        NOT_FOUND unless it is the caller's live session or one whose delete failed half-way (which this one
        finishes)."""
        now = self._clock()
        marked = update_if(
            self._table.update_item, Key=_session_key(user_sub, session_id),
            UpdateExpression="SET deleting = if_not_exists(deleting, :now)",
            ConditionExpression="attribute_exists(sk) AND (attribute_exists(deleting) OR updatedAt > :idle_since)",
            ExpressionAttributeValues={":now": iso(now), ":idle_since": iso(now - self._ttl_seconds)})
        if not marked:
            raise NotFound("no such session")
        removed = self._objects.delete_prefix(session_root(user_sub, session_id))
        count = 0
        with self._table.batch_writer() as batch:
            for item in self._items(user_sub, _messages_prefix(session_id), projection="pk, sk"):
                batch.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
                count += 1
        self._table.delete_item(Key=_session_key(user_sub, session_id))
        logger.info("session deleted", extra={"messages": count, "objects": removed})

    # --- messages ---------------------------------------------------------

    def messages_page(self, user_sub: str, session_id: str, *, cursor: str | None,
                      limit: int) -> tuple[list[Message], bool]:
        """Up to `limit` messages, oldest first, after the cursor; and whether more follow."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(_pk(user_sub)) & Key("sk").begins_with(_messages_prefix(session_id)),
            "Limit": limit + 1, "ConsistentRead": True}
        if cursor:
            position = cursors.decode(cursor, {"m": MESSAGE_ID})
            kwargs["ExclusiveStartKey"] = {"pk": _pk(user_sub), "sk": _messages_prefix(session_id) + position["m"]}
        messages = [_message(item) for item in islice(items(self._table.query, **kwargs), limit + 1)]
        return messages[:limit], len(messages) > limit

    @staticmethod
    def messages_cursor(message: Message) -> str:
        return cursors.encode({"m": message.message_id})

    def content(self, message: Message) -> str:
        if message.content_key is None:
            return message.content or ""
        body, _ = self._objects.get(message.content_key)
        return body.decode("utf-8")

    def content_url(self, message: Message) -> str:
        assert message.content_key is not None
        return self._objects.presign_get(message.content_key)

    def history_for(self, user_sub: str, session_id: str, token_limit: int,
                    message_limit: int | None = None) -> list[dict[str, str]]:
        """The most recent messages fitting `token_limit` (and `message_limit`), oldest first, as Bedrock wants
        them: [{"role": "user"|"assistant", "content": str}], starting with user, roles alternating."""
        self.require_session(user_sub, session_id)
        newest_first = (_message(item) for item in self._items(user_sub, _messages_prefix(session_id), forward=False))
        picked = select_recent(newest_first, token_limit, message_limit)
        return alternating([{"role": m.role, "content": self.content(m)} for m in picked])

    def history_size(self, user_sub: str, session_id: str, token_limit: int) -> HistorySize:
        """The tokens and the number of messages of what `history_for(..., token_limit)` would pick, from the
        messages' sizes alone (no content is read, offloaded or not). NOT_FOUND unless the session is the
        caller's. `history_for` called with the result as its limits picks no more than that, whatever was
        appended in between."""
        self.require_session(user_sub, session_id)
        sized = self._items(user_sub, _messages_prefix(session_id), forward=False, projection="#r, #s",
                            names={"#r": "role", "#s": "size"})
        picked = select_recent((_Sized(item["role"], int(item["size"])) for item in sized), token_limit)
        return HistorySize(tokens=sum(message_tokens(message) for message in picked), messages=len(picked))

    def append_exchange(self, user_sub: str, session_id: str, request_id: str, prompt: str, reply: str,
                        cancelled: bool) -> None:
        """Record a prompt and its reply (also a partial one, marked cancelled). NOT_FOUND, and nothing left
        stored, if the session is gone or is deleted meanwhile; the session's updatedAt and TTL move forward."""
        now = self._clock()
        expires = self.touch(user_sub, session_id, now=now)
        millis = int(now * 1000)
        written: list[dict[str, Any]] = []
        try:
            for index, (role, content) in enumerate((("user", prompt), ("assistant", reply))):
                message_id = f"{millis:013d}-{index}-{secrets.token_hex(4)}"
                written.append(self._put_message(user_sub, session_id, message_id, role=role, content=content,
                                                 now=now, request_id=request_id,
                                                 cancelled=cancelled and role == "assistant", expires=expires))
            self.require_session(user_sub, session_id)  # deleted while we wrote? (module docstring)
        except NotFound:
            self._undo(written)
            raise

    def touch(self, user_sub: str, session_id: str, *, now: float | None = None) -> int:
        """Mark activity: updatedAt moves to now, the TTL of all items forward if due. Returns the TTL."""
        return int(self._update(user_sub, session_id, now=self._clock() if now is None else now)["ttl"])

    def rename(self, user_sub: str, session_id: str, *, title: str) -> Session:
        """Set the caller's session's title; a rename is activity (updatedAt, TTL), as a chat is.
        NOT_FOUND if the session is not the caller's, or idle past its TTL."""
        return _session(self._update(user_sub, session_id, now=self._clock(), title=title))

    # --- internals --------------------------------------------------------

    def _update(self, user_sub: str, session_id: str, *, now: float, title: str | None = None) -> dict[str, Any]:
        """updatedAt (and the title, if given) of a live session; the TTL of all items forward if
        due. Returns the session item as it now is."""
        assignments, values = ["updatedAt = :now"], {":now": iso(now), ":idle_since": iso(now - self._ttl_seconds)}
        if title is not None:
            assignments.append("title = :title")
            values[":title"] = title
        try:
            item = self._table.update_item(
                Key=_session_key(user_sub, session_id),
                UpdateExpression="SET " + ", ".join(assignments),
                # An idle-expired session is not revived by new activity (ISO times sort as text), nor is one
                # being deleted.
                ConditionExpression="attribute_exists(sk) AND attribute_not_exists(deleting) AND "
                                    "updatedAt > :idle_since",
                ExpressionAttributeValues=values, ReturnValues="ALL_NEW")["Attributes"]
        except ClientError as exc:
            if condition_failed(exc):
                raise NotFound("no such session") from None
            raise
        expires = int(item["ttl"])
        if expires - now < self._ttl_seconds:
            item["ttl"] = int(now) + self._ttl_seconds + REFRESH_SLACK_SECONDS
            self._extend(user_sub, session_id, item["ttl"])
        return item

    def _live(self, item: dict[str, Any], *, slack_seconds: int = 0) -> bool:
        """A session item of a session that is neither being deleted nor idle past its TTL (and `slack_seconds`)."""
        return "deleting" not in item and item["updatedAt"] > iso(self._clock() - self._ttl_seconds - slack_seconds)

    def _put_message(self, user_sub: str, session_id: str, message_id: str, *, role: str, content: str,
                     now: float, request_id: str, cancelled: bool, expires: int) -> dict[str, Any]:
        """Write one message (its content first, when offloaded); returns its item."""
        data = content.encode("utf-8")
        item: dict[str, Any] = {"pk": _pk(user_sub), "sk": _messages_prefix(session_id) + message_id, "role": role,
                                "size": len(data), "createdAt": iso(now), "requestId": request_id, "ttl": expires}
        if cancelled:
            item["cancelled"] = True
        # Measured as sent in a frame: JSON escaping can grow text (a control character to 6 bytes).
        if protocol.encoded_size(content) > self._inline_max_bytes:
            key = f"{session_root(user_sub, session_id)}messages/{message_id}"
            self._objects.put(key, data, content_type=MESSAGE_CONTENT_TYPE, tagging=SESSION_TAGGING)
            item["contentKey"] = key
        else:
            item["content"] = content
        self._table.put_item(Item=item)
        return item

    def _undo(self, written: list[dict[str, Any]]) -> None:
        """Delete messages written into a session that was deleted meanwhile, their offloaded content first. A
        failure is logged: what is left expires (items by their TTL, objects by the lifecycle rule or the next
        recount of the user's storage)."""
        try:
            keys = [item["contentKey"] for item in written if "contentKey" in item]
            if keys:
                self._objects.delete_keys(keys)
            for item in written:
                self._table.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
        except Exception:
            logger.exception("removing messages of a deleted session failed", extra={"messages": len(written)})

    def _extend(self, user_sub: str, session_id: str, expires: int) -> None:
        for item in self._items(user_sub, _session_sk(session_id), projection="pk, sk"):
            # Only an item that still exists: an update would otherwise create it (a session deleted meanwhile).
            update_if(self._table.update_item, Key={"pk": item["pk"], "sk": item["sk"]},
                      UpdateExpression="SET #t = :t", ConditionExpression="attribute_exists(sk)",
                      ExpressionAttributeNames={"#t": "ttl"}, ExpressionAttributeValues={":t": expires})
        self._objects.refresh(session_root(user_sub, session_id))

    def _items(self, user_sub: str, sk_prefix: str, *, forward: bool = True, projection: str | None = None,
               names: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(_pk(user_sub)) & Key("sk").begins_with(sk_prefix),
            "ScanIndexForward": forward, "ConsistentRead": True}
        if projection:
            kwargs["ProjectionExpression"] = projection
        if names:
            kwargs["ExpressionAttributeNames"] = names
        return items(self._table.query, **kwargs)


class HistorySize(NamedTuple):
    """How much of a session's history a chat reads: tokens (in the app's measure of 4 bytes a token, so
    at most 4 times as many bytes) and messages."""

    tokens: int
    messages: int


@dataclass(frozen=True)
class _Sized:
    """A message known by its role and size only (for history_size)."""

    role: str
    size: int


def _session(item: dict[str, Any]) -> Session:
    return Session(session_id=item["sessionId"], title=item["title"], created_at=item["createdAt"],
                   updated_at=item["updatedAt"])


def _message(item: dict[str, Any]) -> Message:
    return Message(message_id=item["sk"].rsplit("#", 1)[1], role=item["role"], content=item.get("content"),
                   content_key=item.get("contentKey"), size=int(item["size"]), created_at=item["createdAt"],
                   request_id=item["requestId"], cancelled=bool(item.get("cancelled")))
