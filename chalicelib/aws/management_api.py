"""API Gateway's Management API: the one way frames reach a WebSocket client."""
from __future__ import annotations

from typing import Any, Protocol

from botocore.exceptions import ClientError

from chalicelib.aws.errors import error_code, http_status
from chalicelib.errors import ConnectionGone
from chalicelib.protocol import encode


class Sender(Protocol):
    def send(self, connection_id: str, frame: dict[str, Any]) -> None: ...

    def close(self, connection_id: str) -> None: ...


class ManagementApiSender:
    """Sends frames through API Gateway's Management API; a closed connection raises ConnectionGone."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def send(self, connection_id: str, frame: dict[str, Any]) -> None:
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=encode(frame).encode("utf-8"))
        except ClientError as exc:
            if _is_gone(exc):
                raise ConnectionGone(connection_id) from None
            raise

    def close(self, connection_id: str) -> None:
        try:
            self._client.delete_connection(ConnectionId=connection_id)
        except ClientError as exc:
            if not _is_gone(exc):
                raise


def _is_gone(exc: ClientError) -> bool:
    return error_code(exc) == "GoneException" or http_status(exc) == 410
