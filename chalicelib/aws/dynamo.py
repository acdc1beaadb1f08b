"""Retry of DynamoDB transaction conflicts, which botocore's standard mode does not retry.

A single-item write that meets a running transaction on the same item fails with
TransactionConflictException; a transaction that meets another write is cancelled
with a `TransactionConflict` reason. Both are safe to retry: nothing was written.
"""
from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

from botocore.exceptions import ClientError

T = TypeVar("T")
logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def cancellation_codes(error: ClientError) -> list[str]:
    """The per-item reasons of a cancelled transaction, in the order of its items."""
    return [reason.get("Code", "None") for reason in error.response.get("CancellationReasons", [])]


def is_conflict(error: ClientError) -> bool:
    code = error_code(error)
    if code == "TransactionConflictException":
        return True
    return code == "TransactionCanceledException" and "TransactionConflict" in cancellation_codes(error)


def retry_conflicts(call: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep) -> T:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return call()
        except ClientError as error:
            if attempt == MAX_ATTEMPTS or not is_conflict(error):
                raise
            logger.info("transaction conflict; retrying", extra={"attempt": attempt})
            sleep(random.uniform(0, 0.02 * 2 ** attempt))  # full jitter
    raise AssertionError("unreachable")
