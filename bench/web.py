"""Web client benchmark: bundle size, time to interactive, and the main thread while streaming.

Builds web/dist/ (infra/web_bundle.py), starts a local stack paced like a real model
(DEV_MODEL_TOKENS_PER_SECOND, default 200) and drives Debian's Chromium, headless, with
Playwright. Each figure is a median over --runs page loads or answers; each has a baseline
measured in the same run:

  bundle (gzip)         what the first load fetches (index.html, app.js, style.css), gzipped;
                        baseline: the test page this client replaced (web/ at BASELINE_COMMIT)
  time to interactive   navigation start -> the page's `llm-ide:interactive` mark, first load
                        (sign-in form) and signed-in reload (session restored, socket open, lists
                        loaded); baseline: navigation -> load of a bare document from the same
                        server (config.json), the floor of server plus browser
  sign-in               the longest task while signing in (SRP's modular exponentiations)
  long tasks            the browser's Long Tasks API (tasks over 50 ms) while a ~4,000-token
                        Markdown answer (prose, lists, Python code) streams in; the longest task
                        and the total blocking time (the sum of each task's time over 50 ms);
                        baseline: the same answer rendered at once, by opening its session

Usage: .venv/bin/python -m bench.web [--runs 5] [--tokens-per-second 200]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devserver import launcher  # noqa: E402
from infra import web_bundle  # noqa: E402

BASELINE_COMMIT = "3a11521"  # main before the web IDE: web/index.html, app.js, style.css (the test page)
FIRST_LOAD = ("index.html", "app.js", "style.css")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 120_000
# Long tasks (and the interactive mark) recorded from the start of each page.
OBSERVE = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longTasks.push([e.startTime, e.duration]);
})
  .observe({ type: "longtask", buffered: true });
"""


def gz(data: bytes) -> int:
    return len(gzip.compress(data, 9))


def bundle_sizes(dist: Path) -> dict[str, int]:
    first = sum(gz((dist / name).read_bytes()) for name in FIRST_LOAD)
    chunks = sorted(dist.glob("chunk-*.js"))
    baseline = 0
    for name in FIRST_LOAD:
        shown = subprocess.run(["git", "show", f"{BASELINE_COMMIT}:web/{name}"], cwd=ROOT, capture_output=True,
                               check=False)
        baseline += gz(shown.stdout) if shown.returncode == 0 else 0
    return {"first_load_gz": first, "first_load_raw": sum((dist / n).stat().st_size for n in FIRST_LOAD),
            "lazy_chunks_gz": sum(gz(c.read_bytes()) for c in chunks), "baseline_gz": baseline}


def answer_text(tokens: int) -> str:
    """Markdown of about `tokens` echo-model tokens (4 bytes each): prose, lists and Python code."""
    parts: list[str] = []
    n = 0
    while sum(len(p) for p in parts) < tokens * 4:
        n += 1
        parts.append(f"## Step {n}\n\nThe handler reads the **request**, checks its `sessionId` and answers "
                     f"with a *result* frame; see [the protocol](https://example.com/protocol#{n}).\n\n"
                     f"- validate the input of step {n}\n- call the store\n- send the frame\n\n"
                     f"```python\ndef step_{n}(event, context):\n    body = json.loads(event[\"body\"])\n"
                     f"    if not body.get(\"sessionId\"):\n        raise BadRequest(\"sessionId\")  # step {n}\n"
                     f"    return {{\"statusCode\": 200, \"body\": json.dumps(body)}}\n```\n\n")
    return "".join(parts)[: tokens * 4]


def tasks_since(page: Any, since: float) -> list[float]:
    """The durations of the long tasks that started at or after `since` (performance.now() ms)."""
    return [duration for start, duration in page.evaluate("window.__longTasks") if start >= since]


def interactive_ms(page: Any) -> float:
    page.locator("body[data-ready=true]").wait_for(state="attached", timeout=WAIT_MS)
    return page.evaluate("performance.getEntriesByName('llm-ide:interactive')[0].startTime")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--tokens-per-second", type=int, default=200)
    args = parser.parse_args(argv)
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no Chromium: `make test-tools` installs Debian's")
    from playwright.sync_api import sync_playwright

    sizes = bundle_sizes(web_bundle.build_assets())
    state = Path(tempfile.mkdtemp(prefix="bench-web-"))
    env = {"DEV_MODEL_TOKENS_PER_SECOND": str(args.tokens_per_second), "LOG_LEVEL": "WARNING",
           "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000", "TOKEN_BUDGET_PER_HOUR": "100000000"}
    stack = launcher.start(state, env=env, ready_within=90)
    try:
        document = json.loads(stack.endpoints_path.read_text())
        url = document["httpUrl"] + "/"
        password = next(u["password"] for u in document["users"] if u["username"] == "dev")
        first, signed, floor, sign_in = [], [], [], []
        stream_max, stream_tbt, stored_max, stored_tbt = [], [], [], []
        answer = answer_text(args.tokens)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            for _ in range(args.runs):
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                context.add_init_script(OBSERVE)
                page = context.new_page()
                page.goto(document["httpUrl"] + "/config.json")
                floor.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
                page.goto(url)
                first.append(interactive_ms(page))
                page.fill("#username", "dev")
                page.fill("#password", password)
                since = page.evaluate("performance.now()")
                page.click("#signin-form button[type=submit]")
                page.locator("#status", has_text="connected as dev").wait_for(timeout=WAIT_MS)
                page.wait_for_timeout(200)
                sign_in.append(max(tasks_since(page, since), default=0.0))
                page.reload()
                signed.append(interactive_ms(page))

                page.fill("#max-tokens", str(args.tokens + 100))
                page.fill("#prompt", answer)
                page.wait_for_timeout(500)  # the reload's own tasks are over
                since = page.evaluate("performance.now()")
                page.click("#send")
                page.locator(".msg.assistant .meta .stop").last.wait_for(timeout=WAIT_MS)
                page.wait_for_timeout(300)  # the last frame's render and highlighting
                tasks = tasks_since(page, since)
                stream_max.append(max(tasks, default=0.0))
                stream_tbt.append(sum(t - 50 for t in tasks))

                page.reload()
                interactive_ms(page)
                page.wait_for_timeout(500)
                since = page.evaluate("performance.now()")
                page.locator("#sessions li .session-open").first.click()
                page.locator(".msg.assistant pre.code").last.wait_for(timeout=WAIT_MS)
                page.wait_for_timeout(500)
                tasks = tasks_since(page, since)
                stored_max.append(max(tasks, default=0.0))
                stored_tbt.append(sum(t - 50 for t in tasks))
                context.close()
            browser.close()
    finally:
        launcher.stop_process(stack.process)
        shutil.rmtree(state, ignore_errors=True)

    med = statistics.median
    print(f"web client benchmark: {args.runs} runs, a {args.tokens}-token answer at {args.tokens_per_second} tokens/s "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: the browser shares them with the stack)")
    print(f"  first load (gzip)          {sizes['first_load_gz'] / 1024:8.1f} KiB   "
          f"(raw {sizes['first_load_raw'] / 1024:.0f} KiB; baseline test page {sizes['baseline_gz'] / 1024:.1f} KiB, "
          f"x{sizes['first_load_gz'] / max(sizes['baseline_gz'], 1):.1f})")
    print(f"  lazy chunks (gzip)         {sizes['lazy_chunks_gz'] / 1024:8.1f} KiB   "
          "(code viewer, diff view, one chunk per language: loaded when first used)")
    print(f"  time to interactive        {med(first):8.0f} ms    (sign-in form; floor {med(floor):.0f} ms, "
          f"x{med(first) / max(med(floor), 1):.1f})")
    print(f"  ... signed in, reloaded    {med(signed):8.0f} ms    (session restored, socket open, lists loaded)")
    print(f"  sign-in: longest task      {med(sign_in):8.0f} ms    (the SRP arithmetic, 3072-bit, in JavaScript)")
    print(f"  streaming: longest task    {med(stream_max):8.0f} ms    (goal < 50; at once from history: "
          f"{med(stored_max):.0f} ms)")
    print(f"  streaming: blocking time   {med(stream_tbt):8.0f} ms    (at once from history: {med(stored_tbt):.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
