"""The user pool's signing keys: fetched once, cached for the container's life.

Three small parts, as in aws-jwt-verify: a fetcher (one HTTP GET with timeouts
and one retry), a penalty box (a URL that failed to produce a kid is not asked
again for a while, so a flood of bogus kids costs one fetch per interval), and
the cache that ties them together and lets concurrent callers share one fetch.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Protocol

from chalicelib.auth.errors import JwksUnavailable, KidNotFound

MAX_JWKS_BYTES = 64 * 1024


class JwksFetcher(Protocol):
    def fetch(self, url: str) -> dict[str, Any]: ...


class HttpJwksFetcher:
    def __init__(self, *, connect_timeout: float = 1.5, read_timeout: float = 3.0, retries: int = 1) -> None:
        # urllib has one timeout for connect and each read; the longer one bounds both.
        self._timeout = max(connect_timeout, read_timeout)
        self._retries = retries

    def fetch(self, url: str) -> dict[str, Any]:
        last_error: Exception | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(0.1 * attempt)
            try:
                with urllib.request.urlopen(url, timeout=self._timeout) as response:  # noqa: S310 (https or configured)
                    body = response.read(MAX_JWKS_BYTES + 1)
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksUnavailable("JWKS document is too large")
                document = json.loads(body)
                if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
                    raise JwksUnavailable("JWKS document has no 'keys' list")
                return document
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last_error = exc
        raise JwksUnavailable(f"JWKS fetch failed: {type(last_error).__name__}")


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
            keys = {jwk["kid"]: jwk for jwk in document["keys"] if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str)}
            self._documents[url] = keys
            if kid not in keys:
                self._penalty.hold(url)
                raise KidNotFound("kid not in JWKS", actual=kid)
            self._penalty.release(url)
            return keys[kid]

    def _lock_for(self, url: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(url, threading.Lock())
