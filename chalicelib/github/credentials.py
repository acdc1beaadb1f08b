"""The GitHub App's credentials: its secret, its JWT, its installation tokens, and which
installation owns a repository (for an app installed on several accounts).

Each is cached per container (one Lambda container serves many requests): the
secret until GitHub refuses the JWT made from it (the key was rotated), the JWT
until shortly before it expires, an installation token until shortly before its
`expires_at`, a repository's installation for ROUTE_LIFETIME_SECONDS. Every
cache is thread-safe, as the local stack runs workers on threads.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import Internal, UpstreamError

logger = logging.getLogger(__name__)

JWT_BACKDATE_SECONDS = 60  # GitHub's advice against clock drift
JWT_LIFETIME_SECONDS = 9 * 60  # GitHub refuses more than 10 minutes
JWT_RENEW_BEFORE_SECONDS = 60
TOKEN_RENEW_BEFORE_SECONDS = 5 * 60
ROUTE_LIFETIME_SECONDS = 15 * 60  # a repository moved to another account is found again
MAX_INSTALLATIONS = 100  # each one costs github.repos a token and a page


@dataclass(frozen=True)
class AppSecret:
    """The secret's JSON: {"appId": "123", "privateKey": "-----BEGIN ...", and either "installationId": 456
    or "installationIds": [456, 789]}. The installations listed are all this deployment may use."""

    app_id: str
    installation_ids: tuple[int, ...]
    private_key: str = field(repr=False)  # never in a repr, should one reach a log

    @classmethod
    def parse(cls, text: str) -> AppSecret:
        """The secret, or Internal with the reason (never the secret's values)."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError):
            data = None
        if not isinstance(data, dict) or "appId" not in data or "privateKey" not in data:
            raise Internal("the GitHub App secret is not a JSON object with appId, privateKey and installationId "
                           "or installationIds")
        app_id, key = data["appId"], data["privateKey"]
        if not str(app_id).isdigit() or not isinstance(key, str) or "PRIVATE KEY" not in key:
            raise Internal("the GitHub App secret has an invalid appId or privateKey")
        return cls(app_id=str(app_id), installation_ids=_installation_ids(data), private_key=key)


def _installation_ids(data: dict[str, Any]) -> tuple[int, ...]:
    """`installationId` (an id, as a number or a string of digits) or `installationIds` (a list of
    distinct numbers), exactly one of the two."""
    if ("installationId" in data) == ("installationIds" in data):
        raise Internal("the GitHub App secret must hold exactly one of installationId and installationIds")
    if "installationId" in data:
        single = data["installationId"]
        if isinstance(single, bool) or not str(single).isdigit() or int(single) == 0:
            raise Internal("the GitHub App secret's installationId is not a positive integer")
        return (int(single),)
    ids = data["installationIds"]
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_INSTALLATIONS:
        raise Internal(f"the GitHub App secret's installationIds is not a list of 1 to {MAX_INSTALLATIONS} ids")
    if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids):
        raise Internal("the GitHub App secret's installationIds holds something other than positive integers")
    if len(set(ids)) != len(ids):
        raise Internal("the GitHub App secret's installationIds names an installation twice")
    return tuple(ids)


class SecretSource:
    """The app's secret from Secrets Manager, fetched once and again only on `refresh()`."""

    def __init__(self, client: Any, secret_arn: str | None) -> None:
        self._client = client
        self._arn = secret_arn
        self._secret: AppSecret | None = None
        self._lock = threading.Lock()

    def get(self) -> AppSecret:
        with self._lock:
            if self._secret is None:
                self._secret = self._fetch()
            return self._secret

    def refresh(self, stale: AppSecret) -> AppSecret:
        """Fetch again, unless another thread already replaced the stale secret."""
        with self._lock:
            if self._secret is None or self._secret is stale:
                self._secret = self._fetch()
            return self._secret

    def _fetch(self) -> AppSecret:
        if not self._arn:
            logger.error("GitHub is not configured: GITHUB_SECRET_ARN is not set")
            raise Internal("GitHub is not available")
        try:
            text = self._client.get_secret_value(SecretId=self._arn)["SecretString"]
        except (ClientError, BotoCoreError, KeyError) as exc:
            logger.error("cannot read the GitHub App secret", extra={"error": type(exc).__name__})
            raise UpstreamError("the GitHub App's credentials cannot be read") from None
        try:
            secret = AppSecret.parse(text)
        except Internal as invalid:  # the reason names fields, never their values; it is the operator's
            logger.error("the GitHub App secret is invalid", extra={"reason": invalid.message})
            raise Internal("GitHub is not available") from None  # the protocol: INTERNAL says nothing of internals
        logger.info("GitHub App secret fetched", extra={"installations": len(secret.installation_ids)})
        return secret


class AppJwt:
    """The app's JWT (RS256), reused until a minute before it expires."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._cached: tuple[AppSecret, str, float] | None = None
        self._lock = threading.Lock()

    def token(self, secret: AppSecret) -> str:
        import jwt  # PyJWT and cryptography: only the GitHub worker pays for them

        with self._lock:
            now = self._clock()
            if self._cached and self._cached[0] is secret and now < self._cached[2] - JWT_RENEW_BEFORE_SECONDS:
                return self._cached[1]
            issued = int(now) - JWT_BACKDATE_SECONDS
            expires = int(now) + JWT_LIFETIME_SECONDS
            token = jwt.encode({"iat": issued, "exp": expires, "iss": secret.app_id}, secret.private_key,
                               algorithm="RS256")
            self._cached = (secret, token, float(expires))
            return token


class InstallationTokens:
    """Installation access tokens by installation id, until shortly before their `expires_at`."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._tokens: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, installation_id: int) -> str | None:
        with self._lock:
            cached = self._tokens.get(installation_id)
            if cached and self._clock() < cached[1] - TOKEN_RENEW_BEFORE_SECONDS:
                return cached[0]
            return None

    def put(self, installation_id: int, token: str, expires_at: object) -> None:
        """Keep a token until shortly before `expires_at` (GitHub's ISO time; anything else is UPSTREAM_ERROR)."""
        try:
            expiry = datetime.fromisoformat(str(expires_at).replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise UpstreamError("GitHub answered an installation token without a valid expires_at") from None
        with self._lock:
            self._tokens[installation_id] = (token, expiry)

    def forget(self, installation_id: int, token: str) -> None:
        with self._lock:
            if self._tokens.get(installation_id, ("",))[0] == token:
                del self._tokens[installation_id]


class RepoInstallations:
    """The installation that owns each repository ("owner/name", any case), as GitHub said."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._owners: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, repo: str) -> int | None:
        with self._lock:
            cached = self._owners.get(repo.lower())
            return cached[0] if cached and self._clock() < cached[1] else None

    def put(self, repo: str, installation_id: int) -> None:
        with self._lock:
            self._owners[repo.lower()] = (installation_id, self._clock() + ROUTE_LIFETIME_SECONDS)
