"""The chat handler's three DynamoDB calls before the worker starts: one after the other, as `chat.send`
makes them, against the same three made at once from three threads.

Asks whether running them concurrently would bring issue 16's goal (time to first delta minus the
model's time to first token <= 60 ms) within reach on the local stack without dropping a call
(docs/PERFORMANCE.md, "Where the ms go"). The calls are the app's own, through its own stores
(chalicelib/root.py) against the local stack's DynamoDB (devserver/moto_atomic.py, provisioned as
`make dev` does): the frame count (`ConnectionStore.count_frame`, an UpdateItem), the admission and
token reservation (`TokenBudget.reserve`, an UpdateItem) and the request record with its alias
(`RequestStore.create`, a TransactWriteItems). Each round uses a new request id and client id; the
two ways alternate round by round. Medians of `--rounds`, with the ratio concurrent / one after the
other, and the client's CPU time per call (the rest of a call is moto's own processing, which a
local emulator spends on one core: CPU, not waiting, as DynamoDB's network round trip would be).

Usage: .venv/bin/python -m bench.admission_calls [--rounds 60]
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.config import DEFAULT_ALLOWED_MODELS, load_settings  # noqa: E402
from chalicelib.root import Root  # noqa: E402
from devserver import aws as dev_aws  # noqa: E402

USER = "bench-user"
CONNECTION = "benchConnection="
MODEL = DEFAULT_ALLOWED_MODELS.split(",")[0]


def the_calls(root: Root) -> Callable[[int], list[Callable[[], object]]]:
    """The three calls of round `n`, as closures over the app's stores."""
    root.connections.add(connection_id=CONNECTION, user_sub=USER, username="bench", groups=(),
                         token_expires_at=int(time.time()) + 3600, endpoint="http://127.0.0.1:1/dev")

    def calls(n: int) -> list[Callable[[], object]]:
        now = time.time()
        request_id = f"bench-{os.getpid()}-{n}"
        return [
            lambda: root.connections.count_frame(CONNECTION, now),
            lambda: root.token_budget.reserve(USER, now, request_id=request_id, input_tokens=20, max_tokens=100),
            lambda: root.requests.create(request_id=request_id, kind="chat", user_sub=USER, connection_id=CONNECTION,
                                         client_id=f"c{n}", model=MODEL, now=now),
        ]
    return calls


def one_after_the_other(calls: list[Callable[[], object]]) -> None:
    for call in calls:
        call()


def at_once(pool: ThreadPoolExecutor, calls: list[Callable[[], object]]) -> None:
    for future in [pool.submit(call) for call in calls]:
        future.result()


def timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.admission_calls", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-admission-") as tmp:
        moto = dev_aws.MotoServer(listener=dev_aws.listen(), log_path=Path(tmp, "moto.log"))
        moto.start()
        try:
            provisioned = dev_aws.provision(moto.url, stage="dev")
            environ = {**dev_aws.app_environment(moto.url, "http://127.0.0.1:1", provisioned),
                       "RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000", "TOKEN_BUDGET_PER_HOUR": "1000000000"}
            with mock.patch.dict(os.environ, environ):
                figures = measure(Root(load_settings(os.environ)), args.rounds)
        finally:
            moto.stop()
    one_by_one, at_once, cpu = figures
    print(f"\nchat.send's three DynamoDB calls before the worker starts, medians of {args.rounds} rounds (ms)")
    print(f"{'one after the other':>20} {'at once (3 threads)':>20} {'ratio':>6} {'client CPU per call':>20}")
    print(f"{one_by_one:>20.1f} {at_once:>20.1f} {at_once / one_by_one:>6.2f} {cpu:>20.2f}")


def measure(root: Root, rounds: int) -> tuple[float, float, float]:
    """(median ms one after the other, median ms at once, the client's median CPU ms per call)."""
    calls = the_calls(root)
    for n in range(5):  # warm the clients and their connections
        for call in calls(-1 - n):
            call()
    sequential: list[float] = []
    concurrent: list[float] = []
    cpu: list[float] = []
    with ThreadPoolExecutor(max_workers=3) as pool:
        for n in range(rounds):
            first, second = calls(2 * n), calls(2 * n + 1)
            cpu_started = time.process_time()
            sequential.append(timed(functools.partial(one_after_the_other, first)))
            cpu.append((time.process_time() - cpu_started) * 1000 / len(first))
            concurrent.append(timed(functools.partial(at_once, pool, second)))
    return statistics.median(sequential), statistics.median(concurrent), statistics.median(cpu)


if __name__ == "__main__":
    main()
