"""The github_worker Lambda: one github.* request in, one `result` or `error` frame out.

The message handler validated the request and checked the user's scope; the
payload and the scope are checked again here, since anything allowed to invoke the
function could have sent it. This is the only function that reads the GitHub secret.
Before it calls GitHub it holds the action's calls from the user's GitHub call budget
(RATE_LIMITED when spent) and settles the budget to the calls it made afterwards.
The worker never raises: every outcome is a frame to the client, so Lambda
never retries a request that may already have opened a pull request. It
stops TIME_LIMIT_MARGIN_MS before Lambda's timeout (TIMEOUT), so that even a
slow or throttling GitHub still gets the client an answer, and keeps the
UNDO_RESERVE_SECONDS before that for deleting the branch of a failed pull request.
"""
from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib import protocol
from chalicelib.aws import clients as aws
from chalicelib.aws.management_api import Sender
from chalicelib.config import Settings, get_settings
from chalicelib.errors import AppError, ConnectionGone, Internal, PayloadTooLarge
from chalicelib.github import params as github_params
from chalicelib.github.client import GitHubClient
from chalicelib.github.credentials import AppJwt, InstallationTokens, RepoInstallations, SecretSource
from chalicelib.github.job import GitHubJob, InvalidJob
from chalicelib.github.operations import CALLS_RESERVED, GitHubOperations
from chalicelib.github.scope import GitHubScope
from chalicelib.limits.github_calls import CallHold, GitHubCallBudget
from chalicelib.observability import bind, tracing
from chalicelib.observability import metric_names as metric
from chalicelib.observability.metrics import MetricsWriter, count_error, get_metrics
from chalicelib.process import kept
from chalicelib.transport import HttpTransport, Transport

logger = logging.getLogger(__name__)

TIME_LIMIT_MARGIN_MS = 3000  # stop this long before Lambda would kill the worker, to still post the answer
UNDO_RESERVE_SECONDS = 2.0  # before that, kept for deleting a failed pull request's branch (three calls)


@dataclass(frozen=True)
class ContainerCaches:
    """What outlives one invocation: connections, the secret, the JWT, installation tokens, and
    which installation owns each repository."""

    transport: Transport  # HttpTransport in Lambda
    secrets: SecretSource
    app_jwt: AppJwt
    tokens: InstallationTokens
    routes: RepoInstallations


@kept
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
               on_rate_limited: Callable[[], None] = lambda: None,
               before_call: Callable[..., None] = lambda calls_made, *, undoing: None) -> GitHubClient:
    return GitHubClient(transport=caches.transport, secrets=caches.secrets, app_jwt=caches.app_jwt,
                        tokens=caches.tokens, routes=caches.routes, api_url=settings.github_api_url,
                        max_attempts=settings.github_max_attempts, max_wait=settings.github_max_wait_seconds,
                        time_left=time_left, reserve=UNDO_RESERVE_SECONDS, on_rate_limited=on_rate_limited,
                        before_call=before_call)


def time_left_from(remaining_ms: Callable[[], int] | None) -> Callable[[], float]:
    """Seconds the run may still spend on GitHub: Lambda's remaining time less the margin."""
    if remaining_ms is None:  # not in Lambda (a direct call): no deadline
        return lambda: math.inf
    return lambda: (remaining_ms() - TIME_LIMIT_MARGIN_MS) / 1000.0


def handle(event: dict[str, Any], *, settings: Settings, sender_for: Callable[[str], Sender],
           budget: GitHubCallBudget, metrics: MetricsWriter | None = None,
           remaining_ms: Callable[[], int] | None = None) -> None:
    """Serve one job from the message handler and answer the client (never raises).

    sender_for: the Management API sender for an endpoint. budget: the users' GitHub
    call budget. remaining_ms: Lambda's context.get_remaining_time_in_millis, the run's deadline.
    """
    metrics = metrics or get_metrics()
    job: GitHubJob | None = None
    rejection: AppError | None = None
    try:
        job = GitHubJob.from_event(event)
        reply_to = job.reply_to
    except InvalidJob as invalid:
        if invalid.reply_to is None:
            logger.error("github worker event without a connection", extra={"keys": sorted(event)[:10]})
            return
        rejection, reply_to = invalid.error, invalid.reply_to
    named = event.get("action")
    action: str = job.action if job is not None else (named if named in github_params.ACTIONS else "invalid")
    user = event.get("user")
    sub = job.user_sub if job is not None else (user.get("sub") if isinstance(user, dict) else None)
    started = time.perf_counter()
    with bind(connectionId=reply_to.connection_id, id=reply_to.request_id, action=action, sub=sub):
        with tracing.subsegment(action, action=action) as segment:  # github.<action>
            try:
                if job is None:
                    raise rejection or Internal()
                frame = protocol.result(reply_to.request_id or "", _serve(job, settings, metrics, budget,
                                                                          time_left_from(remaining_ms)))
            except AppError as error:
                frame = protocol.error_frame(error, reply_to.request_id)
            except Exception:
                logger.exception("github worker failed")
                frame = protocol.error_frame(Internal(), reply_to.request_id)
            frame = fit_in_one_frame(frame, reply_to.request_id)
            outcome = frame["error"]["code"] if frame["type"] == "error" else "ok"
            if segment is not None:
                segment.put_annotation("outcome", outcome)
        try:
            sender_for(reply_to.endpoint).send(reply_to.connection_id, frame)
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
    if size <= protocol.MAX_SERVER_FRAME_BYTES:
        return frame
    limit = protocol.MAX_SERVER_FRAME_BYTES
    return protocol.error_frame(PayloadTooLarge(
        f"the answer is {size} bytes once encoded; one frame carries at most {limit}"), request_id)


def _serve(job: GitHubJob, settings: Settings, metrics: MetricsWriter, budget: GitHubCallBudget,
           time_left: Callable[[], float]) -> dict[str, Any]:
    scope = GitHubScope.from_settings(settings)
    params = scope.authorize(job.action, job.params, job.groups)
    hold = CallHold(budget, budget.reserve(job.user_sub, groups=job.groups, calls=CALLS_RESERVED[job.action]))
    throttled = functools.partial(metrics.emit, metric.UPSTREAM_THROTTLED, 1, dimensions={metric.ACTION: job.action})
    client = new_client(settings, container_caches(), time_left=time_left, on_rate_limited=throttled,
                        before_call=hold.before_call)
    try:
        operations = GitHubOperations(client, max_file_bytes=settings.github_max_file_bytes,
                                      may_reach=lambda repo: scope.may_reach(repo, job.groups))
        return operations.run(job.action, params, username=job.username)
    finally:
        try:
            budget.settle(hold.reservation, client.calls)
        except Exception:  # the answer stands; the counter keeps what was reserved
            logger.exception("cannot settle the GitHub call budget", extra={"calls": client.calls})
