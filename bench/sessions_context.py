"""Latency of the session and context actions in a local stack of its own, as ratios to `ping`.

    .venv/bin/python bench/sessions_context.py [--rounds 30]

Each figure is the median round trip of one request over one WebSocket, and its ratio to
the median ping measured in the same run (the gateway, the handler's frame parsing and the
connection lookup, with no store behind it). The stack's limits are raised (one connection sends
about eight frames a round, past the default 100 actions a minute and 100 frames in 10 s).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client import IdeClient
from tests.e2e.conftest import GENEROUS_LIMITS, start_stack, stop_stack


def timed(client: IdeClient, action: str, **params: Any) -> float:
    started = time.perf_counter()
    frame = client.request(action, timeout=30, **params)
    elapsed = time.perf_counter() - started
    if frame["type"] != "result" and action != "ping":
        raise SystemExit(f"{action} failed: {frame}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as state_dir:
        stack = start_stack(Path(state_dir), env={**GENEROUS_LIMITS, "CONNECTION_FRAME_LIMIT": "100000"})
        try:
            with stack.connect() as client:
                samples = measure(client, args.rounds)
        finally:
            stop_stack(stack.process)
    baseline = statistics.median(samples["ping"])
    print(f"{'operation':<22} {'median ms':>10} {'x ping':>8}  ({args.rounds} rounds)")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<22} {median * 1000:>10.1f} {median / baseline:>8.1f}")


def measure(client: IdeClient, rounds: int) -> dict[str, list[float]]:
    """Each operation's round trips in seconds: `rounds` of each, and a fifth as many presigned PUTs (at least 5)."""
    text_16k = "x" * 16 * 1024
    session_id = client.request("session.create", title="bench")["data"]["session"]["sessionId"]
    client.request("context.put", path="bench/file.txt", content=text_16k)
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, action, params in (
            ("ping", "ping", {}),
            ("session.create", "session.create", {"title": "bench"}),
            ("session.list (20)", "session.list", {"limit": 20}),
            ("session.get", "session.get", {"sessionId": session_id}),
            ("context.put 16 KiB", "context.put", {"path": "bench/file.txt", "content": text_16k}),
            ("context.get 16 KiB", "context.get", {"path": "bench/file.txt"}),
            ("context.list", "context.list", {"prefix": "bench/"}),
            ("context.uploadUrl", "context.uploadUrl", {"path": "bench/up.bin", "size": 1 << 20}),
        ):
            samples.setdefault(name, []).append(timed(client, action, **params))
    grant = client.request("context.uploadUrl", path="bench/up.bin", size=1 << 20)["data"]
    put_times = []
    for _ in range(max(5, rounds // 5)):
        started = time.perf_counter()
        request = urllib.request.Request(grant["url"], data=b"\0" * (1 << 20), method="PUT", headers=grant["headers"])
        urllib.request.urlopen(request, timeout=30).close()
        put_times.append(time.perf_counter() - started)
    samples["presigned PUT 1 MiB"] = put_times
    return samples


if __name__ == "__main__":
    main()
