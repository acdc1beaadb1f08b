"""The composition root: every collaborator built once from the settings, and handed to its users.

Handlers, actions and workers take the few collaborators they use (typed); this is
the one place that knows how each is made. `get_root()` gives the container's root:
one per thread, because boto3 resources (unlike clients) are not thread-safe and the
local stack runs handlers on many threads; each reads the container's clock,
`get_clock()`. Stores are built on first use, and the modules of a feature only when
it is first used, so a function that never chats never imports the chat worker.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from chalicelib.aws import clients as aws
from chalicelib.aws.lambda_invoke import WorkerInvoker
from chalicelib.aws.management_api import ManagementApiSender, Sender
from chalicelib.chat.requests import RequestStore
from chalicelib.config import Settings, get_settings
from chalicelib.dispatch.connections import ConnectionStore
from chalicelib.limits import RateLimiter, TokenBudget, UserLimits, get_limited_memory, limits_for
from chalicelib.limits.github_calls import GitHubCallBudget, github_calls_per_hour
from chalicelib.limits.records import Retention
from chalicelib.limits.usage import UsageReport
from chalicelib.process import kept, kept_per_thread

if TYPE_CHECKING:
    from chalicelib.aws.objects import ObjectStore
    from chalicelib.chat.bedrock import BedrockChat
    from chalicelib.chat.counting import InputCounter
    from chalicelib.chat.replay import FrameLog
    from chalicelib.chat.uploads import UploadStore
    from chalicelib.chat.worker import ChatWorker
    from chalicelib.context.store import ContextStore
    from chalicelib.dispatch.contract import ActionEntry
    from chalicelib.dispatch.handlers import WebsocketHandlers
    from chalicelib.dispatch.table import ActionTable
    from chalicelib.sessions import SessionStore


class Root:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings: Settings = settings
        self.clock = clock  # epoch seconds: which limit windows are current, what time is stored

    # --- the dispatch -------------------------------------------------------

    @cached_property
    def handlers(self) -> WebsocketHandlers:
        from chalicelib.auth import get_revocation_check
        from chalicelib.dispatch.handlers import WebsocketHandlers

        # The action table (and with it every feature's actions) loads on the first frame:
        # `$connect` and `$disconnect` never need it.
        return WebsocketHandlers(connections=self.connections, rate_limiter=self.rate_limiter,
                                 actions=self.action, sender_for=self.sender,
                                 frame_limit=self.settings.connection_frame_limit,
                                 check_revocation=get_revocation_check(), clock=self.clock)

    @cached_property
    def actions(self) -> ActionTable:
        from chalicelib.dispatch.table import ActionTable

        return ActionTable(self)

    def action(self, name: str) -> ActionEntry | None:
        """An action's entry by name, or None (the table loaded on first use)."""
        return self.actions.lookup(name)

    @cached_property
    def connections(self) -> ConnectionStore:
        settings = self.settings
        return ConnectionStore(aws.table(settings.connections_table), ttl_seconds=settings.connection_ttl_seconds,
                               max_per_user=settings.max_connections_per_user,
                               frame_window_seconds=settings.connection_frame_window_seconds)

    def sender(self, endpoint: str) -> Sender:
        return ManagementApiSender(aws.client("apigatewaymanagementapi", endpoint_url=endpoint))

    @cached_property
    def invoker(self) -> WorkerInvoker:
        return WorkerInvoker(aws.client("lambda"))

    # --- limits -------------------------------------------------------------

    def user_limits(self, groups: tuple[str, ...]) -> UserLimits:
        return limits_for(groups, self.settings)

    @cached_property
    def _retention(self) -> Retention:
        return Retention(hourly_seconds=self.settings.usage_hourly_retention_hours * 3600,
                         daily_seconds=self.settings.usage_daily_retention_days * 86400)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        return RateLimiter(aws.client("dynamodb"), self.settings.usage_table, limits_for=self.user_limits,
                           retention=self._retention, memory=get_limited_memory())

    @cached_property
    def token_budget(self) -> TokenBudget:
        return TokenBudget(aws.client("dynamodb"), self.settings.usage_table, rate_limiter=self.rate_limiter,
                           limits_for=self.user_limits, retention=self._retention,
                           floor=self.settings.token_reservation_floor, clock=self.clock)

    @cached_property
    def github_calls(self) -> GitHubCallBudget:
        return GitHubCallBudget(aws.client("dynamodb"), self.settings.usage_table,
                                limit_for=lambda groups: github_calls_per_hour(groups, self.settings),
                                retention=self._retention, clock=self.clock)

    @cached_property
    def usage(self) -> UsageReport:
        return UsageReport(aws.client("dynamodb"), self.settings.usage_table, limits_for=self.user_limits)

    # --- sessions and context -----------------------------------------------

    @cached_property
    def objects(self) -> ObjectStore:
        from chalicelib.aws.objects import ObjectStore

        return ObjectStore(aws.client("s3"), bucket=self.settings.context_bucket,
                           kms_key_id=self.settings.context_kms_key_id,
                           get_seconds=self.settings.presigned_get_seconds,
                           put_seconds=self.settings.presigned_put_seconds)

    @cached_property
    def sessions(self) -> SessionStore:
        from chalicelib.sessions import SessionStore

        return SessionStore(aws.table(self.settings.sessions_table), self.objects,
                            ttl_days=self.settings.session_ttl_days,
                            inline_max_bytes=self.settings.message_inline_max_bytes, clock=self.clock)

    @cached_property
    def context(self) -> ContextStore:
        from chalicelib.context.quota import StorageQuota
        from chalicelib.context.store import ContextStore

        settings = self.settings
        quota = StorageQuota(aws.client("dynamodb"), settings.usage_table, self.objects, self.sessions,
                             max_bytes=settings.context_quota_bytes, max_files=settings.context_quota_files,
                             url_seconds=settings.presigned_put_seconds, clock=self.clock)
        return ContextStore(self.objects, self.sessions, quota, max_bytes=settings.context_max_bytes,
                            file_ttl_days=settings.context_file_ttl_days, clock=self.clock)

    # --- chat ---------------------------------------------------------------

    @cached_property
    def requests(self) -> RequestStore:
        return RequestStore(aws.table(self.settings.requests_table), ttl_seconds=self.settings.request_ttl_seconds)

    @cached_property
    def uploads(self) -> UploadStore:
        from chalicelib.aws.objects import ObjectStore
        from chalicelib.chat.uploads import UploadStore

        settings = self.settings
        bucket = ObjectStore(aws.client("s3"), bucket=settings.chat_upload_bucket,
                             kms_key_id=settings.context_kms_key_id, put_seconds=settings.presigned_put_seconds)
        return UploadStore(bucket, max_bytes=settings.chat_upload_max_bytes, clock=self.clock)

    @cached_property
    def bedrock(self) -> BedrockChat:
        from chalicelib.chat.bedrock import BedrockChat

        # botocore makes one attempt: BedrockChat retries itself, and only before any text was passed on.
        client = aws.client("bedrock-runtime", read_timeout=self.settings.bedrock_read_timeout, max_attempts=1)
        return BedrockChat(client, max_attempts=self.settings.bedrock_max_attempts)

    @cached_property
    def input_counter(self) -> InputCounter:
        """Bedrock's CountTokens for chat.send and chat.countTokens; its client built on the first count."""
        from chalicelib.chat.bedrock import BedrockTokenCounter
        from chalicelib.chat.counting import InputCounter

        def counter() -> BedrockTokenCounter:
            # Before the ack, so bounded tightly: botocore retries throttling within AWS_MAX_ATTEMPTS, and a
            # count that still fails reserves the input's bound instead.
            return BedrockTokenCounter(aws.client("bedrock-runtime",
                                                  read_timeout=self.settings.bedrock_count_tokens_timeout))

        return InputCounter(counter)

    @cached_property
    def frame_log(self) -> FrameLog:
        from chalicelib.chat.replay import FrameLog

        return FrameLog(aws.table(self.settings.requests_table))

    @cached_property
    def chat_worker(self) -> ChatWorker:
        """The bedrock_worker's worker (it reaches each connection through that connection's endpoint)."""
        from chalicelib.chat.worker import ChatWorker

        settings = self.settings
        return ChatWorker(requests=self.requests, bedrock=self.bedrock, sender_for=self.sender,
                          flush_bytes=settings.stream_flush_bytes, flush_ms=settings.stream_flush_ms,
                          budget=self.token_budget, sessions=self.sessions, context=self.context,
                          frames=self.frame_log, replay_seconds=settings.chat_replay_seconds,
                          uploads=self.uploads, wall_clock=self.clock)


@kept
def get_clock() -> Callable[[], float]:
    """The clock of this container's roots: `time.time`, unless a test or the local stack installed
    its own before the first root was built (`process.install(get_clock, clock)`), to hold the
    limit windows still."""
    return time.time


@kept_per_thread
def get_root() -> Root:
    """This container's (and thread's) composition root."""
    return Root(get_settings(), clock=get_clock())
