"""The IDE bridge's cost: what `llm-ide serve` adds to a chat, against the client library's direct WebSocket.

In one run, against one backend, chats alternate between two paths:

  direct   the client library (IdeClient) sends `chat.send` on its own WebSocket
  bridge   the official OpenAI SDK streams /v1/chat/completions from `llm-ide serve` (a separate
           process, as an IDE uses it), which sends the same `chat.send` on its one WebSocket

Medians printed: time to first token (request sent -> first text received) and completion time
(request sent -> the end), each path's and the bridge's addition (goal: <= 5 ms at the median),
also read by a bare HTTP client (no SDK), which separates the bridge's own cost from the SDK's;
then the bridge's resident memory (VmRSS) idle and with 20 concurrent streams.

The backend is `--backend scripted` (default: tests/protocol_backend.py, protocol v1.1 over a real
WebSocket, in this process) or `--backend stack` (the local stack, `make dev`'s, started here:
it needs the protocol's v1.1 `messages`).

Usage: .venv/bin/python -m bench.bridge [--runs 30] [--backend scripted|stack] [--concurrent 20]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402

from client import IdeClient, Tokens, TokenStore, load_endpoints  # noqa: E402
from devserver import launcher  # noqa: E402
from tests.e2e.conftest import sign_in_as  # noqa: E402

LLM_IDE = str(Path(sys.executable).with_name("llm-ide"))
TEXT = "lorem ipsum dolor sit amet " * 20  # 540 characters: 78 deltas of the scripted model


@dataclass
class Backend:
    websocket_url: str
    token: str
    prompt: str  # what each chat asks (the same on both paths)
    model: str | None
    stop: Callable[[], object]


def scripted_backend() -> Backend:
    from tests.protocol_backend import ProtocolBackend
    from tests.servers import serve

    fake = ProtocolBackend()
    server = serve(fake.make_app())
    url = server.__enter__()
    fake.base_url = url
    return Backend(url.replace("http://", "ws://") + "/ws", "bench-token", "[[slow:2]] " + TEXT, None,
                   lambda: server.__exit__(None, None, None))


def stack_backend(state_dir: Path) -> Backend:
    running = launcher.start(state_dir, env={"LOG_LEVEL": "WARNING", "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000",
                                             "TOKEN_BUDGET_PER_HOUR": "100000000",
                                             "DEV_MODEL_TOKENS_PER_SECOND": "200"}, ready_within=90)
    endpoints = load_endpoints(running.endpoints_path)
    tokens = sign_in_as(endpoints, "dev")
    assert endpoints.websocket_url, f"{running.endpoints_path} names no WebSocket API"
    with IdeClient(endpoints.websocket_url, tokens.access_token) as client:
        listed = client.request("models.list")
    if listed.get("type") != "result":
        running.stop()
        raise SystemExit(f"the local stack has no models.list (protocol v1.1): {listed}")
    return Backend(endpoints.websocket_url, tokens.access_token, TEXT, listed["data"]["models"][0]["id"], running.stop)


def start_bridge(backend: Backend, home: Path) -> tuple[subprocess.Popen, str, str]:
    now = int(time.time())
    TokenStore(home / "tokens.json").save([backend.websocket_url], Tokens(
        "bench", backend.token, backend.token, None, expires_at=now + 3600, issued_at=now))
    process = subprocess.Popen([LLM_IDE, "serve", "--port", "0", "--url", backend.websocket_url],
                               env={**os.environ, "LLM_IDE_HOME": str(home),
                                    "LLM_IDE_ENDPOINTS": str(home / "no-endpoints.json")},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.match(r"OpenAI API\s+(\S+)\s+key (\S+)", line)
    if not match:
        process.kill()
        raise SystemExit(f"llm-ide serve did not start: {line}{process.stdout.read(2000)}")
    threading.Thread(target=process.stdout.read, daemon=True).start()  # drain its log
    return process, match[1], match[2]


def direct(backend: Backend, client: IdeClient) -> tuple[float, float, str]:
    sent = time.perf_counter()
    first, text = None, []
    params: dict[str, Any] = {"messages": [{"role": "user", "content": backend.prompt}], "maxTokens": 2000}
    for frame in client.frames(client.send("chat.send", **params), timeout=60):
        if frame["type"] == "delta":
            first = first or time.perf_counter()
            text.append(frame["text"])
        elif frame["type"] == "error":
            raise SystemExit(f"the direct chat failed: {frame['error']}")
    return (first or sent) - sent, time.perf_counter() - sent, "".join(text)


def bridged(backend: Backend, sdk: openai.OpenAI) -> tuple[float, float, str]:
    sent = time.perf_counter()
    first, text = None, []
    for chunk in sdk.chat.completions.create(model=backend.model or "default", max_tokens=2000, stream=True,
                                             messages=[{"role": "user", "content": backend.prompt}]):
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            text.append(chunk.choices[0].delta.content)
    return (first or sent) - sent, time.perf_counter() - sent, "".join(text)


def raw_http(backend: Backend, connection: http.client.HTTPConnection, key: str) -> tuple[float, float, str]:
    """The bridge read by a minimal HTTP client (no SDK): what the bridge itself adds."""
    body = json.dumps({"model": backend.model or "default", "max_tokens": 2000, "stream": True,
                       "messages": [{"role": "user", "content": backend.prompt}]})
    sent = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body=body,
                       headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = connection.getresponse()
    first, text = None, []
    for line in response:
        if not line.startswith(b"data: {"):
            continue
        choices = json.loads(line[6:])["choices"]
        content = choices[0]["delta"].get("content") if choices else None
        if content:
            first = first or time.perf_counter()
            text.append(content)
    return (first or sent) - sent, time.perf_counter() - sent, "".join(text)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def concurrent_rss(backend: Backend, sdk: openai.OpenAI, pid: int, streams: int) -> int:
    """The bridge's VmRSS, sampled while `streams` chats stream at once; the peak."""
    slow = backend.prompt.replace("[[slow:2]]", "[[slow:20]]") if "[[slow:2]]" in backend.prompt else backend.prompt
    peak, running = 0, []

    def stream() -> None:
        for _ in sdk.chat.completions.create(model=backend.model or "default", max_tokens=2000, stream=True,
                                             messages=[{"role": "user", "content": slow}]):
            pass

    running = [threading.Thread(target=stream) for _ in range(streams)]
    for thread in running:
        thread.start()
    while any(t.is_alive() for t in running):
        peak = max(peak, rss_kib(pid))
        time.sleep(0.05)
    return peak


def median_ms(values: Iterator[float]) -> float:
    return statistics.median(values) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--backend", choices=("scripted", "stack"), default="scripted")
    parser.add_argument("--concurrent", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    backend = scripted_backend() if args.backend == "scripted" else stack_backend(work / "stack")
    process, base_url, key = start_bridge(backend, work / "home")
    try:
        sdk = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
        results: dict[str, list[tuple[float, float]]] = {"direct": [], "bridge": [], "raw": []}
        parts = urlsplit(base_url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        with IdeClient(backend.websocket_url, backend.token) as client:
            paths: dict[str, Callable[[], tuple[float, float, str]]] = {
                "direct": lambda: direct(backend, client), "bridge": lambda: bridged(backend, sdk),
                "raw": lambda: raw_http(backend, connection, key)}
            expected = direct(backend, client)[2]  # warm every path once
            for name, run in paths.items():
                assert run()[2] == expected, f"the {name} reply differs from the direct one"
            for _ in range(args.runs):
                for name, run in paths.items():
                    first, total, text = run()
                    assert text == expected, f"the {name} reply differs"
                    results[name].append((first, total))
        idle = rss_kib(process.pid)
        peak = concurrent_rss(backend, sdk, process.pid, args.concurrent)
    finally:
        process.terminate()
        process.wait(10)
        backend.stop()
    print(f"backend: {args.backend}; {args.runs} runs per path, alternating; reply {len(expected)} characters")
    print("direct: the client library's WebSocket; bridge: the OpenAI SDK through llm-ide serve;"
          " raw: a bare HTTP client through llm-ide serve")
    print(f"{'':22}{'direct':>10}{'bridge':>10}{'added':>10}{'raw':>10}{'added':>10}")
    for index, label in ((0, "time to first token"), (1, "completion time")):
        direct_ms, bridge_ms, raw_ms = (median_ms(r[index] for r in results[name])
                                        for name in ("direct", "bridge", "raw"))
        print(f"{label:22}{direct_ms:>8.1f}ms{bridge_ms:>8.1f}ms{bridge_ms - direct_ms:>8.1f}ms"
              f"{raw_ms:>8.1f}ms{raw_ms - direct_ms:>8.1f}ms")
    print("goal: added <= 5 ms at the median")
    print(f"bridge resident memory: {idle / 1024:.1f} MiB idle, {peak / 1024:.1f} MiB peak with"
          f" {args.concurrent} concurrent streams ({(peak - idle) / args.concurrent:.0f} KiB a stream)")


if __name__ == "__main__":
    main()
