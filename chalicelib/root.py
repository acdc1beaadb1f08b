"""The one factory of stores and senders that handlers use.

Handlers ask `get_services()`; tests build a `Services` of their own. Each thread
gets its own instance because boto3 resources (unlike clients) are not
thread-safe, and the local stack runs handlers on many threads.
"""
from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING

from chalicelib.aws import clients as aws
from chalicelib.chat.bedrock import BedrockChat
from chalicelib.config import Settings, get_settings
from chalicelib.dispatch.connections import ConnectionStore, ManagementApiSender
from chalicelib.limits import RateLimiter, TokenBudget, UserLimits, get_limited_memory, limits_for
from chalicelib.limits.records import Retention
from chalicelib.limits.usage import UsageReport
from chalicelib.chat.requests import RequestStore
from chalicelib.aws.lambda_invoke import WorkerInvoker

if TYPE_CHECKING:
    from chalicelib.context.store import ContextStore
    from chalicelib.aws.objects import ObjectStore
    from chalicelib.sessions import SessionStore


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def connections(self) -> ConnectionStore:
        return ConnectionStore(aws.table(self.settings.connections_table),
                               ttl_seconds=self.settings.connection_ttl_seconds)

    @cached_property
    def workers(self) -> WorkerInvoker:
        return WorkerInvoker(aws.client("lambda"))

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
                           floor=self.settings.token_reservation_floor)

    @cached_property
    def usage(self) -> UsageReport:
        return UsageReport(aws.client("dynamodb"), self.settings.usage_table, limits_for=self.user_limits)

    @cached_property
    def objects(self) -> "ObjectStore":
        from chalicelib.aws.objects import ObjectStore

        return ObjectStore(aws.client("s3"), bucket=self.settings.context_bucket,
                           kms_key_id=self.settings.context_kms_key_id)

    @cached_property
    def sessions(self) -> "SessionStore":
        from chalicelib.sessions import SessionStore

        return SessionStore(aws.table(self.settings.sessions_table), self.objects,
                            ttl_days=self.settings.session_ttl_days,
                            inline_max_bytes=self.settings.message_inline_max_bytes)

    @cached_property
    def context(self) -> "ContextStore":
        from chalicelib.context.store import ContextStore

        return ContextStore(self.objects, self.sessions, max_bytes=self.settings.context_max_bytes)

    @cached_property
    def requests(self) -> RequestStore:
        return RequestStore(aws.table(self.settings.requests_table), ttl_seconds=self.settings.request_ttl_seconds)

    @cached_property
    def bedrock(self) -> BedrockChat:
        # botocore makes one attempt: BedrockChat retries itself, and only before any text was passed on.
        client = aws.client("bedrock-runtime", read_timeout=self.settings.bedrock_read_timeout, max_attempts=1)
        return BedrockChat(client, max_attempts=self.settings.bedrock_max_attempts)

    def sender(self, endpoint: str) -> ManagementApiSender:
        return ManagementApiSender(aws.client("apigatewaymanagementapi", endpoint_url=endpoint))


_per_thread = threading.local()


def get_services() -> Services:
    services = getattr(_per_thread, "services", None)
    if services is None:
        services = _per_thread.services = Services(get_settings())
    return services
