"""Each user's storage quota: the bytes and the number of their context files, counted atomically.

What counts: every context file of the user, their own (`users/<sub>/context/`) and their
sessions' (`users/<sub>/sessions/<id>/context/`), whether written by `context.put` or
uploaded to a presigned URL. The count lives in one item of the usage table
(pk `USER#<sub>`, sk `STORAGE`; infra/resources.py):

  bytes, files   the files S3 held at the last recount, plus every write reserved since
  pending        the writes reserved since that recount that may still land, by kind and key (`p`
                 and a hash of the key for a put; `u`, the hash and the length for a presigned
                 upload): what each added when reserved (`d` bytes, `n` 1 for a new file), when it
                 was reserved (`t`), and its whole size (`s`: the put's, or the length the URL
                 binds). A put is forgotten once it is written; an upload may land, or land again,
                 as long as its URL lives, so it is kept until then, whether it landed or not, and
                 after that until a recount lists its path at its length or more (an upload still
                 on its way then adds nothing), or PENDING_SLACK_SECONDS more have passed
  reconciledAt   when S3 was last counted (epoch seconds)
  released       a file was deleted since: the next refusal recounts at once
  version        moves on every write, so a recount stores its result only if nothing came between

A write reserves before it writes, in one conditional UpdateItem (the new total within the
quota, the count recounted within a day), so concurrent writes cannot pass the quota
together; a presigned upload is reserved when its URL is signed (and handed out only once
reserved), since the length its signature binds is all it can add. Nothing subtracts between
recounts (a presigned URL can put back what a delete took away, as long as it lives): a
deleted, shrunk or expired file (`context.delete`, `session.delete`, the lifecycle rules) leaves
the count until the next recount, which lists the user's prefix and runs when a write would not fit (at once after a
`context.delete`, else at most every RECOUNT_GAP_SECONDS), when the count is a day old,
when there is none yet, and when MAX_PENDING writes wait and one of them is dead (else at most
every RECOUNT_GAP_SECONDS too: the refusal's retryAfter says when the earliest may free up). A
write that adds nothing (an overwrite no larger than the file) is recorded like any other, but
only the MAX_PENDING cap can refuse it. A recount holds, for each path with
writes that may still land, what the largest of them would add to what is listed there now (and a
file, if none is): a put or URL that overwrote a file deleted since, or a URL whose file was
deleted after it landed, can still store its whole size. So the count is never below what S3 holds or can be
made to hold, and a user is refused only once a fresh count says the write does not fit. (One race is left: an
upload begun before its URL expired and still on its way, into a file deleted after the recount that dropped the
URL, lands uncounted until the next recount: at most its length, once, and only past the URL's life.)

What S3 holds under a session that is no longer live (deleted, being deleted, or idle past
its TTL by more than the hour in which activity begun before its expiry may still revive it:
SessionStore.live_sessions, read after the listing) is not the user's any more: an upload
through a URL handed out before a `session.delete` that landed after it, or a write whose
undo failed. A recount neither counts nor keeps it: it deletes those objects (of any kind,
offloaded messages too) and counts the rest. Such a session never becomes live again, so
nothing of a live session is removed.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from botocore.exceptions import ClientError

from chalicelib.aws.dynamo import condition_failed
from chalicelib.aws.objects import ObjectStore, StoredObject, user_root
from chalicelib.errors import AppError, QuotaExceeded
from chalicelib.sessions.store import SESSION_ID

logger = logging.getLogger(__name__)

SORT_KEY = "STORAGE"
RECOUNT_GAP_SECONDS = 10  # a refused user's files are recounted at most this often
RECOUNT_AGE_SECONDS = 86400  # a count older than this is recounted before the next write
MAX_PENDING = 300  # writes remembered between recounts (about 20 KB of the item)
PENDING_SLACK_SECONDS = 300  # an upload started just before its URL expired may still be landing
LANDED_SKEW_SECONDS = 5  # S3's clock against Lambda's, when telling whether a write has landed
_RECOUNT_ATTEMPTS = 3
_HASH_LENGTH = 20  # hex digits of a key's hash in a pending write's name
_NAMES = {"#b": "bytes", "#f": "files", "#p": "pending", "#r": "reconciledAt", "#v": "version"}
_TRUE = {"BOOL": True}


class LiveSessions(Protocol):
    """Which sessions still own what is stored under them (the SessionStore)."""

    def live_sessions(self, user_sub: str, session_ids: Collection[str]) -> set[str]:
        """The ids among `session_ids` of the user's sessions that are, or may still become, live; one left out
        never becomes live again."""
        ...


class StorageQuota:
    def __init__(self, dynamodb: Any, table_name: str, objects: ObjectStore, sessions: LiveSessions, *,
                 max_bytes: int, max_files: int, url_seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._dynamodb = dynamodb  # a low-level client: the failed condition's item comes back typed
        self._table_name = table_name
        self._objects = objects
        self._sessions = sessions
        self.max_bytes = max_bytes
        self.max_files = max_files
        # A URL is signed before its write is reserved (ContextStore.upload_url), within the second `t` was read in:
        # S3 accepts it until `t` + this, at the latest, on S3's clock.
        self._url_seconds = url_seconds + 1 + LANDED_SKEW_SECONDS
        self._pending_seconds = url_seconds + PENDING_SLACK_SECONDS  # how long a write may take to land
        self._clock = clock

    def reserve(self, user_sub: str, key: str, *, size: int, old_size: int | None, upload: bool) -> None:
        """Count a write of `size` bytes to `key`, which holds `old_size` bytes now (None: no file), before it is
        made: a put, or a presigned `upload` whose URL, binding `size`, was signed just now and is not handed out
        yet. It adds a new file's size, or what an overwrite grows by; it is recorded whatever it adds, with its
        whole size, since a delete of the file before it lands makes it add that much (a recount counts it so).
        QUOTA_EXCEEDED, nothing counted, when a fresh count leaves no room; one that adds nothing (an overwrite no
        larger than the file) only when MAX_PENDING writes are recorded, with `retry_after` then (seconds)."""
        add_bytes = max(size - (old_size or 0), 0)
        if size > self.max_bytes and (old_size is None or size > old_size):
            raise QuotaExceeded(f"the file is larger than the storage quota of {self.max_bytes} bytes")
        now = self._clock()
        entry = {"d": _n(add_bytes), "n": _n(int(old_size is None)), "t": _n(int(now)), "s": _n(size)}
        pending_id = _pending_id(key, size if upload else None)
        old = self._try_reserve(user_sub, pending_id, entry, now)
        if old is None:
            return
        if self._recount_due(old, now):
            self._recount(user_sub, old, now)
            old = self._try_reserve(user_sub, pending_id, entry, now)
            if old is None:
                return
        raise self._refusal(old, now)

    def written(self, user_sub: str, key: str) -> None:
        """A reserved put of `key` is in S3: a recount need not wait for it (and must not, once it is deleted)."""
        self._forget(user_sub, _pending_id(key, None))

    def withdrawn(self, user_sub: str, key: str, *, upload_bytes: int | None) -> None:
        """A reserved write of `key` into a session deleted meanwhile will not land: its put was undone (None),
        or its upload URL (binding `upload_bytes`) never handed out. A recount need not wait for it. (The entry
        may stand for an earlier URL of the same key and length too: one of the same deleted session, which no
        recount counts.)"""
        self._forget(user_sub, _pending_id(key, upload_bytes))

    def released(self, user_sub: str) -> None:
        """A file of the user's was deleted: the next write that does not fit recounts at once."""
        self._dynamodb.update_item(TableName=self._table_name, Key=self._key(user_sub),
                                   UpdateExpression="SET #d = :true", ExpressionAttributeNames={"#d": "released"},
                                   ExpressionAttributeValues={":true": _TRUE})

    # --- internals --------------------------------------------------------

    def _key(self, user_sub: str) -> dict[str, Any]:
        return {"pk": {"S": f"USER#{user_sub}"}, "sk": {"S": SORT_KEY}}

    def _forget(self, user_sub: str, pending_id: str) -> None:
        self._dynamodb.update_item(TableName=self._table_name, Key=self._key(user_sub),
                                   UpdateExpression="REMOVE #p.#k",
                                   ExpressionAttributeNames={"#p": "pending", "#k": pending_id})

    def _try_reserve(self, user_sub: str, pending_id: str, entry: dict[str, Any],
                     now: float) -> dict[str, Any] | None:
        """None when reserved; else the item as it was (empty when there is none), nothing written."""
        add_bytes, add_files = int(entry["d"]["N"]), int(entry["n"]["N"])
        names = {**_NAMES, "#k": pending_id}
        values = {":b": _n(add_bytes), ":f": _n(add_files), ":one": _n(1), ":entry": {"M": entry},
                  ":max_pending": _n(MAX_PENDING)}
        condition = "size(#p) < :max_pending"  # a write that adds nothing: refused for nothing else
        if add_bytes or add_files:
            # DynamoDB compares, it cannot add, in a condition: the room left is computed here.
            condition = "#b <= :room_b AND #f <= :room_f AND #r >= :fresh AND " + condition
            values.update({":room_b": _n(self.max_bytes - add_bytes), ":room_f": _n(self.max_files - add_files),
                           ":fresh": _n(int(now) - RECOUNT_AGE_SECONDS)})
        else:
            del names["#r"]  # DynamoDB refuses a name the expressions do not use
        try:
            self._dynamodb.update_item(
                TableName=self._table_name, Key=self._key(user_sub),
                UpdateExpression="ADD #b :b, #f :f, #v :one SET #p.#k = :entry", ConditionExpression=condition,
                ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as error:
            if condition_failed(error):
                return error.response.get("Item") or {}
            raise
        return None

    def _recount_due(self, old: dict[str, Any], now: float) -> bool:
        """No count yet, a stale one, a full one of which a recount drops an entry for sure (a dead one), or one a
        recount may lower (a file deleted since, or not recounted in the last seconds)."""
        pending = _pending(old)
        return (not old or old.get("released") == _TRUE
                or (len(pending) >= MAX_PENDING and any(self._dead(value["M"], now) for value in pending.values()))
                or _number(old, "reconciledAt") <= now - RECOUNT_GAP_SECONDS)

    def _dead(self, entry: dict[str, Any], now: float) -> bool:
        """Whether a pending write can land no more: even an upload started as its URL expired is in by now."""
        return int(entry["t"]["N"]) + self._pending_seconds < now

    def _replaced(self, pending_id: str, entry: dict[str, Any], listed: tuple[int, float] | None, now: float) -> bool:
        """Whether a recount may drop an upload before it is dead: no upload can start with its URL any more, and
        what is listed at its path is at least its length, so one still on its way adds nothing."""
        return (pending_id[0] == "u" and "s" in entry and int(entry["t"]["N"]) + self._url_seconds < now
                and listed is not None and listed[0] >= int(entry["s"]["N"]))

    def _recount(self, user_sub: str, old: dict[str, Any], now: float) -> None:
        """Count the user's context files in S3 and store that, plus the reserved writes not landed yet."""
        for _ in range(_RECOUNT_ATTEMPTS):
            listed, left = self._list(user_sub)
            total_bytes = sum(size for size, _ in listed.values())
            total_files = len(listed)
            waiting: dict[str, Any] = {}
            longest: dict[str, int] = {}  # key hash -> the largest write of that key that may still land
            for pending_id, value in _pending(old).items():
                entry = value["M"]
                reserved_at = int(entry["t"]["N"])
                key_hash = pending_id[1:1 + _HASH_LENGTH]
                if self._dead(entry, now):
                    continue  # its URL expired long ago: it landed (and is listed) or never will
                if key_hash in left:
                    continue  # landed in a session deleted meanwhile: it counts no more
                landed = listed.get(key_hash)
                if pending_id[0] == "p" and landed is not None and landed[1] >= reserved_at - LANDED_SKEW_SECONDS:
                    continue  # a put written since it was reserved: the listing counts it
                if self._replaced(pending_id, entry, landed, now):
                    continue  # an expired URL whose path holds as much: the listing counts all it can store
                waiting[pending_id] = value  # a put on its way, or a live URL: it may land (again)
                if "s" not in entry:  # reserved before writes recorded their size: what it added then
                    total_bytes += int(entry["d"]["N"])
                    total_files += int(entry["n"]["N"])
                    continue
                longest[key_hash] = max(longest.get(key_hash, 0), int(entry["s"]["N"]))
            for key_hash, length in longest.items():  # what landing would add to what is listed there
                size = listed[key_hash][0] if key_hash in listed else None
                total_bytes += max(0, length - (size or 0))
                total_files += int(size is None)
            version = _number(old, "version")
            item = {**self._key(user_sub), "bytes": _n(total_bytes), "files": _n(total_files),
                    "pending": {"M": waiting}, "reconciledAt": _n(int(now)), "version": _n(version + 1)}
            try:
                self._dynamodb.put_item(
                    TableName=self._table_name, Item=item,
                    ConditionExpression="attribute_not_exists(#v) OR #v = :seen",
                    ExpressionAttributeNames={"#v": "version"}, ExpressionAttributeValues={":seen": _n(version)},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD")
            except ClientError as error:
                if not condition_failed(error):
                    raise
                old = error.response.get("Item") or {}
                if _number(old, "reconciledAt") > now - RECOUNT_GAP_SECONDS:
                    return  # another writer has just recounted: its count is as fresh as ours
                continue  # a write came between: count again from what it left
            logger.info("storage recounted", extra={"files": total_files, "bytes": total_bytes,
                                                    "waiting": len(waiting)})
            return
        logger.info("storage recount gave way to concurrent writes")

    def _list(self, user_sub: str) -> tuple[dict[str, tuple[int, float]], set[str]]:
        """The user's context files as S3 lists them now (key hash -> (size, last modified, epoch s)), and the key
        hashes of what sessions no longer live left, which is not counted and is removed."""
        root = user_root(user_sub)
        files: dict[str, tuple[int, float]] = {}
        by_session: dict[str, list[StoredObject]] = {}
        for item in self._objects.walk(root):
            relative = item.key[len(root):]
            session_id = _session_of(relative)
            if session_id is not None:
                by_session.setdefault(session_id, []).append(item)
            elif is_context_key(relative):
                files[_key_hash(item.key)] = (item.size, item.last_modified.timestamp())
        live = self._sessions.live_sessions(user_sub, by_session.keys()) if by_session else set()
        left: list[StoredObject] = []
        for session_id, stored in by_session.items():
            if session_id not in live:
                left.extend(stored)
                continue
            for item in stored:
                if is_context_key(item.key[len(root):]):
                    files[_key_hash(item.key)] = (item.size, item.last_modified.timestamp())
        if left:
            self._remove(left)
        return files, {_key_hash(item.key) for item in left}

    def _remove(self, left: list[StoredObject]) -> None:
        """Delete what sessions no longer live left; a failure is logged, and the next recount tries again."""
        try:
            self._objects.delete_keys([item.key for item in left])
        except AppError:  # S3 refused or failed (ObjectStore logged which)
            logger.exception("removing the objects of deleted sessions failed", extra={"objects": len(left)})
            return
        logger.info("objects of deleted sessions removed", extra={"objects": len(left)})

    def _refusal(self, old: dict[str, Any], now: float) -> QuotaExceeded:
        pending = _pending(old)
        if len(pending) >= MAX_PENDING:
            retry_after = max(1, math.ceil(min(self._frees_at(pending_id, value["M"], old)
                                               for pending_id, value in pending.items()) - now))
            return QuotaExceeded(f"{MAX_PENDING} upload URLs or writes are live: the earliest may free up in "
                                 f"{retry_after} s (an upload once its URL has expired, if it landed; any "
                                 f"{self._pending_seconds} s after it was issued)", retry_after=retry_after)
        return QuotaExceeded(f"the storage quota is spent: {_number(old, 'bytes')} of {self.max_bytes} bytes and "
                             f"{_number(old, 'files')} of {self.max_files} files are in use; delete context files "
                             "to free space")

    def _frees_at(self, pending_id: str, entry: dict[str, Any], old: dict[str, Any]) -> float:
        """When a full map's refusal may first drop this entry (epoch seconds): once it is dead, at once; once its
        URL has expired, at the next recount, if no recount has seen it expired and its upload not landed yet."""
        reserved_at = int(entry["t"]["N"])
        dead = reserved_at + self._pending_seconds + 1
        reconciled_at = _number(old, "reconciledAt")
        if pending_id[0] != "u" or "s" not in entry or reserved_at + self._url_seconds < reconciled_at:
            return dead
        return min(dead, max(reserved_at + self._url_seconds + 1, reconciled_at + RECOUNT_GAP_SECONDS))


def is_context_key(relative: str) -> bool:
    """Whether a key below `users/<sub>/` is a context file: `context/...` or `sessions/<id>/context/...`
    (not a session's offloaded `messages/...`)."""
    parts = relative.split("/", 3)
    if parts[0] == "context":
        return len(parts) > 1
    return len(parts) == 4 and parts[0] == "sessions" and parts[2] == "context"


def _session_of(relative: str) -> str | None:
    """The session id of a key below `users/<sub>/` under `sessions/<id>/`, else None."""
    parts = relative.split("/", 2)
    if len(parts) == 3 and parts[0] == "sessions" and SESSION_ID.fullmatch(parts[1]):
        return parts[1]
    return None


def _key_hash(key: str) -> str:
    """A short, fixed-size name for an object key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:_HASH_LENGTH]


def _pending_id(key: str, upload_bytes: int | None) -> str:
    """The name of a reserved write in the item's `pending` map: its kind, its key's hash, and for an upload the
    length its URL binds (URLs of one key and length share an entry: the newest's life covers the others')."""
    return f"p{_key_hash(key)}" if upload_bytes is None else f"u{_key_hash(key)}:{upload_bytes}"


def _pending(item: dict[str, Any]) -> dict[str, Any]:
    """The item's `pending` map, as DynamoDB typed it (name -> {"M": entry})."""
    pending: dict[str, Any] = item.get("pending", {}).get("M", {})
    return pending


def _n(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


def _number(item: dict[str, Any], name: str) -> int:
    value = item.get(name)
    return int(value["N"]) if value else 0
