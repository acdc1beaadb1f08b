"""The one factory of stores and senders that handlers use.

Handlers ask `get_services()`; tests build a `Services` of their own. Each thread
gets its own instance because boto3 resources (unlike clients) are not
thread-safe, and the local stack runs handlers on many threads.
"""
from __future__ import annotations

import threading
from functools import cached_property

from chalicelib import aws
from chalicelib.bedrock import BedrockChat
from chalicelib.config import Settings, get_settings
from chalicelib.connections import ConnectionStore, ManagementApiSender
from chalicelib.request_store import RequestStore
from chalicelib.workers import WorkerInvoker


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
