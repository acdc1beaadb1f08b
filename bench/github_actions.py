"""GitHub actions through the local stack: round trips, against a ping measured in the same run.

    .venv/bin/python bench/github_actions.py [--rounds 30]

Starts its own local stack on free ports. Prints medians in milliseconds and the ratio to
the median ping (the cost of the WebSocket path alone), and, for the HTTP boundary, a kept-alive
connection against a new connection per call (both to the emulator). For pull requests of 1,
10 and 100 files it also prints the GitHub requests and writes (POST, PATCH, PUT, DELETE: what
GitHub's secondary rate limit counts) each one made, as the emulator counted them.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.transport import HttpTransport  # noqa: E402
from tests.e2e.conftest import GENEROUS_LIMITS, LocalStack, start_stack, stop_stack  # noqa: E402

REPO = "octo-org/hello-world"


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(action: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def fresh_connection_get(url: str) -> None:
    """What a transport without keep-alive does: connect, ask, read, close."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    connection.request("GET", parts.path)
    connection.getresponse().read()
    connection.close()


def emulator(stack: LocalStack, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(stack.emulators["githubApiUrl"] + path, method="POST" if body else "GET",
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as state_dir:
        # The bench's own calls are not limited: one connection sends them all.
        stack = start_stack(Path(state_dir), env={**GENEROUS_LIMITS, "CONNECTION_FRAME_LIMIT": "100000"})
        try:
            with stack.connect() as client:
                def ask(action, **params):
                    frame = client.request(action, timeout=30, **params)
                    assert frame["type"] == "result", frame

                ask("github.repos")  # warm: the secret, the JWT, an installation token
                results = {"ping (baseline)": timed(client.ping, rounds)}
                results["github.repos"] = timed(lambda: ask("github.repos"), rounds)
                results["github.tree"] = timed(lambda: ask("github.tree", repo=REPO), rounds)
                results["github.file"] = timed(lambda: ask("github.file", repo=REPO, path="README.md"), rounds)
                counter = iter(range(10**6))
                # The bench measures our calls, not GitHub's limit on them.
                emulator(stack, "/_emulator/write-limits", {"perMinute": 10**6, "perHour": 10**6})
                per_pr: dict[str, tuple[float, float]] = {}
                for files in (1, 10, 100):
                    name, prs = f"github.pr ({files} files)", max(5, rounds // 3)
                    before = emulator(stack, "/_emulator/state")["stats"]

                    def open_pr(files: int = files) -> None:
                        ask("github.pr", repo=REPO, branch=f"bench/{time.time_ns()}-{next(counter)}", title="bench",
                            files=[{"path": f"bench/f{i}.txt", "content": f"{i}\n"} for i in range(files)])
                    results[name] = timed(open_pr, prs)
                    after = emulator(stack, "/_emulator/state")["stats"]
                    per_pr[name] = ((after["requests"] - before["requests"]) / prs,
                                    (after["writes"] - before["writes"]) / prs)
            url = stack.emulators["githubApiUrl"] + "/_emulator/state"
            kept = HttpTransport(connect_timeout=2, read_timeout=5)
            results["HTTP call, kept-alive connection"] = timed(
                lambda: kept.send("GET", url, headers={}, body=None), rounds * 3)
            results["HTTP call, new connection each time"] = timed(lambda: fresh_connection_get(url), rounds * 3)
        finally:
            stop_stack(stack.process)
    baseline = median_ms(results["ping (baseline)"])
    print(f"{'what':40} {'n':>4} {'median ms':>10} {'x ping':>7}")
    for name, samples in results.items():
        print(f"{name:40} {len(samples):>4} {median_ms(samples):>10.2f} {median_ms(samples) / baseline:>7.2f}")
    ratio = median_ms(results["HTTP call, new connection each time"]) / median_ms(
        results["HTTP call, kept-alive connection"])
    print(f"new connection / kept-alive (plain HTTP on loopback; TLS to GitHub costs more): {ratio:.2f}")
    print(f"{'GitHub calls of one pull request':40} {'requests':>10} {'writes':>7}")
    for name, (requests, writes) in per_pr.items():
        print(f"{name:40} {requests:>10.1f} {writes:>7.1f}")


if __name__ == "__main__":
    main()
