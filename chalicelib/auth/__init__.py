"""Authentication: who is behind a token.

`verify(token)` is the one way in: `$connect` (chalicelib/dispatch/handlers.py) and
both Lambda authorizers (chalicelib/auth/authorizer.py) call it, and log a refusal's
reason, never the token. The verifier (and with it PyJWT and cryptography) is
imported on first use, so handlers that never see a token do not pay for it at cold
start. `$connect` and the REST authorizer then ask Cognito whether it still honours the
token (`get_revocation_check()`, COGNITO_REVOCATION_CHECK): a signed-out or disabled user's
token verifies offline until it expires.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from chalicelib.auth.errors import JwtInvalid, TokenMissing
from chalicelib.observability import metric_names
from chalicelib.observability.metrics import MetricsWriter, get_metrics
from chalicelib.process import kept

if TYPE_CHECKING:
    from chalicelib.auth.verifier import CognitoJwtVerifier, Identity

logger = logging.getLogger(__name__)


def token_from_request(headers: Mapping[str, str] | None, query: Mapping[str, str] | None) -> str | None:
    """The token from `Authorization: Bearer <token>` or the `token` query parameter."""
    for name, value in (headers or {}).items():
        if name.lower() == "authorization" and isinstance(value, str):
            scheme, _, credentials = value.strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    token = (query or {}).get("token")
    return token if isinstance(token, str) and token else None


@kept
def get_verifier() -> CognitoJwtVerifier:
    from chalicelib.auth.jwks import HttpJwksFetcher, JwksCache
    from chalicelib.auth.verifier import CognitoJwtVerifier
    from chalicelib.config import get_settings

    settings = get_settings()
    return CognitoJwtVerifier(
        issuer=settings.issuer,
        client_ids=settings.app_client_ids,
        token_use=settings.token_use,
        jwks_url=settings.jwks_url,
        jwks_cache=JwksCache(HttpJwksFetcher(connect_timeout=settings.jwks_connect_timeout,
                                             read_timeout=settings.jwks_read_timeout)),
        leeway_seconds=settings.jwt_leeway_seconds,
        required_groups=settings.required_groups,
    )


# GetUser runs inside $connect and the REST authorizer: a short wait, one retry (of a throttle
# too), then the check gives way (chalicelib/auth/revocation.py): at most about 2 x (1 s + 2 s).
REVOCATION_CONNECT_TIMEOUT = 1.0
REVOCATION_READ_TIMEOUT = 2.0
REVOCATION_MAX_ATTEMPTS = 2


@kept
def get_revocation_check() -> Callable[[str], None] | None:
    """The container's revocation check (raises TokenRevoked), or None when COGNITO_REVOCATION_CHECK is off."""
    from chalicelib.config import get_settings

    if not get_settings().revocation_check:
        return None
    from chalicelib.auth.revocation import RevocationCheck
    from chalicelib.transport import HttpTransport

    transport = HttpTransport(connect_timeout=REVOCATION_CONNECT_TIMEOUT, read_timeout=REVOCATION_READ_TIMEOUT)
    return RevocationCheck(transport, endpoint=get_settings().cognito_endpoint, attempts=REVOCATION_MAX_ATTEMPTS)


def verify(token: str | None) -> Identity:
    """The token's identity; raises JwtInvalid (TokenMissing without a token), whose `reason` may be logged."""
    if not token:
        raise TokenMissing("no token")
    return get_verifier().verify(token)


def count_refusal(refused: JwtInvalid, *, metrics: MetricsWriter | None = None) -> None:
    """One `AuthRefused` data point by the refusal's reason: a class attribute of auth/errors.py, so the
    dimension is a short fixed list whatever the caller sent (never the token, nor a claim)."""
    (metrics or get_metrics()).emit(metric_names.AUTH_REFUSED, 1, dimensions={metric_names.REASON: refused.reason})
