"""The GitHub App's credentials: its secret, its JWT and its installation tokens.

All three are cached per container (one Lambda container serves many
requests): the secret until GitHub refuses the JWT made from it (the key was
rotated), the JWT until shortly before it expires, and an installation token
until shortly before its `expires_at`. Every cache is thread-safe, as the local
stack runs workers on threads.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import Internal, UpstreamError

logger = logging.getLogger(__name__)

JWT_BACKDATE_SECONDS = 60  # GitHub's advice against clock drift
JWT_LIFETIME_SECONDS = 9 * 60  # GitHub refuses more than 10 minutes
JWT_RENEW_BEFORE_SECONDS = 60
TOKEN_RENEW_BEFORE_SECONDS = 5 * 60


@dataclass(frozen=True)
class AppSecret:
    """The secret's JSON: {"appId": "123", "installationId": 456, "privateKey": "-----BEGIN ..."}."""

    app_id: str
    installation_id: int
    private_key: str = field(repr=False)  # never in a repr, should one reach a log

    @classmethod
    def parse(cls, text: str) -> "AppSecret":
        try:
            data = json.loads(text)
            app_id, installation_id, key = data["appId"], data["installationId"], data["privateKey"]
        except (ValueError, TypeError, KeyError):
            raise Internal("the GitHub App secret is not {appId, installationId, privateKey}") from None
        if not str(app_id).isdigit() or not str(installation_id).isdigit() or "PRIVATE KEY" not in str(key):
            raise Internal("the GitHub App secret has an invalid appId, installationId or privateKey")
        return cls(app_id=str(app_id), installation_id=int(installation_id), private_key=str(key))


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
            raise Internal("GitHub is not configured (GITHUB_SECRET_ARN is not set)")
        try:
            text = self._client.get_secret_value(SecretId=self._arn)["SecretString"]
        except (ClientError, BotoCoreError, KeyError) as exc:
            logger.error("cannot read the GitHub App secret", extra={"error": type(exc).__name__})
            raise UpstreamError("the GitHub App's credentials cannot be read") from None
        logger.info("GitHub App secret fetched")
        return AppSecret.parse(text)


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

    def put(self, installation_id: int, token: str, expires_at: str) -> None:
        try:
            expiry = datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp()
        except (AttributeError, ValueError):
            raise UpstreamError("GitHub answered an installation token without a valid expires_at") from None
        with self._lock:
            self._tokens[installation_id] = (token, expiry)

    def forget(self, installation_id: int, token: str) -> None:
        with self._lock:
            if self._tokens.get(installation_id, ("",))[0] == token:
                del self._tokens[installation_id]
