"""moto's server, with DynamoDB's guarantee that a conditional write is atomic
(and Cognito's token lifetimes: see moto_cognito.py).

moto does not lock its DynamoDB backend: two concurrent UpdateItems on one item
can both pass a condition (`count < limit`) before either writes, which real
DynamoDB never allows. Rate limits and token budgets rely on that guarantee, so
here every DynamoDB request runs alone.

moto also rolls a failed TransactWriteItems back from a deep copy of every table it touches,
taken before each transaction: a cost that grows with the tables (a two-item transaction takes
90 ms at 1,000 items, 250 ms at 3,000: docs/PERFORMANCE.md), where DynamoDB's does not, and a
long `make dev` session or test run grows them. Here the transaction keeps a copy of the items it
names instead, and puts them back if it fails (`python -m bench.moto_transactions` measures both).

And moto's server finds the service of each request by listing its own package's folders, a stat
of each of about 170, every time; here the list is read once (`python -m bench.moto_transactions`:
its UpdateItem against moto as shipped).

Run as `python devserver/moto_atomic.py <moto.server arguments>`.
"""
from __future__ import annotations

import copy
import functools
import threading
from typing import Any

import moto_cognito  # beside this file, which runs as a script
from moto import backends
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_dynamodb_lock = threading.Lock()
_list_of_moto_modules = backends.list_of_moto_modules
_call_action = DynamoHandler.call_action


def _atomic_call_action(self: DynamoHandler) -> Any:
    with _dynamodb_lock:
        return _call_action(self)


DynamoHandler.call_action = _atomic_call_action  # type: ignore[method-assign]

_transact_write_items = DynamoDBBackend.transact_write_items
Saved = tuple[Table, DynamoType, DynamoType | None, Item | None]


def _saved_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[Saved]:
    """A copy of each item the transaction names (None: there is none), with its table and key."""
    saved: list[Saved] = []
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        table = backend.tables.get(op.get("TableName"))
        if table is None:
            continue  # moto refuses the transaction before it writes anything
        key = op.get("Key") or {name: value for name, value in (op.get("Item") or {}).items()
                                if name in (table.hash_key_attr, table.range_key_attr)}
        hash_attr, range_attr = table.hash_key_attr, table.range_key_attr
        if hash_attr not in key or (range_attr is not None and range_attr not in key):
            continue  # a key moto refuses: nothing is written under it
        hash_key = DynamoType(key[hash_attr])
        range_key = DynamoType(key[range_attr]) if range_attr is not None else None
        saved.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
    return saved


def _put_back(saved: list[Saved]) -> None:
    """Each saved item as it was before the transaction, in reverse order (a key named twice ends as first seen)."""
    for table, hash_key, range_key, item in reversed(saved):
        if item is None:
            table.delete_item(hash_key, range_key)
        elif range_key is None:
            table.items[hash_key] = item  # type: ignore[assignment]  # a hash-only table maps keys to items
        else:
            table.items[hash_key][range_key] = item


def _transact_write_items_saving_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    saved = _saved_items(self, transact_items)
    # moto's own backup copies each whole table; under the lock nothing else copies a Table, so for the
    # length of this call that copy is the live table itself (a no-op restore), and the saved items undo.
    Table.__deepcopy__ = lambda table, memo: table  # type: ignore[attr-defined]
    try:
        _transact_write_items(self, transact_items)
    except Exception:
        _put_back(saved)
        raise
    finally:
        del Table.__deepcopy__  # type: ignore[attr-defined]


DynamoDBBackend.transact_write_items = _transact_write_items_saving_items  # type: ignore[method-assign]

# The folders of an installed package do not change while it runs.
backends.list_of_moto_modules = functools.cache(lambda: frozenset(_list_of_moto_modules()))

if __name__ == "__main__":
    moto_cognito.install()
    main()
