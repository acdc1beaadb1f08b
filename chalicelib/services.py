"""The one factory of stores and senders that handlers use.

Handlers ask `get_services()`; tests build a `Services` of their own. Each thread
gets its own instance because boto3 resources (unlike clients) are not
thread-safe, and the local stack runs handlers on many threads.
"""
from __future__ import annotations

import threading
from functools import cached_property

from chalicelib import aws
from chalicelib.config import Settings, get_settings
from chalicelib.connections import ConnectionStore, ManagementApiSender
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

    def sender(self, endpoint: str) -> ManagementApiSender:
        return ManagementApiSender(aws.client("apigatewaymanagementapi", endpoint_url=endpoint))


_per_thread = threading.local()


def get_services() -> Services:
    services = getattr(_per_thread, "services", None)
    if services is None:
        services = _per_thread.services = Services(get_settings())
    return services
