"""moto's server, with DynamoDB's guarantee that a conditional write is atomic
(and Cognito's token lifetimes: see moto_cognito.py).

moto does not lock its DynamoDB backend: two concurrent UpdateItems on one item
can both pass a condition (`count < limit`) before either writes, which real
DynamoDB never allows. Rate limits and token budgets rely on that guarantee, so
here every DynamoDB request runs alone. Run as `python devserver/moto_atomic.py
<moto.server arguments>`.
"""
from __future__ import annotations

import threading
from typing import Any

import moto_cognito  # beside this file, which runs as a script
from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_dynamodb_lock = threading.Lock()
_call_action = DynamoHandler.call_action


def _atomic_call_action(self: DynamoHandler) -> Any:
    with _dynamodb_lock:
        return _call_action(self)


DynamoHandler.call_action = _atomic_call_action  # type: ignore[method-assign]

if __name__ == "__main__":
    moto_cognito.install()
    main()
