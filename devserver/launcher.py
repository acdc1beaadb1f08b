"""Starting and stopping the local stack as a child process, for tests and benchmarks.

Exactly what `make dev` runs (`python -m devserver`), on free ports, with its own
state directory; ready when it has written endpoints.json.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class StackNotReady(RuntimeError):
    pass


class StackProcess:
    def __init__(self, process: subprocess.Popen, state_dir: Path, output: Path) -> None:
        self.process = process
        self.state_dir = state_dir
        self.output = output
        self.endpoints_path = state_dir / "endpoints.json"
        self.document: dict[str, Any] = json.loads(self.endpoints_path.read_text())
        # The emulators' addresses (Lambda, GitHub, S3 front, Bedrock), written beside endpoints.json.
        self.emulators: dict[str, str] = json.loads((state_dir / "emulators.json").read_text())

    def log_text(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self) -> int:
        return stop_process(self.process)


def stop_process(process: subprocess.Popen) -> int:
    """Ctrl-C, as a developer stops it; killed if it does not stop within 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def start(state_dir: Path, *, env: dict[str, str] | None = None, ready_within: float = 60.0,
          root: Path = ROOT) -> StackProcess:
    """The stack of the source tree at `root` (this one; a benchmark may start another version's)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    output = state_dir / "devserver.out"
    process = subprocess.Popen(
        [sys.executable, "-m", "devserver", "--port", "0", "--state-dir", str(state_dir)],
        cwd=root, stdout=output.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}, start_new_session=True,
    )
    deadline = time.monotonic() + ready_within
    while not (state_dir / "endpoints.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise StackNotReady(f"the local stack was not ready within {ready_within:.0f} s:\n{output.read_text()}")
        time.sleep(0.1)
    return StackProcess(process, state_dir, output)

