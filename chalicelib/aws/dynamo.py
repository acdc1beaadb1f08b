"""DynamoDB idioms, written once: conditional writes, paging, transaction conflicts.

A single-item write that meets a running transaction on the same item fails with
TransactionConflictException; a transaction that meets another write is cancelled
with a `TransactionConflict` reason. Both are safe to retry: nothing was written.
botocore's standard retry mode retries neither, so `retry_conflicts` does.

The helpers take either a boto3 Table resource's or a low-level client's method:
both accept the same keyword arguments and answer the same `Items` and
`LastEvaluatedKey`.
"""
from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from chalicelib.aws.errors import error_code

T = TypeVar("T")
logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
CONDITION_FAILED = "ConditionalCheckFailedException"
BATCH_GET_ROUNDS = 3  # BatchGetItem calls for keys DynamoDB left unprocessed (under throttling), then give up

__all__ = ["CONDITION_FAILED", "cancellation_codes", "condition_failed", "error_code", "get_many", "is_conflict",
           "items", "retry_conflicts", "update_if"]


def condition_failed(error: ClientError) -> bool:
    """The write's condition did not hold: nothing was written."""
    return error_code(error) == CONDITION_FAILED


def old_item(error: ClientError) -> dict[str, Any]:
    """The item a failed condition saw (ReturnValuesOnConditionCheckFailure=ALL_OLD), as Table methods
    return items; {} when there was none. The error carries it in DynamoDB's JSON even from a Table."""
    from boto3.dynamodb.types import TypeDeserializer  # only on this rare path

    deserialize = TypeDeserializer().deserialize
    return {name: deserialize(value) for name, value in (error.response.get("Item") or {}).items()}


def update_if(update_item: Callable[..., Any], **request: Any) -> bool:
    """A conditional UpdateItem; False (nothing written) when its condition does not hold."""
    try:
        update_item(**request)
    except ClientError as error:
        if condition_failed(error):
            return False
        raise
    return True


def items(query: Callable[..., dict[str, Any]], **request: Any) -> Iterator[dict[str, Any]]:
    """Every item a Query (or Scan) answers, page after page, lazily: stop iterating to stop reading."""
    while True:
        page = query(**request)
        yield from page.get("Items", ())
        if "LastEvaluatedKey" not in page:
            return
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def get_many(client: Any, table_name: str, named: Sequence[tuple[str, dict[str, Any]]], *,
             key_names: tuple[str, str] = ("pk", "sk")) -> dict[str, dict[str, Any] | None]:
    """Low-level items by name ({name: item or None}), read consistently with one BatchGetItem (and one
    more for each round of keys DynamoDB leaves unprocessed, at most BATCH_GET_ROUNDS in all)."""
    def key_id(item: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(json.dumps(item[name], sort_keys=True) for name in key_names)

    wanted = {key_id(key): name for name, key in named}
    found: dict[str, dict[str, Any] | None] = {name: None for name, _ in named}
    request: dict[str, Any] = {table_name: {"Keys": [key for _, key in named], "ConsistentRead": True}}
    for _ in range(BATCH_GET_ROUNDS):
        response = client.batch_get_item(RequestItems=request)
        for item in response.get("Responses", {}).get(table_name, []):
            found[wanted[key_id(item)]] = item
        request = response.get("UnprocessedKeys") or {}
        if not request:
            return found
    raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                 "Message": "keys left unprocessed after retries"}}, "BatchGetItem")


def cancellation_codes(error: ClientError) -> list[str]:
    """The per-item reasons of a cancelled transaction, in the order of its items."""
    return [reason.get("Code", "None") for reason in error.response.get("CancellationReasons", [])]


def is_conflict(error: ClientError) -> bool:
    code = error_code(error)
    if code == "TransactionConflictException":
        return True
    return code == "TransactionCanceledException" and "TransactionConflict" in cancellation_codes(error)


def retry_conflicts(call: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep) -> T:
    """`call()`, retried with full jitter while it fails with a transaction conflict."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return call()
        except ClientError as error:
            if attempt == MAX_ATTEMPTS or not is_conflict(error):
                raise
            logger.info("transaction conflict; retrying", extra={"attempt": attempt})
            sleep(random.uniform(0, 0.02 * 2 ** attempt))
    raise AssertionError("unreachable")
