"""What a Lambda container keeps between invocations: one container of state, one reset.

The settings, the AWS clients, the metrics writer, the tracer, the JWT verifier, the
rate-limit memory, the GitHub worker's caches and the composition root are built on
first use and reused by every warm invocation. Each is a function decorated with
`kept` (shared by all threads) or `kept_per_thread` (for what is not thread-safe,
such as boto3 resources), so they all live here, and `reset()` forgets every one of
them at once, as a new container would start (the tests' only way to do it).

Builds run under one re-entrant lock: a build may use other kept values, and boto3's
session is not thread-safe while it makes clients.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.RLock()
_shared: dict[Hashable, Any] = {}
_local = threading.local()
_generation = 0  # bumped by reset(): every thread's kept values of an older generation are stale


def kept(build: Callable[P, T]) -> Callable[P, T]:
    """`build(*args, **kwargs)` once per container for each distinct set of arguments."""
    name = f"{build.__module__}.{build.__qualname__}"

    @functools.wraps(build)
    def get(*args: P.args, **kwargs: P.kwargs) -> T:
        key = (name, args, tuple(sorted(kwargs.items())))
        try:
            return _shared[key]
        except KeyError:
            pass
        with _lock:
            if key not in _shared:
                _shared[key] = build(*args, **kwargs)
            return _shared[key]
    get.__dict__["_kept"] = (name, False)
    return get


def kept_per_thread(build: Callable[P, T]) -> Callable[P, T]:
    """Like `kept`, but one value per thread (the local stack runs handlers on many threads)."""
    name = f"{build.__module__}.{build.__qualname__}"

    @functools.wraps(build)
    def get(*args: P.args, **kwargs: P.kwargs) -> T:
        values: dict[Hashable, Any] = _thread_values()
        key = (name, args, tuple(sorted(kwargs.items())))
        if key not in values:
            with _lock:
                values[key] = build(*args, **kwargs)
        return values[key]
    get.__dict__["_kept"] = (name, True)
    return get


def _thread_values() -> dict[Hashable, Any]:
    if getattr(_local, "generation", None) != _generation:
        _local.generation, _local.values = _generation, {}
    return _local.values


def install(getter: Callable[[], T], value: T) -> None:
    """Make a kept getter of no arguments answer `value` until `reset()` (for the calling thread only,
    when it is kept per thread): how a test hands the app a collaborator of its own, e.g.
    `install(get_root, Root(settings, clock=fixed))`."""
    name, per_thread = getter.__dict__["_kept"]
    key = (name, (), ())
    if per_thread:
        _thread_values()[key] = value
    else:
        with _lock:
            _shared[key] = value


def reset() -> None:
    """Forget everything kept, in every thread: the next use builds it anew."""
    global _generation
    with _lock:
        _shared.clear()
        _generation += 1
