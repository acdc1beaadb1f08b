"""Where a chat goes: every module of `app.py` and `chalicelib/` that one chat runs code in.

Starts the local stack with a profiler in its process (a `sitecustomize` on PYTHONPATH: every
thread's function calls, filtered to the app's own files), signs in as `dev`, creates a session,
sends a first chat in it (which warms every cache), clears what was recorded, then sends a
second chat in the same session (history read, reservation, worker, stream, settlement, the
exchange appended) and prints the modules whose functions ran for it, by folder, and how many
sit outside `chalicelib/chat/`. With `--against REV`, the same for REV's tree (`git archive`,
this venv), in the same run.

    .venv/bin/python -m bench.chat_path [--against 3a11521]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.stream import baseline_tree
from client import IdeClient, load_endpoints
from devserver import launcher
from tests.e2e.conftest import GENEROUS_LIMITS, sign_in_as

ROOT = Path(__file__).resolve().parent.parent

# Runs in the stack's interpreter before anything else: records the app's modules whose functions are
# called, and on SIGUSR1 writes them to TRACE_OUT.<n>.json and starts afresh.
SITECUSTOMIZE = '''
import json, os, signal, sys, threading
root, out, seen, dumps = os.environ["TRACE_ROOT"], os.environ["TRACE_OUT"], set(), [0]
def profile(frame, event, arg):
    if event == "call":
        name = frame.f_code.co_filename
        if name.startswith(root) and ("/chalicelib/" in name or name == root + "/app.py"):
            seen.add(name[len(root) + 1:])
def dump(signum, frame):
    dumps[0] += 1
    with open(f"{out}.{dumps[0]}.json", "w") as file:
        json.dump(sorted(seen), file)
    seen.clear()
sys.setprofile(profile)
threading.setprofile(profile)
signal.signal(signal.SIGUSR1, dump)
'''


def chat_modules(root: Path, work: Path) -> list[str]:
    """The modules (paths relative to `root`) the second chat of a session ran code in."""
    hook = work / "hook"
    hook.mkdir(parents=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = work / "modules"
    env = {**GENEROUS_LIMITS, "PYTHONPATH": str(hook), "TRACE_ROOT": str(root), "TRACE_OUT": str(out),
           "LOG_LEVEL": "WARNING"}
    running = launcher.start(work / "state", env=env, ready_within=120, root=root)
    try:
        endpoints = load_endpoints(running.endpoints_path)
        assert endpoints.websocket_url, "the stack names no WebSocket API"
        with IdeClient(endpoints.websocket_url, sign_in_as(endpoints, "dev").access_token) as client:
            session = client.request("session.create", title="where a chat goes")["data"]["session"]["sessionId"]
            for prompt, dump in (("hello", 1), ("and again", 2)):
                chat_id = client.send("chat.send", prompt=prompt, sessionId=session)
                while (frame := client.next_frame(chat_id, timeout=60))["type"] not in ("done", "error"):
                    pass
                if frame["type"] != "done":
                    raise SystemExit(f"the chat failed: {frame}")
                time.sleep(1)  # the worker's last writes (the session's exchange) after `done`
                os.kill(running.process.pid, signal.SIGUSR1)
                deadline = time.monotonic() + 10
                while not Path(f"{out}.{dump}.json").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
        return json.loads(Path(f"{out}.2.json").read_text())
    finally:
        launcher.stop_process(running.process)


def report(name: str, modules: list[str]) -> None:
    by_folder: dict[str, list[str]] = defaultdict(list)
    for module in modules:
        folder, _, file = module.rpartition("/")
        by_folder[folder or "."].append(file.removesuffix(".py"))
    inside = len(by_folder.get("chalicelib/chat", []))
    print(f"{name}: {len(modules)} modules, {inside} in chalicelib/chat/, {len(modules) - inside} outside")
    for folder in sorted(by_folder):
        print(f"  {folder + '/':27} {len(by_folder[folder]):2}  {', '.join(by_folder[folder])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", metavar="REV", help="also trace this commit's tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chat-path-") as scratch:
        work = Path(scratch)
        report("this tree", chat_modules(ROOT, work / "this"))
        if args.against:
            tree = baseline_tree(args.against, work / "tree")
            report(args.against, chat_modules(tree, work / "against"))


if __name__ == "__main__":
    main()
