"""Calls to GitHub's REST API as the app's installation: auth, limits, retries, errors.

GitHub's answers become protocol errors here and nowhere else: 404 is
NOT_FOUND, 403 for a file too large for its API (`errors[].code` `too_large`)
PAYLOAD_TOO_LARGE, other 403s without a rate-limit sign FORBIDDEN, 422 and other 4xx
BAD_REQUEST; limits (429, or 403 with `retry-after` or `x-ratelimit-remaining:
0`) are waited out and 5xx retried, within a number of attempts and a total
wait per worker run, then UPSTREAM_THROTTLED (with `retryAfter`) or
UPSTREAM_ERROR. A 401 on the app's JWT means the key was rotated: the secret
is fetched again, once. The run has a deadline (`time_left`, from Lambda's
remaining time): no call starts after it, no call's timeouts reach past it, no
wait that would pass it is started; it is answered TIMEOUT. The last `reserve`
seconds before it are kept back for undoing a write that failed (`release_reserve`),
so that a pull request stopped by the deadline can still delete its branch. Every
request sent counts in `calls`, retries too: what the run cost the app's GitHub limits;
`before_call` is asked before each (the user's call budget: it raises RATE_LIMITED to stop
the run before a call the budget does not cover). It is told `undoing` for the calls that
only deal with a write already sent: the undo (`release_reserve`) and the look-ups that find
out what a write whose answer was lost did (`finding_out`); those may pass the budget, since
refusing them would leave on GitHub what the run cannot then account for.

Each call runs as one of the secret's installations, with that installation's
token: the only one when the secret names one; else the one GitHub says owns
the repository (`/repos/{owner}/{repo}/...`, asked with the app's JWT and
remembered per container), which must be among the secret's: the secret's
list is the allow-list of what this deployment may touch, and any other
repository is NOT_FOUND, as GitHub answers for a repository the app cannot see.
"""
from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

from chalicelib.errors import (
    AppError,
    BadRequest,
    Forbidden,
    Internal,
    NotFound,
    PayloadTooLarge,
    Timeout,
    UpstreamError,
    UpstreamThrottled,
)
from chalicelib.github.credentials import AppJwt, AppSecret, InstallationTokens, RepoInstallations, SecretSource
from chalicelib.transport import HttpResponse, Transport, TransportError

logger = logging.getLogger(__name__)

SECONDARY_LIMIT_WAIT = 60.0  # GitHub: without a header, wait at least a minute
MAX_LIMIT_WAIT = 3600.0  # GitHub's primary limits reset within the hour: a longer wait is no answer of GitHub's
MAX_BACKOFF = 8.0
MAX_PAGES = 10
MAX_REDIRECTS = 3
# GitHub's REST API reads and writes files (blobs) of at most 100 MB (docs.github.com: repository contents,
# git blobs); a larger one is a 403 whose `errors[].code` is `too_large`.
MAX_BLOB_TEXT = "100 MB"
_REPO_PATH = re.compile(r"^/repos/([^/]+/[^/]+)(?:/|$)")


class Unprocessable(BadRequest):
    """GitHub's 422: the request was understood and refused (a ref that exists, say)."""


class GitHubClient:
    """One worker run's client: the caches it is given live per container, the wait budget per run."""

    def __init__(self, *, transport: Transport, secrets: SecretSource, app_jwt: AppJwt,
                 tokens: InstallationTokens, api_url: str, max_attempts: int, max_wait: float,
                 routes: RepoInstallations | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random,
                 time_left: Callable[[], float] = lambda: math.inf, reserve: float = 0.0,
                 on_rate_limited: Callable[[], None] = lambda: None,
                 before_call: Callable[..., None] = lambda calls_made, *, undoing: None) -> None:
        self._transport = transport
        self._secrets = secrets
        self._jwt = app_jwt
        self._tokens = tokens
        self._routes = routes or RepoInstallations(clock=clock)
        self._api_url = api_url.rstrip("/")
        self._max_attempts = max_attempts
        self._wait_left = max_wait
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._time_left = time_left  # seconds until the run must stop, to still answer the client
        self._reserve = reserve  # seconds before that kept back for undoing a failed write
        self._on_rate_limited = on_rate_limited  # one call per rate-limit answer (the worker's metric)
        self._before_call = before_call  # (calls made so far, undoing=...) before each request: may raise
        self._undoing = False  # what is sent now deals with a write already sent (release_reserve, finding_out)
        self.calls = 0  # requests sent to GitHub by this run, retries included

    def release_reserve(self) -> None:
        """From now on the calls may use the time kept back (`reserve`), and wait as long again:
        for undoing what a failed request left on GitHub, once, at its end."""
        self._wait_left = max(self._wait_left, self._reserve)
        self._reserve = 0.0
        self._undoing = True

    @contextmanager
    def finding_out(self) -> Iterator[None]:
        """The calls made within only find out what a write already sent did (its answer was lost or
        failed): `before_call` is told `undoing`, as for an undo, so the call budget does not refuse them."""
        undoing, self._undoing = self._undoing, True
        try:
            yield
        finally:
            self._undoing = undoing

    # --- the API ------------------------------------------------------------

    # `not_found` and `too_large` are the messages of GitHub's 404 and of its 403 for a file too large
    # (PAYLOAD_TOO_LARGE): what was missing or too large, said as the action knows it.

    def get(self, path: str, *, query: dict[str, Any] | None = None, not_found: str | None = None,
            too_large: str | None = None) -> Any:
        return self.request("GET", path, query=query, not_found=not_found, too_large=too_large)

    def post(self, path: str, body: dict[str, Any], *, idempotent: bool = True, not_found: str | None = None,
             too_large: str | None = None) -> Any:
        return self.request("POST", path, body=body, idempotent=idempotent, not_found=not_found, too_large=too_large)

    def delete(self, path: str, *, not_found: str | None = None) -> Any:
        return self.request("DELETE", path, not_found=not_found)

    def installations(self) -> tuple[int, ...]:
        """The installations the secret names: all this deployment may use."""
        self._time_still_left()  # before the secret, which may be fetched
        return self._secrets.get().installation_ids

    def paginate(self, path: str, *, key: str, per_page: int = 100, max_items: int | None = None,
                 installation: int | None = None) -> tuple[list[dict[str, Any]], bool]:
        """Items of a paginated list, following `Link: rel="next"` for at most MAX_PAGES pages and
        max_items items (MAX_PAGES * per_page), and whether the list was cut there. It is read as
        `installation` (one of the secret's), else as the path decides (see the module's docstring)."""
        limit = MAX_PAGES * per_page if max_items is None else max_items
        installation = self._installation(path, installation)
        url: str | None = self._url(path, {"per_page": per_page})
        items: list[dict[str, Any]] = []
        pages = 0
        while url is not None and pages < MAX_PAGES and len(items) < limit:
            response = self._authorized("GET", url, installation, body=None, idempotent=True)
            items += _data(response, not_found=None)[key]
            url = _next_link(response.header("link"), self._api_url)
            pages += 1
        if url is None and len(items) <= limit:
            return items, False
        logger.warning("GitHub list cut at the page limit", extra={"path": path, "pages": MAX_PAGES,
                                                                    "items": len(items), "maxItems": limit})
        return items[:limit], True

    def pause_before_retry(self, attempt: int, give_up: AppError) -> None:
        """The backoff before attempt `attempt + 1` of a call the caller retries itself (within the
        same attempts, wait budget and deadline as every other call), or give_up."""
        self._wait(attempt, self._backoff(attempt), give_up)

    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                body: dict[str, Any] | None = None, idempotent: bool = True, not_found: str | None = None,
                too_large: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        installation = self._installation(path, None)
        return _data(self._authorized(method, self._url(path, query), installation, body=data,
                                      idempotent=idempotent), not_found=not_found, too_large=too_large)

    # --- installations ----------------------------------------------------------

    def _installation(self, path: str, named: int | None) -> int:
        """The installation a call to `path` runs as (see the module's docstring)."""
        allowed = self.installations()
        if named is not None:
            if named not in allowed:
                raise Internal(f"installation {named} is not in the GitHub App secret")
            return named
        if len(allowed) == 1:
            return allowed[0]
        repo = _REPO_PATH.match(path)
        if repo is None:
            raise Internal("a GitHub call outside a repository must name its installation")
        return self._repo_installation(repo[1], allowed)

    def _repo_installation(self, repo: str, allowed: tuple[int, ...]) -> int:
        refused = NotFound(f"no repository {repo} (or the GitHub App has no access to it)")
        owner = self._routes.get(repo)
        if owner is None:
            data = _data(self._as_app("GET", f"/repos/{repo}/installation"), not_found=refused.message)
            owner = data.get("id") if isinstance(data, dict) else None
            if not isinstance(owner, int) or isinstance(owner, bool):
                raise UpstreamError("GitHub answered a repository's installation without its id")
            self._routes.put(repo, owner)
        if owner not in allowed:
            logger.warning("repository of an installation the secret does not name", extra={"installationId": owner})
            raise refused
        return owner

    # --- authentication -----------------------------------------------------

    def _authorized(self, method: str, url: str, installation: int, *, body: bytes | None,
                    idempotent: bool) -> HttpResponse:
        self._time_still_left()  # before the secret, which may be fetched
        token = self._installation_token(installation)
        response = self._send(method, url, token=token, body=body, idempotent=idempotent)
        if response.status == 401:  # revoked or expired early: one more time with a new token
            self._tokens.forget(installation, token)
            token = self._installation_token(installation)
            response = self._send(method, url, token=token, body=body, idempotent=idempotent)
        return response

    def _installation_token(self, installation: int) -> str:
        token = self._tokens.get(installation)
        if token is not None:
            return token
        data = _data(self._as_app("POST", f"/app/installations/{installation}/access_tokens"),
                     not_found="the GitHub App's installation was not found")
        if not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise UpstreamError("GitHub answered an installation token request without a token")
        self._tokens.put(installation, data["token"], data.get("expires_at"))
        return data["token"]

    def _as_app(self, method: str, path: str) -> HttpResponse:
        """A call made with the app's JWT; refused, the secret is fetched again once (key rotation)."""
        secret = self._secrets.get()
        response = self._send_as_app(method, path, secret)
        if response.status == 401:
            logger.warning("GitHub refused the app JWT; fetching the secret again (key rotation?)")
            response = self._send_as_app(method, path, self._secrets.refresh(secret))
            if response.status == 401:
                logger.error("GitHub refused the app JWT made with the current secret")
                raise UpstreamError("GitHub refused the GitHub App's credentials")
        return response

    def _send_as_app(self, method: str, path: str, secret: AppSecret) -> HttpResponse:
        return self._send(method, self._url(path, None), token=self._jwt.token(secret), body=None, idempotent=True)

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
            self._before_call(self.calls, undoing=self._undoing)
            self.calls += 1
            try:
                response = self._transport.send(method, url, headers=headers, body=body,
                                                timeout=left if math.isfinite(left) else None)
            except TransportError as exc:
                if self._seconds_left() <= 0:  # its timeouts were cut to the time left
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

    def _seconds_left(self) -> float:
        return self._time_left() - self._reserve

    def _time_still_left(self) -> float:
        left = self._seconds_left()
        if left <= 0:
            raise Timeout("GitHub did not finish before the time limit")
        return left

    def _wait(self, attempt: int, seconds: float, give_up: AppError) -> None:
        """Sleep before the next attempt, or raise give_up when attempts or the wait budget run out,
        or TIMEOUT (with give_up's retryAfter) when the wait would reach the run's deadline."""
        if attempt >= self._max_attempts or seconds > self._wait_left:
            raise give_up
        if seconds >= self._seconds_left():
            raise Timeout(f"{give_up.message}; waiting {seconds:.1f} s more would pass the time limit",
                          retry_after=give_up.retry_after)
        self._wait_left -= seconds
        self._sleep(seconds)

    def _backoff(self, attempt: int) -> float:
        return min(MAX_BACKOFF, 0.5 * 2 ** (attempt - 1)) * (0.5 + self._jitter() / 2)

    def _rate_limit_wait(self, response: HttpResponse) -> float | None:
        """Seconds to wait (at most MAX_LIMIT_WAIT) when the response is a primary or secondary rate limit,
        else None."""
        if response.status not in (403, 429):
            return None
        retry_after = _number(response.header("retry-after"))
        if retry_after is not None:
            return min(max(0.0, retry_after), MAX_LIMIT_WAIT)
        if response.header("x-ratelimit-remaining") == "0":
            reset = _number(response.header("x-ratelimit-reset"))
            return min(max(1.0, reset - self._clock() + 1), MAX_LIMIT_WAIT) if reset is not None \
                else SECONDARY_LIMIT_WAIT
        if response.status == 429 or "rate limit" in _message(response).lower():
            return SECONDARY_LIMIT_WAIT
        return None

    def _url(self, path: str, query: dict[str, Any] | None) -> str:
        query = {k: v for k, v in (query or {}).items() if v is not None}
        return f"{self._api_url}{path}" + (f"?{urlencode(query)}" if query else "")


def _data(response: HttpResponse, *, not_found: str | None, too_large: str | None = None) -> Any:
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
    if status == 403 and _too_large(response):
        raise PayloadTooLarge(too_large or f"a file is too large for GitHub's API, which takes at most {MAX_BLOB_TEXT}")
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


def _too_large(response: HttpResponse) -> bool:
    """Whether GitHub refused a file (a blob) as too large for its API: an error of code `too_large`."""
    try:
        errors = json.loads(response.body).get("errors")
    except (ValueError, AttributeError):
        return False
    return isinstance(errors, list) and any(isinstance(e, dict) and e.get("code") == "too_large" for e in errors)


def _number(value: str | None) -> float | None:
    """A header's number; None without one, or for what float() reads but is none (`inf`, `nan`, `1e999`)."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


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
