"""The tests' fakes for the boundaries (the Management API, the metrics writer, Lambda's context,
GitHub, Secrets Manager) and a clock that moves only when told, shared by the tests of every layer."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import jwt

from chalicelib.errors import ConnectionGone
from chalicelib.github.client import GitHubClient
from chalicelib.github.credentials import AppJwt, InstallationTokens, SecretSource
from chalicelib.observability.metric_names import Metric
from chalicelib.observability.metrics import MetricsWriter
from chalicelib.transport import HttpResponse
from devserver.github import secret_document

T0 = 1_800_000_000.0  # a fake clock's first instant (2027-01-15T08:00:00Z): the start of an hour and a minute
# A day long past (2023-11-15T00:00:00Z) for the app's clock to stand still in: its windows are no real
# time's, and it comes before the expiry of any token a test signs, so no token looks expired to the app.
PAST_DAY = 1_700_006_400
GITHUB_API = "https://api.github.com"


class Clock:
    """Epoch seconds that move only when a test says so: `now` (set it), or `sleep` (recorded, then passed)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class RecordingSender:
    """Stands in for the Management API: records frames per connection; `gone` ones raise ConnectionGone."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = {}
        self.closed: list[str] = []
        self.gone: set[str] = set()

    def send(self, connection_id: str, frame: dict[str, Any]) -> None:
        if connection_id in self.gone:
            raise ConnectionGone(connection_id)
        self.frames.setdefault(connection_id, []).append(frame)

    def close(self, connection_id: str) -> None:
        self.closed.append(connection_id)
        self.gone.add(connection_id)


class Network(RecordingSender):
    """The Management API with connections a test can drop, and a post it can hold in flight.

    Every post is recorded with the connection it reached, in order; a post to a dropped connection
    raises ConnectionGone, as the Management API answers 410. Set `held` to an Event to make the next
    post wait for it (`in_flight` says when it does): the test can act while that post is on its way.
    """

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.lock = threading.Condition()
        self.held: threading.Event | None = None
        self.in_flight = threading.Event()

    def send(self, connection_id: str, frame: dict[str, Any]) -> None:
        held = self.held
        if held is not None:
            self.held = None
            self.in_flight.set()
            held.wait(5)
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            super().send(connection_id, frame)
            self.lock.notify_all()

    def drop(self, connection_id: str) -> None:
        with self.lock:
            self.gone.add(connection_id)

    def wait_for(self, connection_id: str, predicate: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 5.0) -> list[dict[str, Any]]:
        """The frames of `connection_id` once `predicate` holds of them (AssertionError after `timeout`)."""
        with self.lock:
            assert self.lock.wait_for(lambda: predicate(self.frames.get(connection_id, [])), timeout), \
                self.frames.get(connection_id)
            return list(self.frames[connection_id])


class FakeMetrics(MetricsWriter):
    """A MetricsWriter that keeps what is emitted, (metric name, value, dimensions), and writes nothing."""

    def __init__(self) -> None:
        super().__init__(stage="test")
        self.emitted: list[tuple[str, float, dict[str, str]]] = []

    def emit(self, metric: Metric, value: float, *, dimensions: Mapping[str, str] | None = None,
             properties: Mapping[str, Any] | None = None) -> None:
        self.emitted.append((metric.name, value, dict(dimensions or {})))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.emitted]


class LambdaContext:
    """Lambda's context object: the time left of a function (here the GitHub worker's)."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms
        self.function_name, self.aws_request_id = "llm-ide-test-github_worker", "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


# --- GitHub -------------------------------------------------------------------------


class FakeSecrets:
    """Secrets Manager's get_secret_value, counting fetches."""

    def __init__(self, document: str) -> None:
        self.document = document
        self.fetches = 0

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        self.fetches += 1
        return {"SecretString": self.document}


def _github_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # as GitHub writes it: no fraction


def reply(status: int = 200, body: Any = None, **headers: str) -> HttpResponse:
    """A GitHub answer: `body` as JSON, `headers` by keyword (`retry_after="7"` is `retry-after: 7`)."""
    return HttpResponse(status=status, headers={k.replace("_", "-").lower(): v for k, v in headers.items()},
                        body=b"" if body is None else json.dumps(body).encode())


class FakeGitHub:
    """A transport: answers installation token requests, and the scripted replies to everything else."""

    def __init__(self, clock: Clock, public_key: str, *replies: HttpResponse | Exception) -> None:
        self.clock = clock
        self.public_key = public_key
        self.replies = list(replies)
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.token_requests = 0
        self.refuse_jwt = 0  # how many app JWT requests answer 401
        self.latency = 0.0  # seconds each API call takes on the clock
        self.timeouts: list[float | None] = []  # the timeout each API call was given

    def send(self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None,
             timeout: float | None = None) -> HttpResponse:
        self.calls.append((method, url, dict(headers)))
        if "/access_tokens" in url:
            self.token_requests += 1
            token = headers["Authorization"].split(" ", 1)[1]
            try:
                jwt.decode(token, self.public_key, algorithms=["RS256"],
                           options={"verify_exp": False, "verify_iat": False})
            except jwt.InvalidSignatureError:
                return reply(401, {"message": "A JSON web token could not be decoded"})
            if self.refuse_jwt:
                self.refuse_jwt -= 1
                return reply(401, {"message": "A JSON web token could not be decoded"})
            expires_at = _github_time(self.clock.now + 3600)
            return reply(201, {"token": f"ghs_{self.token_requests}", "expires_at": expires_at})
        self.timeouts.append(timeout)
        self.clock.now += self.latency
        item = self.replies.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def api_calls(self) -> list[tuple[str, str, dict[str, str]]]:
        return [c for c in self.calls if "/access_tokens" not in c[1]]


class GitHubWorld:
    """`world(*replies, ...)`: a GitHubClient over a FakeGitHub that answers `replies` in turn, and
    that FakeGitHub. The clock, the fake Secrets Manager and the client's caches outlive each client."""

    def __init__(self, keys: tuple[str, str]) -> None:
        private, self.public = keys
        self.clock = Clock()
        self.secrets = FakeSecrets(secret_document(private))
        self._source = SecretSource(self.secrets, "arn:aws:secretsmanager:us-east-1:123456789012:secret:gh")
        self._app_jwt, self._tokens = AppJwt(clock=self.clock), InstallationTokens(clock=self.clock)

    def __call__(self, *replies: HttpResponse | Exception, api_url: str = GITHUB_API, max_attempts: int = 4,
                 max_wait: float = 20.0, on_rate_limited: Callable[[], None] = lambda: None,
                 deadline: float | None = None) -> tuple[GitHubClient, FakeGitHub]:
        clock, transport = self.clock, FakeGitHub(self.clock, self.public, *replies)
        time_left = (lambda: deadline - clock.now) if deadline is not None else (lambda: float("inf"))
        client = GitHubClient(transport=transport, api_url=api_url, max_attempts=max_attempts, max_wait=max_wait,
                              clock=clock, sleep=clock.sleep, jitter=lambda: 1.0, on_rate_limited=on_rate_limited,
                              time_left=time_left, secrets=self._source, app_jwt=self._app_jwt, tokens=self._tokens)
        return client, transport


class ScriptedStream:
    """A ConverseStream body: these raw events, then `error` raised from inside the stream (an EventStreamError)."""

    def __init__(self, events: list[Any], error: Exception | None = None) -> None:
        self._events, self._error = events, error

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self._events
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        pass


class ScriptedBedrock:
    """A bedrock-runtime client whose ConverseStream calls answer these streams in turn, counted."""

    def __init__(self, *streams: ScriptedStream) -> None:
        self._streams = list(streams)
        self.calls = 0

    def converse_stream(self, **_arguments: Any) -> dict[str, ScriptedStream]:
        self.calls += 1
        return {"stream": self._streams.pop(0)}
