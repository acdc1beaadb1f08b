"""The one factory of stores and senders that handlers use.

Handlers ask `get_services()`; tests build a `Services` of their own. Each thread
gets its own instance because boto3 resources (unlike clients) are not
thread-safe, and the local stack runs handlers on many threads.
"""
from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING

from chalicelib import aws
from chalicelib.config import Settings, get_settings
from chalicelib.connections import ConnectionStore, ManagementApiSender
from chalicelib.workers import WorkerInvoker

if TYPE_CHECKING:
    from chalicelib.context_store import ContextStore
    from chalicelib.objects import ObjectStore
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

    @cached_property
    def objects(self) -> "ObjectStore":
        from chalicelib.objects import ObjectStore

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
        from chalicelib.context_store import ContextStore

        return ContextStore(self.objects, self.sessions, max_bytes=self.settings.context_max_bytes)

    def sender(self, endpoint: str) -> ManagementApiSender:
        return ManagementApiSender(aws.client("apigatewaymanagementapi", endpoint_url=endpoint))


_per_thread = threading.local()


def get_services() -> Services:
    services = getattr(_per_thread, "services", None)
    if services is None:
        services = _per_thread.services = Services(get_settings())
    return services
