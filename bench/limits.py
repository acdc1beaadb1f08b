"""DynamoDB requests per admitted action, per rejected action and per chat (reserve + settle), with the token
budget alone and with money budgets (a user's daily and monthly budget and a group's pooled one); and the time
CountTokens adds before a chat's `ack`.

Counts every HTTP request the app's own DynamoDB client sends (botocore's
`before-send` event, so retries would count too) against moto in server mode,
with the limiters built exactly as the app builds them (its composition root, `Root`). Goal: one
write to admit an action or a chat (with money budgets too: one transaction, after one read of the
counters), one write to settle a chat, and no request at all for an action the container already
knows to be over its limit. CountTokens is timed against the local stack's Bedrock emulator: the
handler's time to `ack` for a model Bedrock counts against one it does not (whose input is bounded
without a call).

    .venv/bin/python bench/limits.py [--n 200]
"""
from __future__ import annotations

import argparse
import collections
import functools
import os
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

    moto = dev_aws.MotoServer(listener=dev_aws.listen(), log_path=Path(tempfile.gettempdir()) / "bench-moto.log")
    moto.start()
    try:
        provisioned = dev_aws.provision(moto.url, stage="bench")
        os.environ.update(dev_aws.app_environment(moto.url, "http://127.0.0.1:9", provisioned))
        os.environ["RATE_LIMIT_REQUESTS_PER_MINUTE"] = "1000000"  # the admitted figure needs room
        os.environ["CONNECTION_FRAME_LIMIT"] = "100000"  # and the message path's frames, on one connection
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
            str(uuid.uuid4()), now, request_id=f"r{i}", input_tokens=200, max_tokens=500)), n)
        reserve_calls = counter.take()
        settle_ms = timed(lambda i: budget.settle(reservations[i], reservations[i].charge(180, 320), "bench-model"), n)
        settle_calls = counter.take()
        print(f"  chat admission (reserve)     {per_op(reserve_calls, n)}   median {reserve_ms:.2f} ms")
        print(f"  chat settlement (settle)     {per_op(settle_calls, n)}   median {settle_ms:.2f} ms")
        timed(lambda i: budget.settle(reservations[i], reservations[i].charge(180, 320), "bench-model"), n)
        print(f"  settlement retried           {per_op(counter.take(), n)}   (idempotent: counts nothing twice)")
        money_ms = money_figures(root, counter, now, n)
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
        budget.reserve(spent, now, request_id="spent", input_tokens=1, max_tokens=9_999)
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
              f"settle / reserve = {settle_ms / reserve_ms:.2f}; "
              f"reserve with money budgets / token budget alone = {money_ms[0] / reserve_ms:.2f}; "
              f"settle with a group / without = {money_ms[1] / settle_ms:.2f}")
        count_tokens_figures(provisioned, n)
    finally:
        moto.stop()


def money_figures(root: Any, counter: RequestCounter, now: float, n: int) -> tuple[float, float]:
    """A user with a daily and a monthly money budget, in a group with a pooled monthly one: requests per
    admission and per settlement. Returns their medians (ms)."""
    import dataclasses
    from types import MappingProxyType

    from chalicelib.limits import Pricing
    from chalicelib.root import Root

    settings = dataclasses.replace(root.settings, cost_budget_per_day=10**9, cost_budget_per_month=10**10,
                                   limits_by_group=MappingProxyType({"bench-team": MappingProxyType(
                                       {"pooledCostUsdPerMonth": 10**11})}))
    money = Root(settings, clock=root.clock)
    model = settings.models.models[settings.default_model_id]
    reservations: list[Any] = []
    reserve_ms = timed(lambda i: reservations.append(money.token_budget.reserve(
        str(uuid.uuid4()), now, groups=("bench-team",), request_id=f"m{i}", input_tokens=200, max_tokens=500,
        pricing=Pricing.of(model))), n)
    print("  with money budgets (user day + month, group pool):")
    print(f"    chat admission (reserve)   {per_op(counter.take(), n)}   median {reserve_ms:.2f} ms")
    settle_ms = timed(lambda i: money.token_budget.settle(reservations[i], reservations[i].charge(180, 320),
                                                          model.id), n)
    print(f"    chat settlement (settle)   {per_op(counter.take(), n)}   median {settle_ms:.2f} ms")
    report_ms = timed(lambda i: money.usage.report(reservations[i].user_sub, now, groups=("bench-team",)), n)
    print(f"    usage report (usage.get)   {per_op(counter.take(), n)}   median {report_ms:.2f} ms")
    return reserve_ms, settle_ms


def count_tokens_figures(provisioned: Any, n: int) -> None:
    """The handler's time to `ack` (chat.send, in-process, against moto) for a model Bedrock counts (one CountTokens
    call to the local stack's emulator before the reservation) and for one it does not (the input bounded in
    memory); their difference is what CountTokens adds before the ack."""
    import json

    from bench.agent_chat import TimingSender, bench_root
    from chalicelib import process
    from chalicelib.root import get_root
    from devserver.bedrock import BedrockEmulator
    from tests.handler_calls import connect, login, message
    from tests.servers import serve

    with serve(BedrockEmulator().make_app()) as bedrock_url:
        os.environ.update({"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock_url, "TOKEN_BUDGET_PER_HOUR": "1000000000",
                           "LOG_LEVEL": "WARNING"})
        process.reset()
        sender = TimingSender()
        process.install(get_root, bench_root(sender, []))
        boto = lambda service: dev_aws.aws_client(service, endpoint=os.environ["AWS_ENDPOINT_URL"])
        connect("count=", headers={"Authorization": f"Bearer {login(boto, provisioned)}"})
        prompt = "Explain what this function does, briefly: def f(x): return {'x': [x, x * 2]} # thanks!!"

        def time_to_ack(model: str) -> float:
            began = time.perf_counter()
            message("count=", json.dumps({"action": "chat.send", "id": "b", "prompt": prompt, "model": model,
                                          "maxTokens": 100}))
            at, ack = sender.posted[-1]
            if ack["type"] != "ack":
                raise SystemExit(f"refused: {ack}")
            return (at - began) * 1000

        counted, bounded = "claude-sonnet-4-20250514", "claude-3-haiku-20240307"
        samples: dict[str, list[float]] = {counted: [], bounded: []}
        for round_ in range(n + 2):  # the first two warm the container and its clients
            figures = {model: time_to_ack(model) for model in samples}
            if round_ >= 2:
                for model, ms in figures.items():
                    samples[model].append(ms)
        with_count, without = statistics.median(samples[counted]), statistics.median(samples[bounded])
        print(f"chat.send, handler time to ack (median of {n}, moto and the Bedrock emulator, in-process):")
        print(f"  Claude Sonnet 4 (CountTokens)       {with_count:7.2f} ms")
        print(f"  Claude 3 Haiku (input bound, no call) {without:5.2f} ms")
        print(f"  CountTokens adds {with_count - without:.2f} ms (x{with_count / without:.2f})")


if __name__ == "__main__":
    main()
