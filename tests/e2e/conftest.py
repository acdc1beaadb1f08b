"""The local stack, started once per test session exactly as `make dev` starts it."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import Endpoints, IdeClient, load_endpoints
from client.auth import Tokens, sign_in
from devserver import launcher
from devserver.launcher import StackProcess
from tests.fakes import PAST_DAY

READY_WITHIN_SECONDS = 60
LLM_IDE = str(Path(sys.executable).with_name("llm-ide"))  # the console command `make` installs into .venv


class LocalStack(StackProcess):
    """A running stack plus the signed-in users the tests act as."""

    def __init__(self, running: StackProcess) -> None:
        super().__init__(running.process, running.state_dir, running.output)
        self.bedrock_url = self.emulators["bedrockUrl"]  # the Bedrock emulator (its /_emulator/streams timings)
        self.endpoints: Endpoints = load_endpoints(self.endpoints_path)
        self._tokens: dict[str, Tokens] = {}

    def tokens(self, username: str = "dev") -> Tokens:
        if username not in self._tokens:
            self._tokens[username] = sign_in_as(self.endpoints, username)
        return self._tokens[username]

    def connect(self, username: str = "dev", **kwargs) -> IdeClient:
        assert self.endpoints.websocket_url, "the stack's endpoints.json names no WebSocket API"
        return IdeClient(self.endpoints.websocket_url, self.tokens(username).access_token, **kwargs)


def sign_in_as(endpoints: Endpoints, username: str = "dev") -> Tokens:
    """A local stack user's tokens (SRP, as against Cognito): endpoints.json names the pool and the password."""
    password, pool = endpoints.dev_password(username), endpoints.user_pool()
    assert password is not None and pool is not None, f"no user {username!r} or no user pool in endpoints.json"
    return sign_in(username, password, pool)


def start_stack(state_dir: Path, env: dict | None = None) -> LocalStack:
    try:
        return LocalStack(launcher.start(state_dir, env=env, ready_within=READY_WITHIN_SECONDS))
    except launcher.StackNotReady as exc:
        pytest.fail(str(exc))


def stop_stack(process: subprocess.Popen) -> int:
    return launcher.stop_process(process)


# The shared stack's users serve every e2e test in the same minutes and hours, so its limits
# are generous; tests/e2e/test_limits.py runs a stack of its own with the defaults.
GENEROUS_LIMITS = {"RATE_LIMIT_REQUESTS_PER_MINUTE": "100000", "TOKEN_BUDGET_PER_HOUR": "100000000",
                   "GITHUB_CALLS_PER_HOUR": "1000000"}
# The app's default models (the default first), and one that caches prompts (through its inference profile).
CACHING_MODEL = "us.anthropic.claude-sonnet-4-20250514-v1:0"
STACK_MODELS = {"ALLOWED_MODELS": "anthropic.claude-3-haiku-20240307-v1:0,anthropic.claude-3-5-sonnet-20240620-v1:0,"
                                  + CACHING_MODEL}

# The clock of the stacks that test the limit windows (DEV_FIXED_CLOCK): it stands still 10 s into
# a minute, an hour and a day, so that their windows never roll over mid-test.
HELD_CLOCK = PAST_DAY + 10


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    running = start_stack(tmp_path_factory.mktemp("stack"), env={**GENEROUS_LIMITS, **STACK_MODELS})
    yield running
    stop_stack(running.process)


# A stack whose gateway closes every connection after 5 seconds (API Gateway: two hours) and any idle one
# after 3 (API Gateway: ten minutes), so clients that reconnect by themselves can be tried in seconds.
SHORT_CONNECTIONS = {**GENEROUS_LIMITS, "DEV_WS_MAX_CONNECTION_SECONDS": "5", "DEV_WS_IDLE_SECONDS": "3"}


@pytest.fixture(scope="session")
def short_stack(tmp_path_factory) -> Iterator[LocalStack]:
    running = start_stack(tmp_path_factory.mktemp("short-stack"), env=SHORT_CONNECTIONS)
    yield running
    stop_stack(running.process)
