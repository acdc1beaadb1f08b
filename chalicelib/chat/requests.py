"""Long-running requests (a chat, later a GitHub call) in DynamoDB: owner, status, cancel flag, resumes.

The message handler creates the record (`queued`). One conditional transition decides who owns
the chat from there: the worker's claim (`queued -> streaming`) or, when starting the worker
failed, the handler's `fail_unclaimed` (`queued -> error`); they cannot both succeed, and only the
winner streams or releases the reservation. The worker records the outcome (`finish`), with the
chat's final frame and where its stream frames are kept. `chat.cancel` sets the flag and
`chat.resume` appends to the chat's resume requests (`request_resume`, at most MAX_RESUMES a
chat), both of which the worker reads on its timer (`watch`, then `resumes` when one came): it
follows every resume, in order, so each is answered. A client names a request by the server id
from its `ack` or by its own `id` on the same connection; an alias item maps the latter to the
former. A chat run from an upload leaves an item `upload#<sub>#<uploadId>` that marks the upload
used.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import protocol
from chalicelib.aws.dynamo import cancellation_codes, condition_failed, old_item, update_if
from chalicelib.errors import NotFound, QuotaExceeded
from chalicelib.times import iso

RUNNING = ("queued", "streaming")
FINAL = ("done", "cancelled", "error", "gone", "timeout")
CLAIMED, CANCELLED, TAKEN = "claimed", "cancelled", "taken"  # what a worker's claim answers
# Resumes one chat may ask for: each is kept on its record until the chat ends (~150 bytes), and a client
# reconnects a few times in a chat; the cap bounds the item (DynamoDB's limit: 400 KB) and the worker's reads.
MAX_RESUMES = 100


@dataclass(frozen=True)
class Usage:
    """A chat's tokens as Bedrock reports them: `input_tokens` is the input neither read from nor
    written to the prompt cache, so the model read all three input counts (docs/PROTOCOL.md)."""

    input_tokens: int
    output_tokens: int
    estimated: bool = False  # True when the stream broke before the model reported usage
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_input_tokens + self.cache_write_input_tokens

    @property
    def read_tokens(self) -> int:
        """Every input token the model read, cached or not: what a chat's input costs in the token budget."""
        return self.input_tokens + self.cache_read_input_tokens + self.cache_write_input_tokens

    def as_protocol(self) -> dict[str, int]:
        return {"inputTokens": self.input_tokens, "outputTokens": self.output_tokens,
                "totalTokens": self.total_tokens, "cacheReadInputTokens": self.cache_read_input_tokens,
                "cacheWriteInputTokens": self.cache_write_input_tokens}


@dataclass(frozen=True)
class ResumeRequest:
    """One `chat.resume` of a running chat, as its record holds it for the worker."""

    connection_id: str
    endpoint: str  # the Management API endpoint that reaches connection_id
    after_seq: int
    resume_id: str  # the chat.resume frame's `id`

    @classmethod
    def all_from_item(cls, item: dict[str, Any]) -> list[ResumeRequest]:
        """The record's resume requests, in the order they came."""
        return [cls(connection_id=resume["connectionId"], endpoint=resume["endpoint"],
                    after_seq=int(resume["afterSeq"]), resume_id=resume["id"])
                for resume in item.get("resumes") or ()]


@dataclass(frozen=True)
class Watch:
    """What the worker reads on its timer: a cancel, and how many resumes were asked so far."""

    cancel_requested: bool
    resume_count: int


def new_request_id() -> str:
    return uuid.uuid4().hex


def _alias_key(connection_id: str, client_id: str) -> str:
    # '#' never appears in a server id (hex) nor in a client id (protocol charset).
    return f"alias#{connection_id}#{client_id}"


def _upload_key(user_sub: str, upload_id: str) -> str:
    return f"upload#{user_sub}#{upload_id}"


class RequestStore:
    def __init__(self, table: Any, *, ttl_seconds: int) -> None:
        self._table = table
        self._ttl_seconds = ttl_seconds

    def create(self, *, request_id: str, kind: str, user_sub: str, connection_id: str, client_id: str,
               model: str, now: float | None = None, upload_id: str | None = None,
               upload_ttl_seconds: int = 0) -> None:
        """The record and its alias, in one transaction: a cancel can find either at once.

        A client that reuses an `id` on its connection names its latest request by it. With
        `upload_id`, the same transaction marks the user's upload used, on condition that no
        chat used it before: NOT_FOUND otherwise, and nothing is written (an upload serves once).
        The mark outlives the upload (`upload_ttl_seconds`), so it cannot serve again while it exists.
        """
        now = time.time() if now is None else now
        ttl = int(now) + self._ttl_seconds
        record = {
            "requestId": request_id, "kind": kind, "userSub": user_sub, "connectionId": connection_id,
            "clientId": client_id, "model": model, "status": "queued", "cancelRequested": False,
            "createdAt": iso(now), "updatedAt": iso(now), "ttl": ttl,
        }
        alias = {"requestId": _alias_key(connection_id, client_id), "targetRequestId": request_id,
                 "userSub": user_sub, "ttl": ttl}
        items: list[dict[str, Any]] = [
            {"Put": {"TableName": self._table.name, "Item": record,
                     "ConditionExpression": "attribute_not_exists(requestId)"}},
            {"Put": {"TableName": self._table.name, "Item": alias}},
        ]
        if upload_id is not None:
            used = {"requestId": _upload_key(user_sub, upload_id), "targetRequestId": request_id,
                    "userSub": user_sub, "ttl": int(now) + upload_ttl_seconds}
            items.append({"Put": {"TableName": self._table.name, "Item": used,
                                  "ConditionExpression": "attribute_not_exists(requestId)"}})
        try:
            self._table.meta.client.transact_write_items(TransactItems=items)
        except ClientError as error:
            if upload_id is not None and cancellation_codes(error)[2:3] == ["ConditionalCheckFailed"]:
                raise NotFound("no such upload (an upload serves one chat)") from None
            raise

    def get(self, request_id: str) -> dict[str, Any] | None:
        return self._table.get_item(Key={"requestId": request_id}, ConsistentRead=True).get("Item")

    def resolve(self, *, name: str, connection_id: str) -> str:
        """The server id a client means: its own `id` of a chat on this connection, or a server id."""
        alias = self._table.get_item(Key={"requestId": _alias_key(connection_id, name)},
                                     ConsistentRead=True).get("Item")
        return alias["targetRequestId"] if alias else name

    def request_cancel(self, *, request_id: str, user_sub: str, now: float | None = None) -> bool:
        """Set the cancel flag of a running request of this user; False if there is none."""
        now = time.time() if now is None else now
        return self._update_if(
            request_id,
            UpdateExpression="SET cancelRequested = :yes, updatedAt = :now",
            ConditionExpression="userSub = :sub AND #status IN (:queued, :streaming)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":yes": True, ":now": iso(now), ":sub": user_sub,
                                       ":queued": RUNNING[0], ":streaming": RUNNING[1]},
        )

    def claim(self, request_id: str, *, now: float | None = None) -> str:
        """Move a queued request to `streaming`, in one conditional write that also reads its cancel flag.

        CLAIMED: the worker owns the chat and may call the model. CANCELLED: it owns the chat, but a
        `chat.cancel` came first: the model must not be called (nothing it never read is charged, and
        nothing it read is free). TAKEN: a worker already took it (Lambda retries an asynchronous
        invocation whose worker crashed or timed out: the retry must not stream the reply again), or the
        handler gave up on it (`fail_unclaimed`: its worker seemed not to start).
        """
        now = time.time() if now is None else now
        try:
            item = self._table.update_item(
                Key={"requestId": request_id},
                UpdateExpression="SET #status = :streaming, updatedAt = :now",
                ConditionExpression="#status = :queued",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":streaming": RUNNING[1], ":queued": RUNNING[0], ":now": iso(now)},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as error:
            if condition_failed(error):
                return TAKEN
            raise
        return CANCELLED if item.get("cancelRequested") else CLAIMED

    def _update_if(self, request_id: str, **update: Any) -> bool:
        """A conditional update of the request; False when its condition does not hold."""
        return update_if(self._table.update_item, Key={"requestId": request_id}, **update)

    def fail_unclaimed(self, request_id: str, *, error_code: str, now: float | None = None) -> bool:
        """The handler's side of the claim: `queued -> error`, True if no worker took the chat first.

        Only then may the handler release the reservation and answer an error: a worker that did
        take it (its start looked failed, but it ran) owns the chat and answers it.
        """
        now = time.time() if now is None else now
        return self._update_if(
            request_id,
            UpdateExpression="SET #status = :error, errorCode = :code, updatedAt = :now, finishedAt = :now",
            ConditionExpression="#status = :queued",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":error": "error", ":code": error_code, ":queued": RUNNING[0],
                                       ":now": iso(now)},
        )

    def cancel_requested(self, request_id: str) -> bool:
        return self.watch(request_id).cancel_requested

    def watch(self, request_id: str) -> Watch:
        """The cancel flag and the number of resumes asked: one consistent read of two numbers."""
        item = self._table.get_item(Key={"requestId": request_id}, ConsistentRead=True,
                                    ProjectionExpression="cancelRequested, resumeCount").get("Item") or {}
        return Watch(cancel_requested=bool(item.get("cancelRequested")), resume_count=int(item.get("resumeCount", 0)))

    def resumes(self, request_id: str) -> list[ResumeRequest]:
        """Every resume asked of the chat so far, in order (read when `watch` counts more than were followed)."""
        item = self._table.get_item(Key={"requestId": request_id}, ConsistentRead=True,
                                    ProjectionExpression="resumes").get("Item") or {}
        return ResumeRequest.all_from_item(item)

    def request_resume(self, *, request_id: str, user_sub: str, connection_id: str, endpoint: str, after_seq: int,
                       resume_id: str, now: float | None = None) -> bool:
        """Ask the worker of a running chat of this user's to move its stream; False if there is none.

        The resume is appended to the chat's list; the worker follows every one, in order, within a
        poll (or when it records the end), and answers each on its connection itself: the stream goes
        on at the last one it could follow. QuotaExceeded when the chat was resumed MAX_RESUMES times.
        """
        now = time.time() if now is None else now
        resume = {"connectionId": connection_id, "endpoint": endpoint, "afterSeq": after_seq, "id": resume_id}
        try:
            self._table.update_item(
                Key={"requestId": request_id},
                UpdateExpression="SET #resumes = list_append(if_not_exists(#resumes, :none), :resume), "
                                 "updatedAt = :now ADD resumeCount :one",
                ConditionExpression="userSub = :sub AND #kind = :chat AND #status IN (:queued, :streaming) "
                                    "AND (attribute_not_exists(resumeCount) OR resumeCount < :max)",
                ExpressionAttributeNames={"#resumes": "resumes", "#status": "status", "#kind": "kind"},
                ExpressionAttributeValues={":resume": [resume], ":none": [], ":now": iso(now), ":one": 1,
                                           ":sub": user_sub, ":chat": "chat", ":queued": RUNNING[0],
                                           ":streaming": RUNNING[1], ":max": MAX_RESUMES},
                ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as error:
            if not condition_failed(error):
                raise
            old = old_item(error)
            if old.get("userSub") == user_sub and old.get("status") in RUNNING \
                    and int(old.get("resumeCount", 0)) >= MAX_RESUMES:
                raise QuotaExceeded(f"this chat was resumed {MAX_RESUMES} times already") from None
            return False
        return True

    def finish(self, request_id: str, *, status: str, stop_reason: str | None = None,
               error_code: str | None = None, usage: Usage | None = None, now: float | None = None,
               unless_cancelled: bool = False, final_frame: dict[str, Any] | None = None,
               last_seq: int | None = None, frame_parts: int | None = None,
               replay_until: int | None = None) -> dict[str, Any] | None:
        """Record a request's outcome: how it ended, what it consumed, and (a chat) how to replay it.

        `final_frame` is the chat's `done` or `error`, `last_seq` the seq of its last stream frame,
        `frame_parts` how many items of the FrameLog hold its stream frames (written before this),
        and `replay_until` (epoch seconds) when `chat.resume` stops replaying it; the record then
        lives at least as long. Returns the record as written (with every resume request, the last of
        which the worker may still have to follow), or None when `unless_cancelled` found a cancel accepted
        meanwhile and wrote nothing: a cancel answered `{"cancelled": true}` must end the chat as
        cancelled.
        """
        if status not in FINAL:
            raise ValueError(f"{status!r} is not a final status")
        now = time.time() if now is None else now
        values: dict[str, Any] = {":status": status, ":now": iso(now)}
        sets = ["#status = :status", "updatedAt = :now", "finishedAt = :now"]
        names = {"#status": "status"}
        optional = (("stopReason", stop_reason), ("errorCode", error_code), ("lastSeq", last_seq),
                    ("frameParts", frame_parts), ("replayUntil", replay_until),
                    ("finalFrame", None if final_frame is None else protocol.encode(final_frame)))
        for attribute, value in optional:
            if value is not None:
                sets.append(f"{attribute} = :{attribute}")
                values[f":{attribute}"] = value
        if replay_until is not None:
            sets.append("#ttl = :ttl")
            names["#ttl"] = "ttl"
            values[":ttl"] = max(replay_until, int(now) + self._ttl_seconds)
        if usage is not None:
            sets += ["inputTokens = :in", "outputTokens = :out", "usageEstimated = :est",
                     "cacheReadInputTokens = :cread", "cacheWriteInputTokens = :cwrite"]
            values.update({":in": usage.input_tokens, ":out": usage.output_tokens, ":est": usage.estimated,
                           ":cread": usage.cache_read_input_tokens, ":cwrite": usage.cache_write_input_tokens})
        update: dict[str, Any] = {"UpdateExpression": "SET " + ", ".join(sets), "ExpressionAttributeNames": names,
                                  "ExpressionAttributeValues": values, "ReturnValues": "ALL_NEW"}
        if unless_cancelled:
            update["ConditionExpression"] = "cancelRequested = :no"
            values[":no"] = False
        try:
            return self._table.update_item(Key={"requestId": request_id}, **update)["Attributes"]
        except ClientError as error:
            if condition_failed(error):
                return None
            raise
