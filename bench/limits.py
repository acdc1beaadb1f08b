"""DynamoDB requests per admitted action, per rejected action and per chat (reserve + settle).

Counts every HTTP request the app's own DynamoDB client sends (botocore's
`before-send` event, so retries would count too) against moto in server mode,
with the limiters built exactly as the app builds them (its composition root, `Root`). Goal: one
write to admit an action or a chat, one write to settle a chat, and no request
at all for an action the container already knows to be over its limit.

    .venv/bin/python bench/limits.py [--n 200]
"""
from __future__ import annotations

import argparse
import collections
import functools
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devserver import aws as dev_aws  # noqa: E402

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


class RequestCounter:
    def __init__(self, *clients: Any) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        for client in clients:
            client.meta.events.register("before-send.dynamodb", self._count, unique_id="bench-counter")

    def _count(self, event_name: str, **_: Any) -> None:
        self.calls[event_name.rsplit(".", 1)[-1]] += 1

    def take(self) -> collections.Counter[str]:
        taken, self.calls = self.calls, collections.Counter()
        return taken


def per_op(calls: collections.Counter[str], n: int) -> str:
    writes = sum(v for k, v in calls.items() if k in WRITES)
    reads = sum(v for k, v in calls.items() if k not in WRITES)
    detail = ", ".join(f"{k} {v / n:.3f}" for k, v in sorted(calls.items())) or "none"
    return f"{writes / n:.3f} writes + {reads / n:.3f} reads  ({detail})"


def timed(task: Callable[[int], object], n: int) -> float:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        task(i)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="operations per figure")
    n = parser.parse_args().n
    from chalicelib.observability import metrics

    metrics.set_output(lambda line: None)  # the figures, not the app's EMF lines, go to stdout

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    moto = dev_aws.MotoServer(host="127.0.0.1", port=port, log_path=Path(tempfile.gettempdir()) / "bench-moto.log")
    moto.start()
    try:
        provisioned = dev_aws.provision(moto.url, stage="bench")
        os.environ.update(dev_aws.app_environment(moto.url, "http://127.0.0.1:9", provisioned))
        os.environ["RATE_LIMIT_REQUESTS_PER_MINUTE"] = "1000000"  # the admitted figure needs room
        from chalicelib.aws import clients as aws
        from chalicelib.config import get_settings
        from chalicelib.errors import RateLimited
        from chalicelib.limits import LimitedMemory, RateLimiter, UserLimits
        from chalicelib.limits.records import Retention
        from chalicelib.root import Root

        root = Root(get_settings())
        client = aws.client("dynamodb")
        # The limits use the shared client; the connection store a per-thread resource's client.
        counter = RequestCounter(client, aws.resource("dynamodb").meta.client)
        now = time.time()
        sub = str(uuid.uuid4())
        print(f"DynamoDB requests per operation (n={n}, moto {moto.url}):")

        admit_ms = timed(lambda i: root.rate_limiter.admit(sub, now), n)
        print(f"  admitted action              {per_op(counter.take(), n)}   median {admit_ms:.2f} ms")

        def rejected_figure(memory: LimitedMemory | None, label: str) -> float:
            limiter = RateLimiter(client, root.settings.usage_table, limits_for=lambda groups: UserLimits(1, 10000),
                                  retention=Retention(hourly_seconds=3600 * 48, daily_seconds=86400),
                                  memory=memory)
            user = str(uuid.uuid4())
            limiter.admit(user, now)
            counter.take()

            def reject(_i: int) -> None:
                try:
                    limiter.admit(user, now)
                except RateLimited:
                    return
                raise AssertionError("admitted over the limit")

            ms = timed(reject, n)
            print(f"  rejected action, {label:<11} {per_op(counter.take(), n)}   median {ms:.3f} ms")
            return ms

        no_memory_ms = rejected_figure(None, "no memory")
        memory_ms = rejected_figure(LimitedMemory(), "memory")

        budget = root.token_budget
        reservations = []
        reserve_ms = timed(lambda i: reservations.append(budget.reserve(
            str(uuid.uuid4()), now, request_id=f"r{i}", estimated_input=200, max_tokens=500)), n)
        reserve_calls = counter.take()
        settle_ms = timed(lambda i: budget.settle(reservations[i], 180, 320, "bench-model"), n)
        settle_calls = counter.take()
        print(f"  chat admission (reserve)     {per_op(reserve_calls, n)}   median {reserve_ms:.2f} ms")
        print(f"  chat settlement (settle)     {per_op(settle_calls, n)}   median {settle_ms:.2f} ms")
        timed(lambda i: budget.settle(reservations[i], 180, 320, "bench-model"), n)
        print(f"  settlement retried           {per_op(counter.take(), n)}   (idempotent: counts nothing twice)")
        report_ms = timed(lambda i: root.usage.report(sub, now), n)
        print(f"  usage report (usage.get, GET /usage) {per_op(counter.take(), n)}   median {report_ms:.2f} ms")

        # The message path: what admission adds to an action (ping is never counted), through the
        # app's handlers and action table, its frames to the last of `senders` rather than to API Gateway.
        from chalicelib.aws.management_api import Sender
        from chalicelib.dispatch.handlers import WebsocketHandlers
        from chalicelib.dispatch.table import ActionTable

        class NullSender:
            def send(self, connection_id: str, frame: dict[str, Any]) -> None:
                if frame.get("type") == "error":
                    raise AssertionError(frame)

            def close(self, connection_id: str) -> None:
                pass

        senders: list[Sender] = [NullSender()]
        handlers = WebsocketHandlers(connections=root.connections, rate_limiter=root.rate_limiter,
                                     actions=ActionTable(root).lookup, sender_for=lambda endpoint: senders[-1],
                                     frame_limit=root.settings.connection_frame_limit, clock=root.clock)
        root.connections.add(connection_id="bench=", user_sub=str(uuid.uuid4()), username="bench", groups=(),
                             token_expires_at=int(now) + 3600, endpoint="http://127.0.0.1:9", now=now)

        def message(connection_id: str, body: str, _i: int) -> None:
            handlers.message(connection_id=connection_id, body=body, is_base64=False, endpoint="http://127.0.0.1:9")

        counter.take()
        for action in ("ping", "usage.get"):
            ms = timed(functools.partial(message, "bench=", f'{{"action": "{action}", "id": "b"}}'), n)
            print(f"  message path: {action:<15} {per_op(counter.take(), n)}   median {ms:.2f} ms")
        # A chat refused for its budget: the failed reservation, then its count as a request.
        spent = str(uuid.uuid4())
        budget.reserve(spent, now, request_id="spent", estimated_input=1, max_tokens=9_999)
        root.connections.add(connection_id="spent=", user_sub=spent, username="bench", groups=(),
                             token_expires_at=int(now) + 3600, endpoint="http://127.0.0.1:9", now=now)
        refusals: list[str] = []

        class RefusalSender(NullSender):
            def send(self, connection_id: str, frame: dict[str, Any]) -> None:
                refusals.append(frame["error"]["code"])

        senders.append(RefusalSender())
        counter.take()
        body = '{"action": "chat.send", "id": "b", "prompt": "hello", "maxTokens": 500}'
        ms = timed(functools.partial(message, "spent=", body), n)
        assert set(refusals) == {"BUDGET_EXCEEDED"}, set(refusals)
        print(f"  message path: chat.send refused for its budget {per_op(counter.take(), n)}   median {ms:.2f} ms")
        print(f"Ratios (medians, same run): rejected without memory / admitted = {no_memory_ms / admit_ms:.2f}; "
              f"with memory / without = {memory_ms / no_memory_ms:.4f}; "
              f"settle / reserve = {settle_ms / reserve_ms:.2f}")
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
