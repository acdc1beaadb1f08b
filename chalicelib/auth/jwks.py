"""The user pool's signing keys: fetched once, cached for the container's life.

Three small parts, as in aws-jwt-verify: a fetcher (one HTTP GET with timeouts
and one retry), a penalty box (a URL that failed to produce a kid is not asked
again for a while, so a flood of bogus kids costs one fetch per interval), and
the cache that ties them together and lets concurrent callers share one fetch.
"""
from __future__ import annotations

import http.client
import json
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

from chalicelib.auth.errors import JwksUnavailable, KidNotFound

MAX_JWKS_BYTES = 64 * 1024


class JwksFetcher(Protocol):
    def fetch(self, url: str) -> dict[str, Any]: ...


class _Retryable(Exception):
    """A failure worth one more try: the network, a timeout, a 5xx or 429."""


class HttpJwksFetcher:
    """One GET of a JWKS, bounded: a connect timeout, then a read deadline, and one retry.

    urllib has a single timeout for every socket operation, so a slow server could
    hold a caller for many read timeouts; here the connection (TCP and TLS) has
    `connect_timeout` and the whole response `read_timeout`. One attempt therefore
    takes at most connect + read seconds (DNS resolution aside, which the system
    resolver bounds), and a fetch at most twice that plus a short jittered pause.
    """

    def __init__(self, *, connect_timeout: float = 1.0, read_timeout: float = 2.0, retries: int = 1,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._retries = retries
        self._sleep = sleep

    def fetch(self, url: str) -> dict[str, Any]:
        target = urllib.parse.urlsplit(url)
        if target.scheme not in ("https", "http") or not target.hostname:
            raise JwksUnavailable("JWKS URL is not an http(s) URL")
        failure = "no attempt"
        for attempt in range(self._retries + 1):
            if attempt:
                self._sleep(random.uniform(0.05, 0.15))
            try:
                return _parse(self._get(target))
            except _Retryable as exc:
                failure = str(exc)
        raise JwksUnavailable(f"JWKS fetch failed: {failure}")

    def _get(self, target: urllib.parse.SplitResult) -> bytes:
        host = target.hostname or ""  # the URL was checked at configuration: it names a host
        if target.scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, target.port, timeout=self._connect_timeout, context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(host, target.port, timeout=self._connect_timeout)
        try:
            connection.connect()
            deadline = time.monotonic() + self._read_timeout
            sock = connection.sock  # http.client lets go of it once the response owns it
            sock.settimeout(self._read_timeout)
            path = target.path or "/"
            connection.request("GET", f"{path}?{target.query}" if target.query else path,
                               headers={"Accept": "application/json"})
            response = connection.getresponse()
            if response.status >= 500 or response.status == 429:
                raise _Retryable(f"HTTP {response.status}")
            if response.status != 200:
                raise JwksUnavailable(f"JWKS fetch answered HTTP {response.status}")
            return _read_body(sock, response, deadline)
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(type(exc).__name__) from None
        finally:
            connection.close()


def _read_body(sock: socket.socket, response: http.client.HTTPResponse, deadline: float) -> bytes:
    body = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Retryable("read deadline passed")
        sock.settimeout(remaining)
        chunk = response.read1(16 * 1024)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > MAX_JWKS_BYTES:
            raise JwksUnavailable("JWKS document is too large")


def _parse(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        raise JwksUnavailable("JWKS document is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksUnavailable("JWKS document has no 'keys' list")
    return document


class PenaltyBox:
    """Remembers URLs that recently failed to produce a kid."""

    def __init__(self, *, seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._until: dict[str, float] = {}

    def is_open(self, url: str) -> bool:
        return self._clock() >= self._until.get(url, 0.0)

    def hold(self, url: str) -> None:
        self._until[url] = self._clock() + self._seconds

    def release(self, url: str) -> None:
        self._until.pop(url, None)


class JwksCache:
    def __init__(self, fetcher: JwksFetcher, *, penalty_box: PenaltyBox | None = None) -> None:
        self._fetcher = fetcher
        self._penalty = penalty_box or PenaltyBox()
        self._documents: dict[str, dict[str, dict[str, Any]]] = {}  # url -> kid -> jwk
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def get_jwk(self, url: str, kid: str) -> dict[str, Any]:
        keys = self._documents.get(url)
        if keys is not None and kid in keys:
            return keys[kid]
        with self._lock_for(url):
            # Another thread may have fetched while this one waited: look again.
            keys = self._documents.get(url)
            if keys is not None and kid in keys:
                return keys[kid]
            if not self._penalty.is_open(url):
                if keys is None:
                    raise JwksUnavailable("JWKS fetch failed recently; not retried yet")
                raise KidNotFound("kid not in JWKS (refetch suppressed)", actual=kid)
            try:
                document = self._fetcher.fetch(url)
            except JwksUnavailable:
                self._penalty.hold(url)
                raise
            keys = {jwk["kid"]: jwk for jwk in document["keys"]
                    if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str)}
            self._documents[url] = keys
            if kid not in keys:
                self._penalty.hold(url)
                raise KidNotFound("kid not in JWKS", actual=kid)
            self._penalty.release(url)
            return keys[kid]

    def _lock_for(self, url: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(url, threading.Lock())
