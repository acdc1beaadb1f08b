"""Cold start: what each Lambda function pays in a new container, against `import boto3, chalice`.

Builds the Lambda bundle as `chalice package --stage dev` does (requirements.txt, app.py,
chalicelib/), unpacks it, and for every function starts a fresh interpreter in it (`python -S`,
so only the bundle and the standard library can be imported, as in Lambda) that imports
`app` and hands the function's handler its first event in API Gateway's or the invoker's
shape (bench/first_event.py), against moto, the Bedrock and GitHub emulators and a recording
Management API (bench/coldstart_lab.py). Each first event's effect is checked (the `pong`
posted, the chat's `done`, the GitHub `result`, the REST answers), so a failure cannot pass
for speed. The workers' jobs are made beforehand by the tree's own `chat.send` and
`github.repos`, in an interpreter that is not timed.

Per function it prints medians over --runs fresh interpreters: the time from starting the
interpreter to the end of `import app` and to the end of the first event, the interpreter's
CPU time (user + system, start to exit: what a busy machine disturbs least), and the ratio
of the first event's end to the baseline, a fresh interpreter of the same bundle that only
imports `boto3, chalice`, measured in the same run. As packaged, the bundle has no bytecode,
and Lambda's /var/task is read-only, so every cold start compiles every module it imports
from the bundle (boto3 and botocore included); --compiled compiles the bundles first, to
show what bytecode in the bundle would save.

--against REV does the same, in the same run, for a temporary `git worktree` of REV with its
own bundle: the trees alternate step by step (and which goes first, run by run), so drift
hits both, and the last columns are the medians of the per-run differences (this tree minus
REV) with how many runs came out higher. Also prints which modules each first event loaded,
and each bundle's size; --importtime DIR adds one uncounted run under `python -X importtime`.

    .venv/bin/python bench/coldstart.py [--runs 9] [--against 3a11521] [--compiled] [--importtime DIR]

About 1.3 minutes per run with --against on 2 busy cores (20 seconds with --compiled), plus
two `chalice package` (pip downloads the Linux wheels once).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.coldstart_lab import STAGE, Lab, running_lab  # noqa: E402
from devserver import authorizers, events  # noqa: E402

FIRST_EVENT = Path(__file__).with_name("first_event.py")
GOAL_MS = 80.0  # `import app` over the baseline (docs/PERFORMANCE.md)
HEAVY = ("jwt", "cryptography", "aws_xray_sdk", "chalicelib.github.client", "boto3.resources")
WS_DOMAIN = "wsapi12345.execute-api.us-east-1.amazonaws.com"
REST_DOMAIN = f"{events.REST_API_ID}.execute-api.us-east-1.amazonaws.com"
CLIENT_IP = "192.0.2.10"
USER_AGENT = "llm-ide-bench/1.0"

# (key, what the row measures), in the order the runs take them.
ROWS = (
    ("baseline", "import boto3, chalice (the baseline)"),
    ("import app", "import boto3, chalice, app (the goal's)"),
    ("ws_authorizer", "ws_authorizer: $connect's token"),
    ("websocket_connect", "websocket_connect: $connect"),
    ("websocket_message", "websocket_message: ping"),
    ("websocket_message traced", "websocket_message: ping, tracing on"),
    ("websocket_disconnect", "websocket_disconnect: $disconnect"),
    ("rest_authorizer", "rest_authorizer: GET /usage's token"),
    ("api_handler /health", "REST (app.app): GET /health"),
    ("api_handler /usage", "REST (app.app): GET /usage"),
    ("bedrock_worker", "bedrock_worker: a chat's job"),
    ("github_worker", "github_worker: a github.repos job"),
)
HANDLERS = {"app.ws_authorizer", "app.websocket_connect", "app.websocket_message", "app.websocket_disconnect",
            "app.rest_authorizer", "app.app", "app.bedrock_worker", "app.github_worker"}


class BenchFailed(RuntimeError):
    """A first event did not do what the app promises: its figure would mean nothing."""


def expect(condition: bool, what: str, detail: Any) -> None:
    if not condition:
        raise BenchFailed(f"{what}: {str(detail)[:3000]}")


@dataclass
class Tree:
    label: str
    root: Path
    bundle: Path  # the unpacked deployment.zip
    zipped: int
    unzipped: int
    files: int
    lambda_functions: dict[str, dict[str, Any]]  # the stage's settings per function
    handlers: set[str]  # every function's handler in the SAM template
    log: Path  # the children's output (the app's log lines)


@dataclass
class Sample:
    import_ms: float  # interpreter start -> `import app` (or the row's imports) done
    event_ms: float | None  # interpreter start -> the first event handled
    cpu_ms: float  # the interpreter's CPU time (user + system), start to exit: less sensitive to a busy machine
    import_cpu_ms: float  # the CPU time of the imports alone (after any preload)
    answer: Any
    modules: list[str]


@dataclass
class Step:
    row: str
    spec: dict[str, Any]
    env: dict[str, str]


@dataclass
class Figures:
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, row: str, sample: Sample) -> None:
        self.samples.setdefault(row, []).append(sample)

    def median(self, row: str, attribute: str) -> float:
        return statistics.median(getattr(s, attribute) for s in self.samples[row])


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def checkout(rev: str, workdir: Path) -> Iterator[Path]:
    """A temporary worktree of `rev`, removed afterwards."""
    path = workdir / f"checkout-{rev}"
    git("worktree", "add", "--detach", "--quiet", str(path), rev)
    try:
        yield path
    finally:
        git("worktree", "remove", "--force", str(path))


def package(label: str, root: Path, workdir: Path, *, compiled: bool) -> Tree:
    """`chalice package` of the tree at `root` as a clean checkout has it, unpacked (and compiled with
    --compiled). chalice packages `chalicelib/` as it finds it, `__pycache__` included: the project's
    files are copied without it first, so a test run's bytecode neither helps nor weighs."""
    project = workdir / f"{label}-project"
    for name in ("chalicelib", ".chalice", "vendor"):  # what chalice reads or packages besides the two files
        if (root / name).exists():
            shutil.copytree(root / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "deployed"))
    for name in ("app.py", "requirements.txt"):
        shutil.copy2(root / name, project / name)
    out = workdir / f"{label}-package"
    subprocess.run([str(Path(sys.executable).with_name("chalice")), "package", "--stage", STAGE, str(out)],
                   cwd=project, check=True, capture_output=True, env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"})
    archive = out / "deployment.zip"
    bundle = workdir / label
    with zipfile.ZipFile(archive) as zf:
        infos = [info for info in zf.infolist() if not info.is_dir()]
        zf.extractall(bundle)
    expect(not any(info.filename.endswith(".pyc") for info in infos), "a clean checkout's bundle ships bytecode", label)
    if compiled:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(bundle)], check=True)
    template = json.loads((out / "sam.json").read_text())
    handlers = {r["Properties"]["Handler"] for r in template["Resources"].values()
                if r["Type"] == "AWS::Serverless::Function"}
    config = json.loads((root / ".chalice" / "config.json").read_text())["stages"][STAGE]
    return Tree(label=label, root=root, bundle=bundle, zipped=archive.stat().st_size,
                unzipped=sum(info.file_size for info in infos), files=len(infos),
                lambda_functions=config["lambda_functions"], handlers=handlers, log=workdir / f"{label}.log")


def stage_variables(tree: Tree) -> dict[str, str]:
    return json.loads((tree.root / ".chalice" / "config.json").read_text())["stages"][STAGE]["environment_variables"]


def cold(tree: Tree, step: Step, workdir: Path, importtime: Path | None = None) -> Sample:
    """One fresh interpreter in the tree's bundle; the times are from just before it was started.
    With `importtime`, the interpreter runs with `-X importtime` and its report goes to that directory."""
    spec_path, out_path = workdir / "spec.json", workdir / "out.json"
    spec_path.write_text(json.dumps(step.spec))
    out_path.unlink(missing_ok=True)
    options = ["-X", "importtime"] if importtime else []
    with tree.log.open("ab") as log, contextlib.ExitStack() as stack:
        errors = log
        if importtime:
            (importtime / tree.label).mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^\w$]+", "_", step.row)
            errors = stack.enter_context((importtime / tree.label / f"{name}.txt").open("wb"))
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-S", "-P", *options, str(FIRST_EVENT), str(spec_path), str(out_path)],
                             cwd=tree.bundle, env=step.env, stdout=log, stderr=errors, check=False)
    if run.returncode != 0:
        raise BenchFailed(f"{tree.label}: {step.row} exited with {run.returncode}; see {tree.log}:\n"
                          + tree.log.read_text(errors="replace")[-3000:])
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out_path.read_text())
    return Sample(import_ms=(result["imported"] - started) * 1000,
                  event_ms=(result["handled"][0] - started) * 1000 if result["handled"] else None,
                  cpu_ms=(cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime) * 1000,
                  import_cpu_ms=result["importCpuMs"],
                  answer=result["answers"][0] if result["answers"] else None, modules=result["modules"])


class Invoker:
    """Steps for one tree: its bundle, the lab's environment, each function's Lambda settings."""

    def __init__(self, tree: Tree, lab: Lab) -> None:
        self.tree = tree
        variables = stage_variables(tree)
        self._env = lab.environment(variables)
        self._traced_env = lab.environment(variables, tracing=True)

    def imports(self, row: str, *modules: str, preload: list[str] | None = None) -> Step:
        """A fresh interpreter that imports `modules` (after `preload`, not counted in their CPU time)."""
        return Step(row, {"preload": preload or [], "imports": list(modules)},
                    self._lambda_env(self._env, "api_handler", "app.app"))

    def invocation(self, function: str, handler: str, event: dict[str, Any]) -> dict[str, Any]:
        """One event for `app.<handler>`, with the Lambda settings of `function` (timeout, memory)."""
        settings = self.tree.lambda_functions[function]
        return {"handler": handler, "function": function, "timeoutMs": settings["lambda_timeout"] * 1000,
                "memoryMb": settings["lambda_memory_size"], "event": event}

    def step(self, row: str, *invocations: dict[str, Any], traced: bool = False) -> Step:
        """A fresh interpreter that runs `invocations` in order, as the first one's function."""
        first = invocations[0]
        env = self._lambda_env(self._traced_env if traced else self._env, first["function"],
                               f"app.{first['handler']}")
        return Step(row, {"steps": list(invocations)}, env)

    def first_event(self, row: str, function: str, event: dict[str, Any], *, handler: str | None = None,
                    traced: bool = False) -> Step:
        """A fresh interpreter of `function` (its handler `app.<function>` unless named) and one event."""
        return self.step(row, self.invocation(function, handler or function, event), traced=traced)

    def _lambda_env(self, base: dict[str, str], function: str, handler: str) -> dict[str, str]:
        bundle = str(self.tree.bundle)
        return {**base, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC",
                "PYTHONPATH": bundle, "PYTHONDONTWRITEBYTECODE": "1",  # /var/task is read-only
                "LAMBDA_TASK_ROOT": bundle, "_HANDLER": handler, "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
                "AWS_LAMBDA_FUNCTION_NAME": f"llm-ide-{STAGE}-{function}"}


def ws_connect(connection_id: str, token: str, authorizer: dict[str, Any] | None = None) -> dict[str, Any]:
    return events.connect_event(connection_id=connection_id, connected_at_ms=int(time.time() * 1000), stage=STAGE,
                                domain_name=WS_DOMAIN, source_ip=CLIENT_IP, headers=_ws_headers(),
                                query={"token": [token]}, authorizer=authorizer)


def ws_message(connection_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    return events.message_event(connection_id=connection_id, connected_at_ms=int(time.time() * 1000), stage=STAGE,
                                domain_name=WS_DOMAIN, source_ip=CLIENT_IP, user_agent=USER_AGENT,
                                body=json.dumps(frame))


def ws_disconnect(connection_id: str) -> dict[str, Any]:
    return events.disconnect_event(connection_id=connection_id, connected_at_ms=int(time.time() * 1000), stage=STAGE,
                                   domain_name=WS_DOMAIN, source_ip=CLIENT_IP, user_agent=USER_AGENT,
                                   status_code=1000, reason="Client closed")


def _ws_headers() -> dict[str, str]:
    return {"Host": WS_DOMAIN, "User-Agent": USER_AGENT, "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "X-Forwarded-For": CLIENT_IP}


def rest_request(path: str, token: str | None = None, authorizer: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = {"Host": REST_DOMAIN, "User-Agent": USER_AGENT, "Accept": "application/json",
               "X-Forwarded-For": CLIENT_IP}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return events.rest_event(method="GET", path=path, stage=STAGE, domain_name=REST_DOMAIN, source_ip=CLIENT_IP,
                             headers=headers, authorizer=authorizer)


def prepare_jobs(tree: Tree, lab: Lab, invoker: Invoker, token: str, count: int,
                 workdir: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """`count` (chat job, github.repos job) pairs, each on its own connection, made by the tree's own
    `$connect`, `$default` and `$disconnect` in one (warm, untimed) interpreter: the workers' first events."""
    invocations: list[dict[str, Any]] = []
    connections = [events.new_connection_id() for _ in range(count)]
    for i, connection_id in enumerate(connections):
        chat = {"action": "chat.send", "id": f"chat-{i}", "prompt": "Say hello.", "maxTokens": 64}
        invocations += [invoker.invocation("websocket_connect", "websocket_connect", ws_connect(connection_id, token)),
                        invoker.invocation("websocket_message", "websocket_message", ws_message(connection_id, chat)),
                        invoker.invocation("websocket_message", "websocket_message",
                                           ws_message(connection_id, {"action": "github.repos", "id": f"repos-{i}"})),
                        # Closed again, so the user holds no more connections than a run's own (the quota).
                        invoker.invocation("websocket_disconnect", "websocket_disconnect",
                                           ws_disconnect(connection_id))]
    cold(tree, invoker.step("prepare", *invocations), workdir)
    # An Event invocation is answered (202) before it is kept: the last ones may still be on their way.
    chats = lab.invocations.take("bedrock_worker", count, within_seconds=10)
    repos = lab.invocations.take("github_worker", count, within_seconds=10)
    expect(len(chats) == count and len(repos) == count, f"{tree.label}: jobs kept for the workers",
           f"{len(chats)} chats, {len(repos)} GitHub jobs of {count}; the connections' errors: "
           + "; ".join(f"{c}: {lab.management.frames(c)}" for c in connections
                       if any(f.get("type") != "ack" for f in lab.management.frames(c))))
    return list(zip(chats, repos, strict=True))


def one_run(invoker: Invoker, lab: Lab, token: str, jobs: tuple[dict[str, Any], dict[str, Any]],
            run: int) -> Generator[Step, Sample, None]:
    """Every row once, each a fresh interpreter; answers carried from step to step as API Gateway carries them."""
    label = invoker.tree.label
    yield invoker.imports("baseline", "boto3", "chalice")
    yield invoker.imports("import app", "boto3", "chalice", "app")

    connection_id = events.new_connection_id()
    arn = events.connect_method_arn(STAGE)
    answer = (yield invoker.first_event("ws_authorizer", "ws_authorizer", events.authorizer_event(
        connection_id=connection_id, connected_at_ms=int(time.time() * 1000), stage=STAGE, domain_name=WS_DOMAIN,
        source_ip=CLIENT_IP, headers=_ws_headers(), query={"token": [token]}, method_arn=arn))).answer
    decision = authorizers.from_answer(answer, arn, latency_ms=0)
    expect(decision.allowed, f"{label}: ws_authorizer allows a valid token", answer)
    answer = (yield invoker.first_event("websocket_connect", "websocket_connect",
                                        ws_connect(connection_id, token, decision.context))).answer
    expect(isinstance(answer, dict) and answer.get("statusCode") == 200, f"{label}: $connect accepts", answer)
    for row, traced in (("websocket_message", False), ("websocket_message traced", True)):
        ping = {"action": "ping", "id": f"{row.replace(' ', '-')}-{run}"}
        yield invoker.first_event(row, "websocket_message", ws_message(connection_id, ping), traced=traced)
        expect({"type": "pong", "id": ping["id"]} in lab.management.frames(connection_id),
               f"{label}: {row} posts the pong", lab.management.frames(connection_id))
    answer = (yield invoker.first_event("websocket_disconnect", "websocket_disconnect",
                                        ws_disconnect(connection_id))).answer
    expect(isinstance(answer, dict) and answer.get("statusCode") == 200, f"{label}: $disconnect", answer)

    arn = events.rest_method_arn(STAGE, "GET", "/usage")
    answer = (yield invoker.first_event("rest_authorizer", "rest_authorizer", events.token_authorizer_event(
        authorization=f"Bearer {token}", method_arn=arn))).answer
    decision = authorizers.from_answer(answer, arn, latency_ms=0)
    expect(decision.allowed, f"{label}: rest_authorizer allows a valid token", answer)
    answer = (yield invoker.first_event("api_handler /health", "api_handler", rest_request("/health"),
                                        handler="app")).answer
    expect(_rest_body(answer).get("status") == "ok", f"{label}: GET /health", answer)
    answer = (yield invoker.first_event("api_handler /usage", "api_handler",
                                        rest_request("/usage", token, decision.context), handler="app")).answer
    expect("limits" in _rest_body(answer), f"{label}: GET /usage", answer)

    chat, repos = jobs
    answer = (yield invoker.first_event("bedrock_worker", "bedrock_worker", chat)).answer
    frames = lab.management.frames(chat["connectionId"])
    expect(answer in ({"status": "done"}, {"status": "ok"}) and frames[-1:] != [] and frames[-1].get("type") == "done",
           f"{label}: bedrock_worker streams the chat to its done", (answer, frames))
    yield invoker.first_event("github_worker", "github_worker", repos)
    frames = lab.management.frames(repos["connectionId"])
    expect(any(f.get("type") == "result" and f.get("id") == repos["requestId"] for f in frames),
           f"{label}: github_worker answers github.repos", frames)


def app_modules_runs(trees: list[Tree], invokers: dict[str, Invoker], figures: dict[str, Figures], runs: int,
                     workdir: Path) -> dict[str, Figures]:
    """Per row and tree, the CPU time of importing only the app's own modules its first event loaded,
    once every other module it loaded is imported: the app's share, which the whole figure's noise hides."""
    own_figures = {tree.label: Figures() for tree in trees}
    for run in range(runs):
        for row, _ in ROWS[2:]:
            for tree in trees if run % 2 == 0 else trees[::-1]:
                loaded = figures[tree.label].samples[row][-1].modules
                own = _own(loaded)
                others = [m for m in loaded if m not in own and m != "__main__"]
                step = invokers[tree.label].imports(row, *own, preload=others)
                own_figures[tree.label].add(row, cold(tree, step, workdir))
    return own_figures


def _own(modules: list[str]) -> list[str]:
    """The app's own modules among `modules` (given in name order: `app` first; any order imports them)."""
    return [m for m in modules if m == "app" or m.split(".")[0] == "chalicelib"]


def _rest_body(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict) or answer.get("statusCode") != 200:
        return {}
    body = json.loads(answer.get("body") or "{}")
    return body if isinstance(body, dict) else {}


def interleave(runs: list[tuple[Tree, Generator[Step, Sample, None]]], workdir: Path,
               importtime: Path | None = None) -> Iterator[tuple[Tree, Step, Sample]]:
    """Run the trees' steps alternately (A's first, B's first, A's second...), each step's sample sent back."""
    pending = [(tree, steps, next(steps)) for tree, steps in runs]
    while pending:
        still = []
        for tree, steps, step in pending:
            sample = cold(tree, step, workdir, importtime)
            yield tree, step, sample
            with contextlib.suppress(StopIteration):
                still.append((tree, steps, steps.send(sample)))
        pending = still


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores seen, Python {platform.python_version()}, {platform.system()}"


def report(trees: list[Tree], figures: dict[str, Figures], runs: int, compiled: bool,
           own_figures: dict[str, Figures] | None) -> None:
    what = "compiled first (--compiled)" if compiled else "as packaged: no bytecode"
    print(f"\nCold start per Lambda function: fresh interpreters in the unpacked bundle ({what}); "
          f"medians of {runs} runs. ms from the interpreter's start to the end of its imports and of the "
          "first event; CPU: the interpreter's CPU time; x base: end of the first event (or imports) over the "
          "baseline's imports")
    header = f"{'function: first event':42}"
    for tree in trees:
        header += f" | {tree.label:>9}: import 1st event    CPU x base"
    if len(trees) == 2:
        header += f" | {trees[1].label} - {trees[0].label}: 1st event, CPU (runs slower, more)"
    print(header)
    for row, title in ROWS:
        line = f"{title:42}"
        for tree in trees:
            f = figures[tree.label]
            end = "import_ms" if f.samples[row][0].event_ms is None else "event_ms"
            event = "" if end == "import_ms" else f"{f.median(row, end):9.1f}"
            line += (f" | {f.median(row, 'import_ms'):18.1f} {event:>9} {f.median(row, 'cpu_ms'):6.0f} "
                     f"{f.median(row, end) / f.median('baseline', 'import_ms'):6.2f}")
        if len(trees) == 2:
            old, new = (figures[t.label].samples[row] for t in trees)
            end = "import_ms" if old[0].event_ms is None else "event_ms"
            line += f" | {_paired(old, new, end, 'slower')}, {_paired(old, new, 'cpu_ms', 'more')}"
        print(line)
    for tree in trees:
        f = figures[tree.label]
        wall = f.median("import app", "import_ms") - f.median("baseline", "import_ms")
        cpu = f.median("import app", "cpu_ms") - f.median("baseline", "cpu_ms")
        print(f"{tree.label}: import boto3, chalice, app costs {wall:+.1f} ms ({cpu:+.1f} ms of CPU) over the "
              f"baseline (goal <= +{GOAL_MS:.0f} ms)")
    print("\nModules the first event loaded: chalicelib's (count); the heavy ones")
    for row, title in ROWS[2:]:
        line = f"{title:42}"
        for tree in trees:
            modules = set(figures[tree.label].samples[row][-1].modules)
            own = sum(m == "chalicelib" or m.startswith("chalicelib.") for m in modules)
            heavy = ", ".join(h for h in HEAVY if h in modules) or "none"
            line += f" | {tree.label}: {own:3d}; {heavy:45}"
        print(line)
    if own_figures:
        print(f"\nThe app's own modules (app, chalicelib) each first event loaded: CPU ms to import them after "
              f"every other module it loaded, medians of {runs} fresh interpreters")
        for row, title in ROWS[2:]:
            line = f"{title:42}"
            for tree in trees:
                count = len(_own(figures[tree.label].samples[row][-1].modules))
                cpu = own_figures[tree.label].median(row, "import_cpu_ms")
                line += f" | {tree.label:>9}: {count:3d} modules {cpu:6.1f}"
            if len(trees) == 2:
                old, new = (own_figures[t.label].samples[row] for t in trees)
                line += f" | {_paired(old, new, 'import_cpu_ms', 'more')}"
            print(line)
    print("\nLambda bundle (chalice package --stage dev)")
    for tree in trees:
        print(f"{tree.label:>9}: {tree.zipped:,} bytes zipped, {tree.unzipped:,} unzipped, {tree.files} files")
    if len(trees) == 2:
        a, b = trees
        print(f"{b.label} - {a.label}: {b.zipped - a.zipped:+,} bytes zipped ({b.zipped / a.zipped - 1:+.3%}), "
              f"{b.unzipped - a.unzipped:+,} unzipped, {b.files - a.files:+d} files")
    print(f"\nMachine: {machine()}")


def _paired(old: list[Sample], new: list[Sample], attribute: str, word: str) -> str:
    """The median of the per-run differences (new - old, the same run) and in how many runs new was higher."""
    deltas = [getattr(b, attribute) - getattr(a, attribute) for a, b in zip(old, new, strict=True)]
    return f"{statistics.median(deltas):+7.1f} ms ({sum(d > 0 for d in deltas)}/{len(deltas)} {word})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters per function and tree")
    parser.add_argument("--against", metavar="REV", help="also measure this commit, in a temporary worktree")
    parser.add_argument("--compiled", action="store_true", help="compile each bundle before running it")
    parser.add_argument("--app-modules", action="store_true",
                        help="also time importing only the app's own modules each first event loaded")
    parser.add_argument("--importtime", metavar="DIR", type=Path,
                        help="one more run, not counted, with `python -X importtime`: DIR/<tree>/<row>.txt")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        roots = []
        if args.against:
            base = stack.enter_context(checkout(args.against, workdir))
            roots.append((git("rev-parse", "--short", args.against), base))
        # "+": the bundle's code differs from HEAD's (tests and docs are not in the bundle).
        bundled = ("app.py", "chalicelib", "requirements.txt", ".chalice")
        dirty = "+" if git("status", "--porcelain", "--", *bundled) else ""
        roots.append((git("rev-parse", "--short", "HEAD") + dirty, ROOT))
        trees = [package(label, root, workdir, compiled=args.compiled) for label, root in roots]
        for tree in trees:
            missing = HANDLERS - tree.handlers
            expect(not missing and not tree.handlers - HANDLERS, f"{tree.label}: the bench runs every function",
                   f"not in the bundle: {sorted(missing)}; not measured: {sorted(tree.handlers - HANDLERS)}")
        lab = stack.enter_context(running_lab())
        token = lab.access_token()
        invokers = {tree.label: Invoker(tree, lab) for tree in trees}
        extra = 1 if args.importtime else 0
        jobs = {tree.label: prepare_jobs(tree, lab, invokers[tree.label], token, args.runs + 1 + extra, workdir)
                for tree in trees}
        figures = {tree.label: Figures() for tree in trees}
        print(f"{len(trees)} bundles ready; {args.runs} runs after one warm-up run (OS file cache)", flush=True)
        for run in range(args.runs + 1):
            order = trees if run % 2 == 0 else trees[::-1]
            for tree, step, sample in interleave(
                    [(t, one_run(invokers[t.label], lab, token, jobs[t.label][run], run)) for t in order], workdir):
                if run > 0:
                    figures[tree.label].add(step.row, sample)
            print(f"run {run}/{args.runs} done" + (" (warm-up)" if run == 0 else ""), flush=True)
        own_figures = app_modules_runs(trees, invokers, figures, args.runs, workdir) if args.app_modules else None
        report(trees, figures, args.runs, args.compiled, own_figures)
        if args.importtime:
            run = args.runs + 1
            for _ in interleave([(t, one_run(invokers[t.label], lab, token, jobs[t.label][run], run)) for t in trees],
                                workdir, args.importtime.resolve()):
                pass
            print(f"\npython -X importtime of each row, one more run: {args.importtime}/<tree>/<row>.txt")


if __name__ == "__main__":
    main()
