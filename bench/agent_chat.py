"""Agent-grade chat: the handler's time to `ack`, and the worker's memory for the largest request it accepts.

    .venv/bin/python bench/agent_chat.py [--rounds 15]

Starts its own moto server and Bedrock emulator, and calls the app's `$default` handler
in-process with API Gateway's event shapes (the worker's invocation is recorded, not run),
so a figure is the handler's own work against moto: parsing and checking the request,
reading an upload, the admission write, the request record, the worker's start (the `ack` is the
worker's first frame: the figure ends when the handler hands it the job). Three chats, rounds
alternating between them, medians, and their ratio to the v1 chat measured in the same run:

- v1: a `prompt` of 120 bytes;
- a 50-message, 20-tool conversation in one frame (tool calls, results, ~26 KiB);
- a 2 MiB conversation through `chat.upload` (three screenshots and ~500 KB of text, within
  Claude's 200k-token window), the PUT made before the clock starts.

Then the worker's peak memory for the largest request the app accepts: an 8 MiB body
(CHAT_UPLOAD_MAX_BYTES; 190k tokens of text and images), admitted by the handler, run by
`ChatWorker` in a fresh Python process (as a Lambda container: the app imported, then one
chat) against moto and the emulator; its peak resident set (VmHWM; Lambda's "Max Memory Used"
is the same kind of figure) beside the worker's configured memory (.chalice/config.json).
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devserver import aws as dev_aws  # noqa: E402

TOOLS = [{"name": f"tool_{n}", "description": f"Tool number {n}: reads or changes the workspace",
          "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}, "text": {"type": "string"}},
                          "required": ["path"]}} for n in range(20)]


def frame_conversation() -> list[dict]:
    """50 messages of an agent's session: asks, tool calls and their results, and answers."""
    messages: list[dict] = [{"role": "user", "content": "Fix the failing test in src/app.py, please."}]
    for n in range(24):
        call = {"type": "toolUse", "toolUseId": f"tooluse_{n:04d}", "name": f"tool_{n % 20}",
                "input": {"path": f"src/module_{n}.py"}}
        result = {"type": "toolResult", "toolUseId": f"tooluse_{n:04d}", "status": "success",
                  "content": [{"type": "text", "text": f"def f_{n}(x):\n    return x + {n}\n" * 12}]}
        messages += [{"role": "assistant", "content": [{"type": "text", "text": f"Reading module {n}."}, call]},
                     {"role": "user", "content": [result]}]
    messages.append({"role": "user", "content": "Now fix module 7 and run the tests."})  # merged with the results
    return messages  # 50


def screenshot(seed: int) -> str:
    from PIL import Image

    pixels = random.Random(seed).randbytes(480 * 280 * 3)  # noise: the PNG is as large as its pixels
    out = io.BytesIO()
    Image.frombytes("RGB", (480, 280), pixels).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def uploaded_conversation(text_bytes: int, images: int) -> list[dict]:
    turns: list[dict] = []
    per_turn = max(1, text_bytes // max(1, images))
    for n in range(max(1, images)):
        content = [{"type": "image", "format": "png", "data": screenshot(n)}] if n < images else []
        content.append({"type": "text", "text": f"turn {n}: " + "code " * (per_turn // 5)})
        turns += [{"role": "user", "content": content}, {"role": "assistant", "content": f"answer {n}"}]
    return [*turns, {"role": "user", "content": "And the last question?"}]


class TimingSender:
    """The Management API, recording when each frame was posted."""

    def __init__(self) -> None:
        self.posted: list[tuple[float, dict]] = []

    def send(self, connection_id: str, frame: dict) -> None:
        self.posted.append((time.perf_counter(), frame))

    def close(self, connection_id: str) -> None:
        pass


def bench_root(sender: TimingSender, started_jobs: list[dict]) -> Any:
    """The app's composition root, with the Management API timed and the worker's invocations recorded."""
    from functools import cached_property

    from chalicelib.aws.lambda_invoke import WorkerInvoker
    from chalicelib.aws.management_api import Sender
    from chalicelib.chat.job import ChatJob
    from chalicelib.chat.worker import ack_frame
    from chalicelib.config import get_settings
    from chalicelib.root import Root

    class RecordingInvoker(WorkerInvoker):
        def start(self, function_name: str, payload: dict[str, Any]) -> None:
            # The handler's work ends here: the worker posts the `ack` (built from this job) first thing.
            sender.posted.append((time.perf_counter(), ack_frame(ChatJob.from_event(payload))))
            started_jobs.append(payload)

    class BenchRoot(Root):
        def sender(self, endpoint: str) -> Sender:
            return sender

        @cached_property
        def invoker(self) -> WorkerInvoker:
            return RecordingInvoker(None)

    return BenchRoot(get_settings())


def start_moto() -> dev_aws.MotoServer:
    moto = dev_aws.MotoServer(listener=dev_aws.listen(), log_path=Path(tempfile.gettempdir()) / "bench-moto.log")
    moto.start()
    return moto


def put(answer: dict, data: bytes) -> float:
    started = time.perf_counter()
    request = urllib.request.Request(answer["url"], data=data, method="PUT", headers=answer["headers"])
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--worker-child", help=argparse.SUPPRESS)  # the worker's process: the job's event file
    args = parser.parse_args()
    if args.worker_child:
        return worker_child(Path(args.worker_child))
    from chalicelib.observability import metrics

    metrics.set_output(lambda line: None)
    from devserver.bedrock import BedrockEmulator
    from tests.servers import serve

    moto = start_moto()
    try:
        with serve(BedrockEmulator().make_app()) as bedrock_url:
            provisioned = dev_aws.provision(moto.url, stage="bench")
            env = {**dev_aws.app_environment(moto.url, "http://127.0.0.1:9", provisioned),
                   "TOKEN_BUDGET_PER_HOUR": "1000000000", "RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000",
                   "LOG_LEVEL": "WARNING", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock_url}
            os.environ.update(env)
            run(args.rounds, env, provisioned)
    finally:
        moto.stop()


def run(rounds: int, env: dict[str, str], provisioned: dev_aws.Provisioned) -> None:
    from chalicelib import process
    from chalicelib.root import get_root
    from tests.handler_calls import connect, login, message

    sender = TimingSender()
    started_jobs: list[dict] = []
    process.install(get_root, bench_root(sender, started_jobs))
    boto = lambda service: dev_aws.aws_client(service, endpoint=env["AWS_ENDPOINT_URL"])
    connect("bench=", headers={"Authorization": f"Bearer {login(boto, provisioned)}"})

    def frame(action: str, **params: Any) -> dict:
        message("bench=", json.dumps({"action": action, "id": "b", **params}))
        return sender.posted[-1][1]

    def time_to_ack(**params: Any) -> float:
        body = json.dumps({"action": "chat.send", "id": "b", **params})
        began = time.perf_counter()
        message("bench=", body)
        at, ack = sender.posted[-1]
        if ack["type"] != "ack":
            raise SystemExit(f"refused: {ack}")
        return at - began

    conversation: dict[str, Any] = {"messages": frame_conversation(), "tools": TOOLS, "maxTokens": 1000}
    frame_bytes = len(json.dumps({"action": "chat.send", "id": "b", **conversation}).encode())
    assert len(conversation["messages"]) == 50 and frame_bytes <= 32 * 1024, frame_bytes
    big = json.dumps({"messages": uploaded_conversation(500_000, 3), "maxTokens": 1000}).encode()
    assert 2 * 1024 * 1024 <= len(big) < 2.5 * 1024 * 1024, len(big)

    def upload() -> str:
        answer = frame("chat.upload", size=len(big))["data"]
        puts.append(put(answer, big))
        return answer["uploadId"]

    samples: dict[str, list[float]] = {"v1 prompt": [], "50 messages, 20 tools (frame)": [],
                                       "2 MiB (chat.upload)": []}
    puts: list[float] = []
    prompt = "Explain what this function does and how to test it, briefly: def f(x): return x * 2 # thanks!!"
    for round_ in range(rounds + 2):  # the first two warm the container
        figures = (time_to_ack(prompt=prompt, maxTokens=1000), time_to_ack(**conversation),
                   time_to_ack(uploadId=upload()))
        if round_ >= 2:
            for name, seconds in zip(samples, figures, strict=True):
                samples[name].append(seconds * 1000)
    base = statistics.median(samples["v1 prompt"])
    print(f"handler time to ack, median of {rounds} rounds (moto, in-process):")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"  {name:32s} {median:8.1f} ms   x{median / base:5.2f} of v1")
    print(f"  (the 2 MiB body's PUT, client side: median {statistics.median(puts) * 1000:.1f} ms, not in the figure;"
          f" frame of the 50-message chat: {frame_bytes} bytes)")
    memory(env, frame, started_jobs)


def memory(env: dict[str, str], frame: Callable[..., dict], started_jobs: list[dict]) -> None:
    """The worker's peak RSS for the largest request the app accepts, in a process of its own."""
    from chalicelib.config import get_settings

    limit = get_settings().chat_upload_max_bytes
    conversation = uploaded_conversation(720_000, 12)  # 190k tokens of text and images: Claude's window is 200k
    body: dict[str, Any] = {"messages": conversation, "maxTokens": 1000}
    data = json.dumps(body).encode()
    while True:  # to the limit with more screenshots, as an agent's would be
        more = {"type": "image", "format": "png", "data": screenshot(len(data))}
        if len(data) + len(more["data"]) + 50 > limit:
            break
        body["messages"][0]["content"].insert(0, more)
        data = json.dumps(body).encode()
    assert limit - 600_000 < len(data) <= limit, len(data)
    answer = frame("chat.upload", size=len(data))["data"]
    put(answer, data)
    ack = frame("chat.send", uploadId=answer["uploadId"])
    if ack["type"] != "ack":
        raise SystemExit(f"the largest request was refused: {ack}")
    event = Path(tempfile.mkdtemp(prefix="bench-agent-")) / "event.json"
    event.write_text(json.dumps(started_jobs[-1]))
    child = subprocess.run([sys.executable, __file__, "--worker-child", str(event)], env={**os.environ, **env},
                           capture_output=True, text=True, timeout=300, check=False)
    if child.returncode != 0:
        raise SystemExit(f"the worker's process failed:\n{child.stderr[-3000:]}")
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    configured = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["prod"][
        "lambda_functions"]["bedrock_worker"]["lambda_memory_size"]
    images = sum(1 for m in conversation for b in (m["content"] if isinstance(m["content"], list) else [])
                 if b.get("type") == "image")
    plan = started_jobs[-1]["input"]
    counted = "counted by Bedrock" if plan["exact"] else "bounded"
    print(f"worker memory, the largest accepted request ({len(data) / 2 ** 20:.2f} MiB body, {images} images,"
          f" {plan['inputTokens']} input tokens reserved, {counted}):")
    print(f"  after importing the app   {figures['baselineMb']:7.1f} MB")
    print(f"  peak (VmHWM)              {figures['peakMb']:7.1f} MB   of {configured} MB configured "
          f"({figures['peakMb'] / configured:.0%}); the chat ended {figures['status']}")


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries the parent's size at fork into a
    child's ru_maxrss, even across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status: Linux only")


def worker_child(event_path: Path) -> None:
    """A fresh process, as a Lambda container: import the app, then run one chat."""
    import app  # noqa: F401  (what a cold container imports)
    from chalicelib.chat.job import ChatJob
    from chalicelib.chat.worker import ChatWorker  # noqa: F401
    from chalicelib.observability import metrics

    metrics.set_output(lambda line: None)
    event = json.loads(event_path.read_text())
    baseline = peak_rss_mb()
    outcome = bench_root(TimingSender(), []).chat_worker.run(ChatJob.from_event(event))
    peak = peak_rss_mb()
    status = outcome.status if outcome.error is None else f"{outcome.status} ({outcome.error.message})"
    print(json.dumps({"baselineMb": baseline, "peakMb": peak, "status": status}))


if __name__ == "__main__":
    main()
