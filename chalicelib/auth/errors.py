"""Why a token was refused: one class per check, each naming what it saw and expected.

The reason is for logs (never the token itself); callers outside `auth` see only
"unauthorized". A JwtConfigError is a deployment mistake, never the token's fault.
"""
from __future__ import annotations

from typing import Any


class JwtConfigError(Exception):
    """The verifier was configured wrongly (no issuer, no client ids, ...)."""


class JwtInvalid(Exception):
    """Base class of every reason to refuse a token."""

    reason = "invalid"

    def __init__(self, message: str, *, actual: Any = None, expected: Any = None) -> None:
        super().__init__(message)
        self.actual = actual
        self.expected = expected


class TokenMissing(JwtInvalid):
    reason = "missing"


class JwtMalformed(JwtInvalid):
    reason = "malformed"


class AlgorithmNotAllowed(JwtInvalid):
    reason = "alg_not_allowed"


class KidMissing(JwtInvalid):
    reason = "kid_missing"


class KidNotFound(JwtInvalid):
    reason = "kid_not_found"


class JwkInvalid(JwtInvalid):
    """The JWK found for the kid cannot be used (not a key PyJWT can load)."""

    reason = "jwk_invalid"


class JwkInvalidUse(JwkInvalid):
    reason = "jwk_use_not_sig"


class JwkInvalidKty(JwkInvalid):
    reason = "jwk_kty_not_rsa"


class JwkAlgorithmMismatch(JwkInvalid):
    reason = "alg_differs_from_jwk"


class JwksUnavailable(JwtInvalid):
    reason = "jwks_unavailable"


class SignatureInvalid(JwtInvalid):
    reason = "bad_signature"


class IssuerInvalid(JwtInvalid):
    reason = "bad_issuer"


class TokenUseInvalid(JwtInvalid):
    reason = "bad_token_use"


class ClientInvalid(JwtInvalid):
    reason = "bad_client"


class Expired(JwtInvalid):
    reason = "expired"


class NotYetValid(JwtInvalid):
    reason = "not_yet_valid"


class IssuedInFuture(JwtInvalid):
    reason = "iat_in_future"


class ClaimInvalid(JwtInvalid):
    reason = "bad_claim"


class SubjectMissing(ClaimInvalid):
    reason = "sub_missing"


class GroupNotAllowed(JwtInvalid):
    reason = "group_not_allowed"


class TokenRevoked(JwtInvalid):
    """The token verifies, but Cognito no longer honours it: the user signed out everywhere, or was
    signed out, disabled or deleted by an administrator (chalicelib/auth/revocation.py)."""

    reason = "revoked"
