"""Calls to GitHub's REST API as the app's installation: auth, limits, retries, errors.

GitHub's answers become protocol errors here and nowhere else: 404 is
NOT_FOUND, 403 without a rate-limit sign FORBIDDEN, 422 and other 4xx
BAD_REQUEST; limits (429, or 403 with `retry-after` or `x-ratelimit-remaining:
0`) are waited out and 5xx retried, within a number of attempts and a total
wait per worker run, then UPSTREAM_THROTTLED (with `retryAfter`) or
UPSTREAM_ERROR. A 401 on the app's JWT means the key was rotated: the secret
is fetched again, once. The run has a deadline (`time_left`, from Lambda's
remaining time): no call starts after it, no call's timeouts reach past it, no
wait that would pass it is started; it is answered TIMEOUT.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

from chalicelib.errors import AppError, BadRequest, Forbidden, NotFound, Timeout, UpstreamError, UpstreamThrottled
from chalicelib.github.credentials import AppJwt, AppSecret, InstallationTokens, SecretSource
from chalicelib.github.transport import HttpResponse, Transport, TransportError

logger = logging.getLogger(__name__)

SECONDARY_LIMIT_WAIT = 60.0  # GitHub: without a header, wait at least a minute
MAX_BACKOFF = 8.0
MAX_PAGES = 10
MAX_REDIRECTS = 3


class Unprocessable(BadRequest):
    """GitHub's 422: the request was understood and refused (a ref that exists, say)."""


class GitHubClient:
    """One worker run's client: the caches it is given live per container, the wait budget per run."""

    def __init__(self, *, transport: Transport, secrets: SecretSource, app_jwt: AppJwt,
                 tokens: InstallationTokens, api_url: str, max_attempts: int, max_wait: float,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random,
                 time_left: Callable[[], float] = lambda: math.inf,
                 on_rate_limited: Callable[[], None] = lambda: None) -> None:
        self._transport = transport
        self._secrets = secrets
        self._jwt = app_jwt
        self._tokens = tokens
        self._api_url = api_url.rstrip("/")
        self._max_attempts = max_attempts
        self._wait_left = max_wait
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._time_left = time_left  # seconds until the run must stop, to still answer the client
        self._on_rate_limited = on_rate_limited  # one call per rate-limit answer (the worker's metric)

    # --- the API ------------------------------------------------------------

    def get(self, path: str, *, query: dict[str, Any] | None = None, not_found: str | None = None) -> Any:
        return self.request("GET", path, query=query, not_found=not_found)

    def post(self, path: str, body: dict[str, Any], *, idempotent: bool = True, not_found: str | None = None) -> Any:
        return self.request("POST", path, body=body, idempotent=idempotent, not_found=not_found)

    def paginate(self, path: str, *, key: str, per_page: int = 100) -> tuple[list[dict[str, Any]], bool]:
        """Items of a paginated list, following `Link: rel="next"` for at most MAX_PAGES pages,
        and whether pages were left unread (the list was cut at MAX_PAGES * per_page items)."""
        url: str | None = self._url(path, {"per_page": per_page})
        items: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            response = self._authorized("GET", url, body=None, idempotent=True)
            items += _data(response, not_found=None)[key]
            url = _next_link(response.header("link"), self._api_url)
            if url is None:
                return items, False
        logger.warning("GitHub list cut at the page limit", extra={"path": path, "pages": MAX_PAGES,
                                                                    "items": len(items)})
        return items, True

    def pause_before_retry(self, attempt: int, give_up: AppError) -> None:
        """The backoff before attempt `attempt + 1` of a call the caller retries itself (within the
        same attempts, wait budget and deadline as every other call), or give_up."""
        self._wait(attempt, self._backoff(attempt), give_up)

    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                body: dict[str, Any] | None = None, idempotent: bool = True, not_found: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        return _data(self._authorized(method, self._url(path, query), body=data, idempotent=idempotent),
                     not_found=not_found)

    # --- authentication -----------------------------------------------------

    def _authorized(self, method: str, url: str, *, body: bytes | None, idempotent: bool) -> HttpResponse:
        self._time_still_left()  # before the secret, which may be fetched
        secret = self._secrets.get()
        token = self._installation_token(secret)
        response = self._send(method, url, token=token, body=body, idempotent=idempotent)
        if response.status == 401:  # revoked or expired early: one more time with a new token
            self._tokens.forget(secret.installation_id, token)
            token = self._installation_token(self._secrets.get())
            response = self._send(method, url, token=token, body=body, idempotent=idempotent)
        return response

    def _installation_token(self, secret: AppSecret) -> str:
        token = self._tokens.get(secret.installation_id)
        if token is not None:
            return token
        response = self._new_installation_token(secret)
        if response.status == 401:
            logger.warning("GitHub refused the app JWT; fetching the secret again (key rotation?)")
            secret = self._secrets.refresh(secret)
            response = self._new_installation_token(secret)
            if response.status == 401:
                logger.error("GitHub refused the app JWT made with the current secret")
                raise UpstreamError("GitHub refused the GitHub App's credentials")
        data = _data(response, not_found="the GitHub App's installation was not found")
        if not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise UpstreamError("GitHub answered an installation token request without a token")
        self._tokens.put(secret.installation_id, data["token"], data.get("expires_at"))
        return data["token"]

    def _new_installation_token(self, secret: AppSecret) -> HttpResponse:
        url = self._url(f"/app/installations/{secret.installation_id}/access_tokens", None)
        return self._send("POST", url, token=self._jwt.token(secret), body=None, idempotent=True)

    # --- limits and retries ---------------------------------------------------

    def _send(self, method: str, url: str, *, token: str, body: bytes | None, idempotent: bool) -> HttpResponse:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                   "User-Agent": "llm-ide", "Authorization": f"Bearer {token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        redirects = 0
        while True:
            attempt += 1
            left = self._time_still_left()
            try:
                response = self._transport.send(method, url, headers=headers, body=body,
                                                timeout=left if math.isfinite(left) else None)
            except TransportError as exc:
                if self._time_left() <= 0:  # its timeouts were cut to the time left
                    raise Timeout("GitHub did not answer before the time limit") from None
                if not idempotent:
                    raise UpstreamError(str(exc)) from None
                self._wait(attempt, self._backoff(attempt), UpstreamError(str(exc)))
                continue
            if response.status in (301, 302, 307, 308) and redirects < MAX_REDIRECTS:
                location = _same_origin(response.header("location"), self._api_url)
                if location and (method == "GET" or response.status in (307, 308)):
                    url, redirects, attempt = location, redirects + 1, attempt - 1
                    continue
            limit_wait = self._rate_limit_wait(response)
            if limit_wait is not None:
                logger.warning("GitHub rate limit", extra={"status": response.status, "waitSeconds": limit_wait})
                self._on_rate_limited()
                give_up = UpstreamThrottled("GitHub is rate limiting this app; try again later",
                                            retry_after=max(1, math.ceil(limit_wait)))
                self._wait(attempt, limit_wait, give_up)
                continue
            if response.status >= 500 and idempotent:
                logger.warning("GitHub failed", extra={"status": response.status, "attempt": attempt})
                self._wait(attempt, self._backoff(attempt),
                           UpstreamError(f"GitHub failed (HTTP {response.status})"))
                continue
            return response

    def _time_still_left(self) -> float:
        left = self._time_left()
        if left <= 0:
            raise Timeout("GitHub did not finish before the time limit")
        return left

    def _wait(self, attempt: int, seconds: float, give_up: AppError) -> None:
        """Sleep before the next attempt, or raise give_up when attempts or the wait budget run out,
        or TIMEOUT (with give_up's retryAfter) when the wait would reach the run's deadline."""
        if attempt >= self._max_attempts or seconds > self._wait_left:
            raise give_up
        if seconds >= self._time_left():
            raise Timeout(f"{give_up.message}; waiting {seconds:.1f} s more would pass the time limit",
                          retry_after=give_up.retry_after)
        self._wait_left -= seconds
        self._sleep(seconds)

    def _backoff(self, attempt: int) -> float:
        return min(MAX_BACKOFF, 0.5 * 2 ** (attempt - 1)) * (0.5 + self._jitter() / 2)

    def _rate_limit_wait(self, response: HttpResponse) -> float | None:
        """Seconds to wait when the response is a primary or secondary rate limit, else None."""
        if response.status not in (403, 429):
            return None
        retry_after = _number(response.header("retry-after"))
        if retry_after is not None:
            return max(0.0, retry_after)
        if response.header("x-ratelimit-remaining") == "0":
            reset = _number(response.header("x-ratelimit-reset"))
            return max(1.0, reset - self._clock() + 1) if reset is not None else SECONDARY_LIMIT_WAIT
        if response.status == 429 or "rate limit" in _message(response).lower():
            return SECONDARY_LIMIT_WAIT
        return None

    def _url(self, path: str, query: dict[str, Any] | None) -> str:
        query = {k: v for k, v in (query or {}).items() if v is not None}
        return f"{self._api_url}{path}" + (f"?{urlencode(query)}" if query else "")


def _data(response: HttpResponse, *, not_found: str | None) -> Any:
    """A final response's JSON, or the protocol error it stands for."""
    status = response.status
    if 200 <= status < 300:
        if not response.body:
            return None
        try:
            return json.loads(response.body)
        except ValueError:
            raise UpstreamError("GitHub answered something that is not JSON") from None
    message = _message(response)[:200]
    if status == 404:
        raise NotFound(not_found or "not found on GitHub (or the GitHub App has no access to it)")
    if status == 403:
        raise Forbidden(f"GitHub refused access: {message}" if message else "GitHub refused access")
    if status == 401:
        raise UpstreamError("GitHub refused the GitHub App's credentials")
    if status == 422:
        raise Unprocessable(f"GitHub refused the request: {message}")
    if 400 <= status < 500:
        raise BadRequest(f"GitHub refused the request (HTTP {status}): {message}")
    raise UpstreamError(f"GitHub failed (HTTP {status})")


def _message(response: HttpResponse) -> str:
    try:
        message = json.loads(response.body).get("message", "")
    except (ValueError, AttributeError):
        return ""
    return message if isinstance(message, str) else ""


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _same_origin(url: str | None, api_url: str) -> str | None:
    """A URL GitHub pointed us to, only on the API's own origin (the token must not travel elsewhere)."""
    if not url:
        return None
    if url.startswith("/"):
        origin = urlsplit(api_url)
        return f"{origin.scheme}://{origin.netloc}{url}"
    return url if urlsplit(url)[:2] == urlsplit(api_url)[:2] else None


def _next_link(link: str | None, api_url: str) -> str | None:
    for part in (link or "").split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params:
            return _same_origin(target.strip().strip("<>"), api_url)
    return None
