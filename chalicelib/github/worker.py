"""The github_worker Lambda: one github.* request in, one `result` or `error` frame out.

The message handler validated the request and checked the user's groups; the
payload is checked again here, since anything allowed to invoke the function
could have sent it. This is the only function that reads the GitHub secret.
The worker never raises: every outcome is a frame to the client, so Lambda
never retries a request that may already have opened a pull request. It
stops TIME_LIMIT_MARGIN_MS before Lambda's timeout (TIMEOUT), so that even a
slow or throttling GitHub still gets the client an answer.
"""
from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from chalicelib import protocol
from chalicelib.aws import clients as aws
from chalicelib.observability import metric_names as metric
from chalicelib.config import Settings, get_settings
from chalicelib.errors import AppError, BadRequest, ConnectionGone, Forbidden, Internal, PayloadTooLarge
from chalicelib.github import params as github_params
from chalicelib.github.client import GitHubClient
from chalicelib.github.credentials import AppJwt, InstallationTokens, RepoInstallations, SecretSource
from chalicelib.github.operations import GitHubOperations
from chalicelib.github.transport import HttpTransport
from chalicelib.observability import bind, tracing
from chalicelib.observability.metrics import MetricsWriter, count_error, get_metrics
from chalicelib.root import Services

logger = logging.getLogger(__name__)

MAX_SERVER_FRAME_BYTES = 128 * 1024  # the Management API refuses larger messages
TIME_LIMIT_MARGIN_MS = 3000  # stop this long before Lambda would kill the worker, to still post the answer


@dataclass(frozen=True)
class ContainerCaches:
    """What outlives one invocation: connections, the secret, the JWT, installation tokens, and
    which installation owns each repository."""

    transport: HttpTransport
    secrets: SecretSource
    app_jwt: AppJwt
    tokens: InstallationTokens
    routes: RepoInstallations


@functools.lru_cache(maxsize=1)
def container_caches() -> ContainerCaches:
    settings = get_settings()
    return ContainerCaches(
        transport=HttpTransport(connect_timeout=settings.github_connect_timeout,
                                read_timeout=settings.github_read_timeout),
        secrets=SecretSource(aws.client("secretsmanager"), settings.github_secret_arn),
        app_jwt=AppJwt(clock=time.time),
        tokens=InstallationTokens(clock=time.time),
        routes=RepoInstallations(clock=time.time),
    )


def new_client(settings: Settings, caches: ContainerCaches, *, time_left: Callable[[], float] = lambda: math.inf,
               on_rate_limited: Callable[[], None] = lambda: None) -> GitHubClient:
    return GitHubClient(transport=caches.transport, secrets=caches.secrets, app_jwt=caches.app_jwt,
                        tokens=caches.tokens, routes=caches.routes, api_url=settings.github_api_url,
                        max_attempts=settings.github_max_attempts, max_wait=settings.github_max_wait_seconds,
                        time_left=time_left, on_rate_limited=on_rate_limited)


def time_left_from(remaining_ms: Callable[[], int] | None) -> Callable[[], float]:
    """Seconds the run may still spend on GitHub: Lambda's remaining time less the margin."""
    if remaining_ms is None:  # not in Lambda (a direct call): no deadline
        return lambda: math.inf
    return lambda: (remaining_ms() - TIME_LIMIT_MARGIN_MS) / 1000.0


def handle(event: dict[str, Any], services: Services, *, metrics: MetricsWriter | None = None,
           remaining_ms: Callable[[], int] | None = None) -> None:
    """Serve one request from the message handler and answer the client.

    remaining_ms: Lambda's context.get_remaining_time_in_millis, the run's deadline.
    """
    connection_id, endpoint = event.get("connectionId"), event.get("endpoint")
    if not isinstance(connection_id, str) or not isinstance(endpoint, str):
        logger.error("github worker event without a connection", extra={"keys": sorted(event)[:10]})
        return
    metrics = metrics or get_metrics()
    request_id = event.get("requestId") if isinstance(event.get("requestId"), str) else None
    action = event.get("action") if event.get("action") in github_params.ACTIONS else "invalid"
    user = event.get("user") if isinstance(event.get("user"), dict) else {}
    started = time.perf_counter()
    with bind(connectionId=connection_id, id=request_id, action=action, sub=user.get("sub")):
        with tracing.subsegment(action, action=action) as segment:  # github.<action>
            try:
                frame = protocol.result(request_id or "", _serve(event, services.settings, metrics,
                                                                 time_left_from(remaining_ms)))
            except AppError as error:
                frame = protocol.error_frame(error, request_id)
            except Exception:
                logger.exception("github worker failed")
                frame = protocol.error_frame(Internal(), request_id)
            frame = fit_in_one_frame(frame, request_id)
            outcome = frame["error"]["code"] if frame["type"] == "error" else "ok"
            if segment is not None:
                segment.put_annotation("outcome", outcome)
        try:
            services.sender(endpoint).send(connection_id, frame)
        except ConnectionGone:
            logger.info("client gone before the GitHub answer")
            outcome = "gone"
        except Exception:
            logger.exception("cannot send the GitHub answer")
        if frame["type"] == "error":
            count_error(metrics, frame["error"]["code"])
        # No `Requests` here: the message handler counted this request when it handed it over.
        logger.info("handled", extra={"outcome": outcome, "latencyMs": int((time.perf_counter() - started) * 1000)})


def fit_in_one_frame(frame: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """The frame, or PAYLOAD_TOO_LARGE when its JSON is over what one WebSocket message may carry.

    A file within GITHUB_MAX_FILE_BYTES can still grow past it once JSON-escaped
    (quotes, control characters); without this the client would hear nothing.
    """
    size = len(protocol.encode(frame).encode("utf-8"))
    if size <= MAX_SERVER_FRAME_BYTES:
        return frame
    return protocol.error_frame(PayloadTooLarge(
        f"the answer is {size} bytes once encoded; one frame carries at most {MAX_SERVER_FRAME_BYTES}"), request_id)


def _serve(event: dict[str, Any], settings: Settings, metrics: MetricsWriter,
           time_left: Callable[[], float]) -> dict[str, Any]:
    user = event.get("user") if isinstance(event.get("user"), dict) else {}
    groups, username = user.get("groups"), user.get("username")
    if not isinstance(groups, list) or not isinstance(username, str) or not username:
        raise BadRequest("the request names no verified user")
    if not settings.github_allowed(groups):
        raise Forbidden("GitHub access is not granted to this user")
    action = event.get("action")
    if action not in github_params.ACTIONS:
        raise BadRequest("unknown GitHub action")
    raw = event.get("params") if isinstance(event.get("params"), dict) else {}
    checked = github_params.validate(action, protocol.Params(raw))
    throttled = functools.partial(metrics.emit, metric.UPSTREAM_THROTTLED, 1, dimensions={metric.ACTION: action})
    client = new_client(settings, container_caches(), time_left=time_left, on_rate_limited=throttled)
    operations = GitHubOperations(client, max_file_bytes=settings.github_max_file_bytes)
    return operations.run(action, checked, username=username)
