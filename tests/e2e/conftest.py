"""The local stack, started once per test session exactly as `make dev` starts it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client import Endpoints, IdeClient, load_endpoints, login

ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN_SECONDS = 60


class LocalStack:
    def __init__(self, process: subprocess.Popen, state_dir: Path, output: Path, bedrock_url: str) -> None:
        self.process = process
        self.bedrock_url = bedrock_url  # the Bedrock emulator (its /_emulator/streams timings)
        self.state_dir = state_dir
        self.output = output
        self.endpoints_path = state_dir / "endpoints.json"
        self.document = json.loads(self.endpoints_path.read_text())
        # The emulators' addresses (GitHub, Lambda, Bedrock), written beside endpoints.json.
        self.emulators = json.loads((state_dir / "emulators.json").read_text())
        self.endpoints: Endpoints = load_endpoints(self.endpoints_path)
        self._tokens: dict[str, object] = {}

    def tokens(self, username: str = "dev"):
        if username not in self._tokens:
            e = self.endpoints
            self._tokens[username] = login(username, e.dev_password(username), client_id=e.client_id,
                                           region=e.region, endpoint_url=e.cognito_endpoint)
        return self._tokens[username]

    def connect(self, username: str = "dev", **kwargs) -> IdeClient:
        return IdeClient(self.endpoints.websocket_url, self.tokens(username).access_token, **kwargs)

    def log_text(self) -> str:
        return self.output.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_stack(state_dir: Path, env: dict | None = None) -> LocalStack:
    output = state_dir / "devserver.out"
    bedrock_port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devserver", "--port", "0", "--state-dir", str(state_dir),
         "--bedrock-port", str(bedrock_port)],
        cwd=ROOT, stdout=output.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}, start_new_session=True,
    )
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while not (state_dir / "endpoints.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_stack(process)
            pytest.fail(f"the local stack was not ready within {READY_WITHIN_SECONDS} s:\n{output.read_text()}")
        time.sleep(0.1)
    return LocalStack(process, state_dir, output, f"http://127.0.0.1:{bedrock_port}")


def stop_stack(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


# The shared stack's users serve every e2e test in the same minutes and hours, so its limits
# are generous; tests/e2e/test_limits.py runs a stack of its own with the defaults.
GENEROUS_LIMITS = {"RATE_LIMIT_REQUESTS_PER_MINUTE": "100000", "TOKEN_BUDGET_PER_HOUR": "100000000"}


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> LocalStack:
    running = start_stack(tmp_path_factory.mktemp("stack"), env=GENEROUS_LIMITS)
    yield running
    stop_stack(running.process)
