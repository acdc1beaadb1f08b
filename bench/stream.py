"""Streaming benchmark: this tree's chat path against a baseline's, side by side in one run.

Starts two local stacks, both with DEV_MODEL_TOKENS_PER_SECOND=100 and DEV_POST_LATENCY_MS=30:
"this tree", and a baseline, by default today's path before resumable streams (BASELINE_REF,
where the handler posts the `ack`, then starts the worker, which then calls the model): that
commit's source tree (`git archive`) run with this venv and this tree's
DynamoDB emulator (devserver/moto_atomic.py). `--baseline coalescing-off` compares with
this tree at STREAM_FLUSH_BYTES=0 instead (one post per model delta, as the AWS samples stream).
Each run, alternating between the stacks:

- a ~1,000-token chat (ASCII, 4 bytes a token): the completion ratio (client's send -> `done` /
  the model's request -> last token, goal <= 1.05), time to first delta minus the model's time to
  first token (goal <= 60 ms), the first-delta delay, delta frames per 1,000 tokens, and on this
  tree what keeping its frames for chat.resume wrote (items and bytes per 1,000 tokens);
- a short chat whose first token comes 300 ms after the request (`[[slow:300]]`), about what a
  Bedrock model takes to read a prompt: time to first delta minus the model's, again, when the
  model is no faster than a post;
- on this tree, a ~300-token chat dropped after 5 deltas and resumed (`chat.resume`) on a new
  socket: from the new socket's open to the first replayed frame; the text checked whole.

The model's own timings come from the emulator (/_emulator/streams/<sha256 of the prompt>), on
the same clock as the client's. Medians printed, with the ratio this tree / baseline.

Usage: .venv/bin/python -m bench.stream [--runs 5] [--tokens 1000] [--baseline REF|coalescing-off]
       [--flush-bytes N --flush-ms N] [--timeline]

`--timeline` also times every AWS call of this tree's stack (DEV_TIME_AWS_CALLS) and prints the
[[slow:300]] chat's path to its first delta, call by call, for the run whose figure is the median.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from client import IdeClient, load_endpoints  # noqa: E402
from devserver import launcher  # noqa: E402
from infra import resources  # noqa: E402
from tests.e2e.conftest import sign_in_as  # noqa: E402

PACING = {"DEV_MODEL_TOKENS_PER_SECOND": "100", "DEV_POST_LATENCY_MS": "30",
          # Many chats in one hour: the limits must not be what is measured.
          "TOKEN_BUDGET_PER_HOUR": "100000000", "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000"}
# main before resumable streams (issue 16): the handler posted the ack before it started the worker.
BASELINE_REF = "6f177ed"
COALESCING_OFF = "coalescing-off"
SLOW_FIRST_TOKEN_MS = 300


@dataclass
class Stack:
    name: str
    running: launcher.StackProcess
    websocket_url: str
    bedrock_url: str
    token: str
    requests: Any  # the requests table (a boto3 Table), to read what keeping frames wrote
    timed_calls: Path | None = None  # DEV_TIME_AWS_CALLS of the stack (--timeline)
    timelines: list[Timeline] = field(default_factory=list)

    def connect(self) -> IdeClient:
        return IdeClient(self.websocket_url, self.token)

    def calls_between(self, start: float, end: float) -> list[dict[str, Any]]:
        """The stack's AWS calls that started in [start, end], in order (the file the stack appends to)."""
        assert self.timed_calls is not None
        calls = [json.loads(line) for line in self.timed_calls.read_text().splitlines()]
        return sorted((c for c in calls if start <= c["start"] <= end), key=lambda c: c["start"])


@dataclass
class Timeline:
    """One `[[slow:300]]` chat, send to first delta: the client's times, the model's, the stack's AWS calls."""

    ttfd_minus_ttft_ms: float
    sent: float
    first_delta: float
    model: dict[str, float]
    calls: list[dict[str, Any]]


def start(name: str, env: dict[str, str], state_dir: Path, root: Path = ROOT, *, timeline: bool = False) -> Stack:
    timed_calls = state_dir.parent / f"{state_dir.name}-calls.jsonl" if timeline else None
    if timed_calls is not None:
        env = {**env, "DEV_TIME_AWS_CALLS": str(timed_calls)}
    try:
        running = launcher.start(state_dir, env={**PACING, **env, "LOG_LEVEL": "WARNING"}, ready_within=90,
                                 root=root)
    except launcher.StackNotReady as exc:
        raise SystemExit(f"the {name} stack did not start: {exc}") from None
    endpoints = load_endpoints(running.endpoints_path)
    tokens = sign_in_as(endpoints, "dev")
    assert endpoints.websocket_url, f"{running.endpoints_path} names no WebSocket API"
    table = boto3.resource("dynamodb", endpoint_url=running.document["awsEndpointUrl"], region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local"
                           ).Table(resources.table("requests").physical_name("local"))
    return Stack(name, running, endpoints.websocket_url, running.emulators["bedrockUrl"], tokens.access_token, table,
                 timed_calls)


def model_timing(stack: Stack, prompt: str) -> dict[str, float]:
    key = hashlib.sha256(prompt.encode()).hexdigest()
    with urllib.request.urlopen(f"{stack.bedrock_url}/_emulator/streams/{key}", timeout=5) as response:
        return json.loads(response.read())


def ascii_prompt(tokens: int) -> str:
    """A unique prompt of `tokens` echo-model tokens: prose (this repository's docs, in ASCII), which compresses
    as a model's replies do, unlike a repeated phrase (what keeping the frames costs depends on it)."""
    prose = " ".join(ASCII_DOCS.replace("[[", "(").replace("]]", ")").split())  # no emulator directives
    start = hash(uuid.uuid4()) % (len(prose) - tokens * 4)
    return (f"run {uuid.uuid4().hex} " + prose[start:])[: tokens * 4]


ASCII_DOCS = "".join(path.read_text().encode("ascii", "ignore").decode()
                     for path in sorted((ROOT / "docs").glob("*.md")))


def one_chat(stack: Stack, tokens: int) -> dict[str, float]:
    prompt = ascii_prompt(tokens)
    with stack.connect() as client:
        client.ping()  # connected and warm
        sent = time.time()
        ack_at = first_delta = done = None
        frames = 0
        for frame in client.chat(prompt, maxTokens=tokens * 4, timeout=60):
            if frame["type"] == "ack":
                ack_at, request_id = time.time(), frame["requestId"]
            elif frame["type"] == "delta":
                frames += 1
                first_delta = first_delta or time.time()
            elif frame["type"] == "error":
                raise SystemExit(f"chat failed: {frame}")
            elif frame["type"] == "done":
                done, usage = time.time(), frame["usage"]
    assert ack_at and first_delta and done
    model = model_timing(stack, prompt)
    generation = model["last_token_at"] - model["received_at"]
    result = {
        "completion_ratio": (done - sent) / generation,
        "ack_ms": (ack_at - sent) * 1000,
        "ttfd_minus_model_ttft_ms": ((first_delta - sent) - (model["first_token_at"] - model["received_at"])) * 1000,
        "first_delta_delay_ms": (first_delta - model["first_token_at"]) * 1000,
        "frames_per_1k_tokens": frames * 1000 / usage["outputTokens"],
        "completion_s": done - sent,
        "generation_s": generation,
        "output_tokens": usage["outputTokens"],
    }
    result.update(kept_frames(stack, request_id, usage["outputTokens"]))
    return result


def kept_frames(stack: Stack, request_id: str, output_tokens: int) -> dict[str, float]:
    """What keeping the chat's frames for chat.resume wrote: items, and bytes, per 1,000 output tokens."""
    record = stack.requests.get_item(Key={"requestId": request_id}, ConsistentRead=True).get("Item") or {}
    if "frameParts" not in record:
        return {}  # a tree that keeps no frames
    parts = int(record["frameParts"])
    items = [stack.requests.get_item(Key={"requestId": f"frames#{request_id}#{n}"})["Item"] for n in range(parts)]
    stored = sum(len(bytes(item["frames"])) for item in items)
    return {"kept_items_per_1k_tokens": parts * 1000 / output_tokens,
            "kept_bytes_per_1k_tokens": stored * 1000 / output_tokens}


def slow_first_token(stack: Stack) -> dict[str, float]:
    """TTFD minus the model's TTFT when the model reads the prompt for 300 ms before its first token."""
    prompt = f"[[slow:{SLOW_FIRST_TOKEN_MS}]] {uuid.uuid4().hex[:8]}"
    with stack.connect() as client:
        client.ping()
        sent = time.time()
        first_delta = None
        for frame in client.chat(prompt, timeout=60):
            if frame["type"] == "delta" and first_delta is None:
                first_delta = time.time()
            elif frame["type"] == "error":
                raise SystemExit(f"chat failed: {frame}")
    assert first_delta is not None
    model = model_timing(stack, prompt)
    ttfd_minus_ttft = ((first_delta - sent) - (model["first_token_at"] - model["received_at"])) * 1000
    if stack.timed_calls is not None:
        calls = stack.calls_between(sent, first_delta)
        stack.timelines.append(Timeline(ttfd_minus_ttft, sent, first_delta, model, calls))
    return {"ttfd_minus_slow_model_ttft_ms": ttfd_minus_ttft}


def first_replayed_frame(stack: Stack) -> dict[str, float]:
    """A ~300-token chat dropped after 5 deltas and resumed on a new socket: its open -> the first replayed
    stream frame (the resume's result comes just before it); the whole text checked, seq without gap."""
    prompt = ascii_prompt(300)
    first = stack.connect()
    chat_id = first.send("chat.send", id=f"bench-{uuid.uuid4().hex[:12]}", prompt=prompt, maxTokens=1200)
    request_id = first.next_frame(chat_id, timeout=30)["requestId"]
    seen = [first.next_frame(chat_id, timeout=30) for _ in range(5)]
    first.close()
    with stack.connect() as second:
        opened = time.perf_counter()
        resume_id = second.send("chat.resume", requestId=request_id, afterSeq=seen[-1]["seq"])
        frame = second.next_frame(chat_id, timeout=30)
        replayed = time.perf_counter()
        assert frame["type"] == "delta" and frame["seq"] == seen[-1]["seq"] + 1, frame
        assert second.next_frame(resume_id)["type"] == "result"
        rest = list(second.frames(chat_id, timeout=30))
    stream = [*seen, frame, *(f for f in rest if f["type"] == "delta")]
    assert "".join(f["text"] for f in stream) == prompt and [f["seq"] for f in stream] == list(range(len(stream)))
    return {"resume_first_frame_ms": (replayed - opened) * 1000}


EMULATOR_FILES = ("moto_atomic.py", "moto_cognito.py")  # moto's server, run as a script, and what it imports beside it


def baseline_tree(ref: str, into: Path) -> Path:
    """The source tree at `ref`, extracted from this repository (no checkout is touched), with this tree's
    moto server (devserver/moto_atomic.py and the moto_cognito.py it imports, which trees before it lack):
    the emulator is the instrument, the same for both stacks."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    for emulator in EMULATOR_FILES:
        shutil.copyfile(ROOT / "devserver" / emulator, into / "devserver" / emulator)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--baseline", default=BASELINE_REF,
                        help=f"a git ref (default {BASELINE_REF}: today's path), or {COALESCING_OFF}")
    parser.add_argument("--flush-bytes", help="STREAM_FLUSH_BYTES of this tree's stack (default: the app's)")
    parser.add_argument("--flush-ms", help="STREAM_FLUSH_MS of this tree's stack (default: the app's)")
    parser.add_argument("--timeline", action="store_true",
                        help="also time this tree's AWS calls (DEV_TIME_AWS_CALLS) and print the path of the "
                             f"[[slow:{SLOW_FIRST_TOKEN_MS}]] chat to its first delta (the median run's)")
    args = parser.parse_args()
    env = {k: v for k, v in (("STREAM_FLUSH_BYTES", args.flush_bytes), ("STREAM_FLUSH_MS", args.flush_ms))
           if v is not None}
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        stacks: list[Stack] = []
        try:
            stacks.append(start("this tree", env, Path(tmp, "a"), timeline=args.timeline))
            if args.baseline == COALESCING_OFF:
                stacks.append(start(COALESCING_OFF, {"STREAM_FLUSH_BYTES": "0"}, Path(tmp, "b")))
            else:
                tree = baseline_tree(args.baseline, Path(tmp, "baseline-tree"))
                stacks.append(start(f"at {args.baseline}", env, Path(tmp, "b"), root=tree))
            for stack in stacks:  # a warm worker, as in a steady stream of chats (not a cold start)
                with stack.connect() as client:
                    list(client.chat("warm up", timeout=60))
            results: dict[str, list[dict[str, float]]] = {s.name: [] for s in stacks}
            for run in range(args.runs):
                for stack in stacks:
                    figures = {**one_chat(stack, args.tokens), **slow_first_token(stack)}
                    if stack is stacks[0]:
                        figures.update(first_replayed_frame(stack))
                    results[stack.name].append(figures)
                print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
        finally:
            for stack in stacks:
                stack.running.stop()
    report(results, args, env)
    if stacks[0].timelines:
        print_timeline(stacks[0].timelines)


ROWS = [("completion_ratio", "completion / generation", "{:.3f}", "<= 1.05"),
        ("ttfd_minus_model_ttft_ms", "TTFD - model TTFT (ms), first token 10 ms", "{:.1f}", "<= 60"),
        ("ttfd_minus_slow_model_ttft_ms", f"TTFD - model TTFT (ms), first token {SLOW_FIRST_TOKEN_MS} ms",
         "{:.1f}", "<= 60"),
        ("first_delta_delay_ms", "first-delta delay (ms)", "{:.1f}", "<= 60"),
        ("ack_ms", "send -> ack (ms)", "{:.1f}", "(info)"),
        ("frames_per_1k_tokens", "frames / 1,000 tokens", "{:.1f}", "<= 40"),
        ("kept_items_per_1k_tokens", "frames kept: items written / 1k tokens", "{:.2f}", "(info)"),
        ("kept_bytes_per_1k_tokens", "frames kept: bytes / 1k tokens", "{:.0f}", "(info)"),
        ("resume_first_frame_ms", "new socket open -> first replayed frame (ms)", "{:.1f}", "(info)"),
        ("completion_s", "completion seen by client (s)", "{:.2f}", "(info)"),
        ("generation_s", "model generation (s)", "{:.2f}", "(info)"),
        ("output_tokens", "output tokens", "{:.0f}", "(info)")]


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace, env: dict[str, str]) -> None:
    names = list(results)

    def median(name: str, key: str) -> float | None:
        values = [r[key] for r in results[name] if key in r]
        return statistics.median(values) if values else None

    settings = ", ".join(f"{k}={v}" for k, v in env.items()) or "the app's defaults"
    print(f"\nStreaming, medians of {args.runs} runs of ~{args.tokens} tokens; "
          f"DEV_MODEL_TOKENS_PER_SECOND=100, DEV_POST_LATENCY_MS=30; this tree with {settings}")
    print(f"{'metric':46} {names[0]:>12} {names[1]:>16} {'ratio':>8}  goal")
    for key, label, fmt, goal in ROWS:
        a, b = median(names[0], key), median(names[1], key)
        shown = [fmt.format(v) if v is not None else "-" for v in (a, b)]
        ratio = f"{a / b:.2f}" if a is not None and b else "-"
        print(f"{label:46} {shown[0]:>12} {shown[1]:>16} {ratio:>8}  {goal}")


def print_timeline(timelines: list[Timeline]) -> None:
    """The path of the run whose TTFD - TTFT is the median, in ms after the client's send."""
    run = sorted(timelines, key=lambda t: t.ttfd_minus_ttft_ms)[len(timelines) // 2]
    received = run.model["received_at"]

    def at(t: float) -> str:
        return f"{(t - run.sent) * 1000:7.1f}"

    print(f"\nThis tree's [[slow:{SLOW_FIRST_TOKEN_MS}]] chat, send to first delta (the median of "
          f"{len(timelines)} runs: TTFD - TTFT {run.ttfd_minus_ttft_ms:.1f} ms), ms after the client's send:")
    rows = [(c["start"], f"{at(c['start'])} {at(c['end'])}  {c['service']} {c['operation']} "
                         f"({c['handler'] or c['thread']})") for c in run.calls]
    rows += [(received, f"{at(received)}          the model receives the request"),
             (run.model["first_token_at"], f"{at(run.model['first_token_at'])}          the model's first token"),
             (run.first_delta, f"{at(run.first_delta)}          the client receives the first delta")]
    for _, row in sorted(rows):
        print(row)
    print(f"the path before the model: {(received - run.sent) * 1000:.1f} ms; "
          f"after its first token: {(run.first_delta - run.model['first_token_at']) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
