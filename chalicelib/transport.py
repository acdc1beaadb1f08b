"""The HTTP boundary for calls that are not AWS SDK calls (GitHub's API, Cognito's GetUser):
one method, `send`, with connect and read timeouts.

http.client from the standard library (no extra package in the Lambda bundle, and no boto3
where a handler does not need it: the authorizers stay light), with one kept-alive
connection per host and thread, since a pull request takes about eight calls in a row and
a warm `$connect` asks Cognito again and again. A network failure is a TransportError; HTTP
statuses are returned as they are, and the caller decides what they mean.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit


class TransportError(Exception):
    """The server could not be reached, or did not answer in time."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""
    url: str = field(default="", compare=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Transport(Protocol):
    def send(self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None,
             timeout: float | None = None) -> HttpResponse: ...


class HttpTransport:
    def __init__(self, *, connect_timeout: float, read_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._local = threading.local()
        self._tls = ssl.create_default_context()

    def send(self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None,
             timeout: float | None = None) -> HttpResponse:
        """One request; `timeout` (seconds) caps the connect and read timeouts: the time the run has left."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        key = (parts.scheme, parts.hostname, parts.port)
        for reused in (True, False):
            connection, was_open = self._connection(key, fresh=not reused, cap=timeout)
            try:
                connection.request(method, target, body=body, headers=dict(headers))
                response = connection.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop(key)
                if was_open and reused:
                    continue  # the server closed an idle kept-alive connection: once more on a new one
                raise TransportError(f"connection to {parts.hostname} failed ({type(exc).__name__})") from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop(key)
                kind = "timed out" if isinstance(exc, (socket.timeout, TimeoutError)) else "failed"
                raise TransportError(f"connection to {parts.hostname} {kind} ({type(exc).__name__})") from None
            if response.will_close:
                self._drop(key)
            return HttpResponse(status=response.status, body=data, url=url,
                                headers={k.lower(): v for k, v in response.getheaders()})
        raise TransportError(f"connection to {parts.hostname} failed")  # not reached: the second pass returns or raises

    def _connection(self, key: tuple, *, fresh: bool,
                    cap: float | None) -> tuple[http.client.HTTPConnection, bool]:
        pool: dict = self._local.__dict__.setdefault("pool", {})
        read_timeout = self._read_timeout if cap is None else max(0.001, min(self._read_timeout, cap))
        if not fresh and key in pool and pool[key].sock is not None:
            pool[key].sock.settimeout(read_timeout)
            return pool[key], True
        self._drop(key)
        scheme, host, port = key
        connect_timeout = self._connect_timeout if cap is None else max(0.001, min(self._connect_timeout, cap))
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=connect_timeout, context=self._tls)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        try:
            connection.connect()
        except OSError as exc:
            raise TransportError(f"cannot connect to {key[1]} ({type(exc).__name__})") from None
        connection.sock.settimeout(read_timeout)  # connected: from now on the read timeout applies
        pool[key] = connection
        return connection, False

    def _drop(self, key: tuple) -> None:
        connection = self._local.__dict__.setdefault("pool", {}).pop(key, None)
        if connection is not None:
            connection.close()
