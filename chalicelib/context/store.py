"""The context store: a user's files for the model, in S3, out of every other user's reach.

Keys are `users/<sub>/context/<path>` (the user's files, expiring CONTEXT_FILE_TTL_DAYS
after they were last written) or `users/<sub>/sessions/<sessionId>/context/<path>` (one
session's files, deleted with it and expiring with it). The sub is the verified one; every
path is checked by `protocol.validate_path` before any key is built from it; a
session-scoped call first checks that the session is the caller's. Every write (a put, or
a presigned upload when its URL is issued) is counted against the user's storage quota
first (context/quota.py): QUOTA_EXCEEDED, and nothing written, when it does not fit.

A session may be deleted while a session-scoped write runs (SessionStore's docstring): a
put checks the session again after it has written, and an upload URL before it is
handed out; when the session is gone by then, the file is deleted (the URL withheld),
its reservation dropped, and the answer is NOT_FOUND. An upload through a URL handed out
before the delete may still land after it: the next recount of the user's storage
neither counts nor keeps it.

Content is stored as sent; `get` returns it inline when it is UTF-8 text small enough for
one frame, and otherwise a presigned GET of the raw bytes, served as a download (see
docs/PROTOCOL.md). The model only ever gets UTF-8 text (`context_documents`).
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any

from chalicelib import cursors, protocol
from chalicelib.aws.objects import (
    CONTEXT_FILE_TAGGING,
    SESSION_TAGGING,
    ObjectStore,
    StoredObject,
    session_root,
    user_root,
)
from chalicelib.context.quota import StorageQuota
from chalicelib.errors import BadRequest, NotFound, PayloadTooLarge
from chalicelib.protocol import validate_path
from chalicelib.sessions.store import SessionStore, check_session_id
from chalicelib.times import iso
from chalicelib.tokens import tokens_for_bytes

MAX_KEY_BYTES = 1024  # S3's limit on a whole key
MAX_CONTEXT_PATHS = 20
DEFAULT_CONTENT_TYPE = "text/plain; charset=utf-8"
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9.+-]{1,64}/[A-Za-z0-9.+-]{1,64}(; ?charset=[A-Za-z0-9_-]{1,32})?")
_ANY_PATH = re.compile(r"[^\x00]{1,1024}", re.DOTALL)


class ContextStore:
    def __init__(self, objects: ObjectStore, sessions: SessionStore, quota: StorageQuota, *, max_bytes: int,
                 file_ttl_days: int, clock: Callable[[], float] = time.time) -> None:
        self._objects = objects
        self._sessions = sessions
        self._quota = quota
        self.max_bytes = max_bytes
        self._file_ttl_seconds = file_ttl_days * 86400
        self._clock = clock

    # --- keys -------------------------------------------------------------

    def _root(self, user_sub: str, session_id: str | None) -> str:
        if session_id is None:
            return f"{user_root(user_sub)}context/"
        return f"{session_root(user_sub, check_session_id(session_id))}context/"

    def _key(self, user_sub: str, path: str, session_id: str | None, *, field: str = "path") -> tuple[str, str]:
        path = validate_path(path, field=field)
        root = self._root(user_sub, session_id)
        size, room = len(path.encode("utf-8")), MAX_KEY_BYTES - len(root.encode("utf-8"))
        if size > room:
            raise BadRequest(f"'{field}' is {size} bytes; here it may take at most {room} bytes "
                             f"(with its storage prefix, an S3 key takes {MAX_KEY_BYTES})")
        return path, root + path

    def _owned(self, user_sub: str, session_id: str | None, *, write: bool) -> None:
        """A session-scoped call is only for the caller's own session; a write is activity."""
        if session_id is None:
            return
        if write:
            self._sessions.touch(user_sub, session_id)
        else:
            self._sessions.require_session(user_sub, session_id)

    # --- actions ----------------------------------------------------------

    def put(self, user_sub: str, path: str, content: str, *, session_id: str | None) -> dict[str, Any]:
        path, key = self._key(user_sub, path, session_id)
        data = content.encode("utf-8")
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"context files are limited to {self.max_bytes} bytes")
        self._owned(user_sub, session_id, write=True)
        self._reserve(user_sub, key, len(data), upload=False)
        etag = self._objects.put(key, data, content_type=DEFAULT_CONTENT_TYPE, tagging=_tagging(session_id))
        try:
            self._still_live(user_sub, session_id)
        except NotFound:
            self._objects.delete(key)
            self._withdraw(user_sub, key, upload_bytes=None)
            raise
        self._quota.written(user_sub, key)
        return {"path": path, "size": len(data), "etag": etag, **self._expiry(session_id, self._clock())}

    def upload_url(self, user_sub: str, path: str, size: int, *, session_id: str | None,
                   content_type: str | None) -> dict[str, Any]:
        path, key = self._key(user_sub, path, session_id)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        if not _CONTENT_TYPE.fullmatch(content_type):
            raise BadRequest("'contentType' is not a media type")
        if not 0 <= size <= self.max_bytes:
            raise PayloadTooLarge(f"context files are limited to {self.max_bytes} bytes")
        self._owned(user_sub, session_id, write=True)
        # Signed first, handed out only once reserved: the quota counts the URL from a time no earlier than its
        # signature's, so it knows when S3 stops accepting it. The URL binds the length: the upload can add no
        # more than is counted here.
        now = self._clock()
        url, headers = self._objects.presign_put(key, size=size, content_type=content_type,
                                                 tagging=_tagging(session_id))
        self._reserve(user_sub, key, size, upload=True)
        try:
            self._still_live(user_sub, session_id)
        except NotFound:
            self._withdraw(user_sub, key, upload_bytes=size)  # the URL never leaves: nothing can land
            raise
        return {"path": path, "url": url, "headers": headers, "expiresAt": iso(now + self._objects.put_seconds)}

    def page(self, user_sub: str, prefix: str | None, *, session_id: str | None, cursor: str | None,
             limit: int, budget_bytes: int) -> tuple[list[dict[str, Any]], str | None]:
        """One page of {path, size, updatedAt} in path order, at most `limit` items and `budget_bytes` of JSON."""
        prefix = _valid_prefix(prefix)
        root = self._root(user_sub, session_id)
        start_after = None
        if cursor:
            last = cursors.decode(cursor, {"p": _ANY_PATH})["p"]
            if validate_path(last, field="cursor") != last or not last.startswith(prefix):
                raise BadRequest("'cursor' is not valid")
            start_after = root + last
        self._owned(user_sub, session_id, write=False)
        objects, more = self._objects.list(root + prefix, start_after=start_after, max_keys=limit)
        items: list[dict[str, Any]] = []
        used = 0
        for obj in objects:
            written = obj.last_modified.astimezone(UTC).timestamp()
            item = {"path": obj.key[len(root):], "size": obj.size, "updatedAt": iso(written),
                    **self._expiry(session_id, written)}
            used += protocol.encoded_size(item) + 1
            if items and used > budget_bytes:
                more = True
                break
            items.append(item)
        next_cursor = cursors.encode({"p": items[-1]["path"]}) if more and items else None
        return items, next_cursor

    def get(self, user_sub: str, path: str, *, session_id: str | None) -> dict[str, Any]:
        path, key = self._key(user_sub, path, session_id)
        self._owned(user_sub, session_id, write=False)
        head = self._head(key, path)
        size = head.size
        answer: dict[str, Any] = {"path": path, "size": size,
                                  **self._expiry(session_id, head.last_modified.astimezone(UTC).timestamp())}
        reason = "too-large"
        if size <= protocol.INLINE_TEXT_BYTES:
            data, _ = self._objects.get(key)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                reason = "not-utf8"
            else:
                if protocol.encoded_size(text) <= protocol.INLINE_TEXT_BYTES:
                    return {**answer, "content": text}
        return {**answer, "content": None, "reason": reason,
                "url": self._objects.presign_get(key, filename=path.rsplit("/", 1)[-1]),
                "expiresAt": iso(self._clock() + self._objects.get_seconds)}

    def delete(self, user_sub: str, path: str, *, session_id: str | None) -> None:
        path, key = self._key(user_sub, path, session_id)
        self._owned(user_sub, session_id, write=False)
        self._head(key, path)  # S3 deletes silently; the protocol answers NOT_FOUND
        self._objects.delete(key)
        self._quota.released(user_sub)

    # --- for chat ---------------------------------------------------------

    def documents_sizes(self, user_sub: str, session_id: str | None, paths: Sequence[Any],
                        token_limit: int) -> list[tuple[str, int]]:
        """The files named by `contextPaths` as (path, size in bytes), checked but not read.

        For the chat handler: it answers NOT_FOUND / PAYLOAD_TOO_LARGE / BAD_REQUEST
        before the chat is admitted, and reserves the files' tokens, with one HEAD per file.
        """
        return [(path, size) for path, _, size in self._locate(user_sub, session_id, paths, token_limit)]

    def context_documents(self, user_sub: str, session_id: str | None, paths: Sequence[Any],
                          token_limit: int) -> list[tuple[str, str]]:
        """The files named by `contextPaths` as (path, text), in the order given, duplicates once.

        A path is looked up in the session's files first, then in the user's.
        PAYLOAD_TOO_LARGE when their tokens (about 4 bytes each) exceed `token_limit`,
        checked from the sizes before anything is read; NOT_FOUND for a missing path;
        BAD_REQUEST for a bad path or a file that is not UTF-8 text.
        """
        documents = []
        read_tokens = 0
        for path, key, _ in self._locate(user_sub, session_id, paths, token_limit):
            data, _ = self._objects.get(key)
            read_tokens += tokens_for_bytes(len(data))
            if read_tokens > token_limit:  # a file replaced by a larger one since it was sized
                raise PayloadTooLarge(f"the context files are over the limit of {token_limit} tokens")
            try:
                documents.append((path, data.decode("utf-8")))
            except UnicodeDecodeError:
                raise BadRequest(f"context file {path!r} is not UTF-8 text") from None
        return documents

    # --- internals --------------------------------------------------------

    def _reserve(self, user_sub: str, key: str, size: int, *, upload: bool) -> None:
        """Count a write of `size` bytes to `key` in the user's quota: a new file, or what an overwrite adds."""
        try:
            old_size: int | None = self._objects.head(key).size
        except NotFound:
            old_size = None
        self._quota.reserve(user_sub, key, size=size, old_size=old_size, upload=upload)

    def _still_live(self, user_sub: str, session_id: str | None) -> None:
        """After a session-scoped write: NOT_FOUND if the session was deleted meanwhile (its delete may have
        listed what to delete before the write landed)."""
        if session_id is not None:
            self._sessions.require_session(user_sub, session_id)

    def _withdraw(self, user_sub: str, key: str, *, upload_bytes: int | None) -> None:
        """A reserved write that was undone: nothing of it lands, and the next write that does not fit recounts."""
        self._quota.withdrawn(user_sub, key, upload_bytes=upload_bytes)
        self._quota.released(user_sub)

    def _expiry(self, session_id: str | None, written: float) -> dict[str, str]:
        """`expiryDate` of a user's own file: when S3's lifecycle rule expires it (its last write plus
        CONTEXT_FILE_TTL_DAYS, rounded up to the next midnight UTC, as S3 rounds). A session's
        files expire with the session instead."""
        if session_id is not None:
            return {}
        return {"expiryDate": iso((int(written + self._file_ttl_seconds) // 86400 + 1) * 86400)}

    def _locate(self, user_sub: str, session_id: str | None, paths: Sequence[Any],
                token_limit: int) -> list[tuple[str, str, int]]:
        """(path, key, size) of each distinct path, the session's file first; limits checked from sizes."""
        if len(paths) > MAX_CONTEXT_PATHS:
            raise BadRequest(f"'contextPaths' has more than {MAX_CONTEXT_PATHS} items")
        if any(not isinstance(p, str) for p in paths):
            raise BadRequest("'contextPaths' must be a list of paths")
        # Each distinct path once, named by where the client first gave it.
        wanted: dict[str, str] = {}
        for index, raw in enumerate(paths):
            field = f"contextPaths[{index}]"
            wanted.setdefault(validate_path(raw, field=field), field)
        roots: list[str | None] = [None] if session_id is None else [session_id, None]
        self._owned(user_sub, session_id, write=False)
        found = [self._resolve(user_sub, path, roots, field) for path, field in wanted.items()]
        tokens = sum(tokens_for_bytes(size) for _, _, size in found)
        if tokens > token_limit:
            raise PayloadTooLarge(f"the context files are about {tokens} tokens; the limit is {token_limit}")
        return found

    def _resolve(self, user_sub: str, path: str, roots: list[str | None], field: str) -> tuple[str, str, int]:
        for session_id in roots:
            try:
                key = self._key(user_sub, path, session_id, field=field)[1]
            except BadRequest:
                if session_id is None:  # the user's own files, the last root and the one with most room
                    raise
                continue  # too long to be one of the session's files: it may still be one of the user's
            try:
                return path, key, self._objects.head(key).size
            except NotFound:
                continue
        raise NotFound(f"no such context path {path!r}")

    def _head(self, key: str, path: str) -> StoredObject:
        try:
            return self._objects.head(key)
        except NotFound:
            raise NotFound(f"no such context path {path!r}") from None


def _tagging(session_id: str | None) -> str:
    """The expiry tag of a file: the session's (a session-scoped file) or a context file's."""
    return SESSION_TAGGING if session_id is not None else CONTEXT_FILE_TAGGING


def _valid_prefix(prefix: str | None) -> str:
    """'' (everything), a directory ('src/') or a name prefix ('src/ap'), checked like a path."""
    if not prefix:
        return ""
    if prefix.endswith("/"):
        return validate_path(prefix[:-1], field="prefix") + "/"
    return validate_path(prefix, field="prefix")
