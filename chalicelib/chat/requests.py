"""Long-running requests (a chat, later a GitHub call) in DynamoDB: owner, status, cancel flag.

The message handler creates the record, the worker moves it through its
statuses and records the outcome, and `chat.cancel` sets the flag the worker
polls. A client names a request by the server id from its `ack` or by its own
`id` on the same connection; an alias item maps the latter to the former. A
chat run from an upload leaves an item `upload#<sub>#<uploadId>` that marks
the upload used.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.aws.dynamo import cancellation_codes, condition_failed, update_if
from chalicelib.errors import NotFound
from chalicelib.times import iso

RUNNING = ("queued", "streaming")
FINAL = ("done", "cancelled", "error", "gone", "timeout")
CLAIMED, CANCELLED, TAKEN = "claimed", "cancelled", "taken"  # what a worker's claim answers


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
        invocation whose worker crashed or timed out: the retry must not stream the reply again).
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

    def cancel_requested(self, request_id: str) -> bool:
        item = self._table.get_item(Key={"requestId": request_id}, ConsistentRead=True,
                                    ProjectionExpression="cancelRequested").get("Item")
        return bool(item and item.get("cancelRequested"))

    def finish(self, request_id: str, *, status: str, stop_reason: str | None = None,
               error_code: str | None = None, usage: Usage | None = None, now: float | None = None,
               unless_cancelled: bool = False) -> bool:
        """Record a request's outcome: how it ended and what it consumed.

        With `unless_cancelled`, only if no cancel was accepted meanwhile (False then, nothing
        written): a cancel answered `{"cancelled": true}` must end the chat as cancelled.
        """
        if status not in FINAL:
            raise ValueError(f"{status!r} is not a final status")
        now = time.time() if now is None else now
        values: dict[str, Any] = {":status": status, ":now": iso(now)}
        sets = ["#status = :status", "updatedAt = :now", "finishedAt = :now"]
        for attribute, value in (("stopReason", stop_reason), ("errorCode", error_code)):
            if value is not None:
                sets.append(f"{attribute} = :{attribute}")
                values[f":{attribute}"] = value
        if usage is not None:
            sets += ["inputTokens = :in", "outputTokens = :out", "usageEstimated = :est",
                     "cacheReadInputTokens = :cread", "cacheWriteInputTokens = :cwrite"]
            values.update({":in": usage.input_tokens, ":out": usage.output_tokens, ":est": usage.estimated,
                           ":cread": usage.cache_read_input_tokens, ":cwrite": usage.cache_write_input_tokens})
        update: dict[str, Any] = {"UpdateExpression": "SET " + ", ".join(sets),
                                  "ExpressionAttributeNames": {"#status": "status"}}
        if unless_cancelled:
            update["ConditionExpression"] = "cancelRequested = :no"
            values[":no"] = False
        return self._update_if(request_id, **update, ExpressionAttributeValues=values)
