"""Verification of Cognito JWTs, check by check, in the order aws-jwt-verify uses.

Each failed check raises its own JwtInvalid subclass. The header and claims are
checked by this module, not by PyJWT's options, so every reason has a name and
nothing is accepted by a library default; PyJWT only verifies the signature.

As in aws-jwt-verify, the issuer is compared before any key is looked up, so a
token from elsewhere never costs a JWKS fetch; every other claim is trusted only
after the signature verifies.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import jwt
from jwt.exceptions import InvalidSignatureError, PyJWKError, PyJWTError

from chalicelib.auth.errors import (
    AlgorithmNotAllowed,
    ClaimInvalid,
    ClientInvalid,
    Expired,
    GroupNotAllowed,
    IssuedInFuture,
    IssuerInvalid,
    JwkAlgorithmMismatch,
    JwkInvalid,
    JwkInvalidKty,
    JwkInvalidUse,
    JwtConfigError,
    JwtMalformed,
    KidMissing,
    NotYetValid,
    SignatureInvalid,
    SubjectMissing,
    TokenMissing,
    TokenUseInvalid,
)
from chalicelib.auth.jwks import JwksCache

MAX_TOKEN_LENGTH = 16 * 1024
ALLOWED_ALGORITHMS = ("RS256",)  # what Cognito signs with
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Identity:
    """Who a verified token belongs to."""

    sub: str
    username: str
    groups: tuple[str, ...]
    expires_at: int
    token_use: str


class CognitoJwtVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        client_ids: Sequence[str],
        token_use: str,
        jwks_url: str,
        jwks_cache: JwksCache,
        leeway_seconds: int = 5,
        required_groups: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not client_ids or token_use not in ("access", "id") or not jwks_url:
            raise JwtConfigError("issuer, client ids, token use (access|id) and JWKS URL are all required")
        if isinstance(client_ids, str) or not all(isinstance(c, str) and c for c in client_ids):
            raise JwtConfigError("client ids must be a sequence of non-empty strings")
        self._issuer = issuer
        self._client_ids = frozenset(client_ids)
        self._token_use = token_use
        self._jwks_url = jwks_url
        self._jwks = jwks_cache
        self._leeway = leeway_seconds
        self._required_groups = frozenset(required_groups)
        self._clock = clock
        self._keys: dict[tuple[str, str], Any] = {}

    def verify(self, token: Any) -> Identity:
        """The token's identity; any failed check raises its own JwtInvalid subclass."""
        # 1. Structure: three base64url segments; header and payload are JSON objects.
        header, payload = _decode_unverified(token)
        # 2. Header: an allowed algorithm and a key id.
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise AlgorithmNotAllowed("algorithm not allowed", actual=_short(alg), expected=ALLOWED_ALGORITHMS)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise KidMissing("header has no kid", actual=_short(kid))
        # 3. Issuer, before any key is fetched: a token from elsewhere costs nothing.
        self._check_issuer(payload)
        # 4. The key: found in the pool's JWKS, an RSA signing key for this algorithm.
        key = self._public_key(kid, alg)
        # 5. Signature, verified before any other claim is trusted.
        try:
            jwt.PyJWS().decode(token, key=key, algorithms=[alg])
        except InvalidSignatureError:
            raise SignatureInvalid("signature does not verify") from None
        except PyJWTError as exc:
            raise JwtMalformed(f"signature check failed: {type(exc).__name__}") from None
        # 6. Claims.
        return self._check_claims(payload)

    def _check_issuer(self, claims: dict[str, Any]) -> None:
        if claims.get("iss") != self._issuer:
            raise IssuerInvalid("issuer not allowed", actual=_short(claims.get("iss")), expected=self._issuer)

    def _public_key(self, kid: str, alg: str) -> Any:
        cached = self._keys.get((kid, alg))
        if cached is not None:
            return cached
        jwk = self._jwks.get_jwk(self._jwks_url, kid)
        if jwk.get("kty") != "RSA":
            raise JwkInvalidKty("JWK is not an RSA key", actual=_short(jwk.get("kty")), expected="RSA")
        if jwk.get("use") != "sig":
            raise JwkInvalidUse("JWK is not a signing key", actual=_short(jwk.get("use")), expected="sig")
        if "alg" in jwk and jwk["alg"] != alg:
            raise JwkAlgorithmMismatch("token alg differs from the JWK's", actual=alg, expected=_short(jwk["alg"]))
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except (PyJWKError, PyJWTError, ValueError, TypeError) as exc:
            raise JwkInvalid(f"JWK unusable: {type(exc).__name__}") from None
        self._keys[(kid, alg)] = key
        return key

    def _check_claims(self, claims: dict[str, Any]) -> Identity:
        now = self._clock()
        # token_use: an access token where access is configured, an ID token where id is.
        token_use = claims.get("token_use")
        if token_use != self._token_use:
            raise TokenUseInvalid("token use not allowed", actual=_short(token_use), expected=self._token_use)
        # The app client: client_id in access tokens, aud in ID tokens.
        client = claims.get("client_id" if token_use == "access" else "aud")
        if not isinstance(client, str) or client not in self._client_ids:
            raise ClientInvalid("client not allowed", actual=_short(client), expected=sorted(self._client_ids))
        # Time: exp and nbf with the grace; iat a number, not in the future.
        exp = _number(claims, "exp", required=True)
        if now > exp + self._leeway:
            raise Expired("token expired", actual=exp, expected=f"> {int(now)}")
        nbf = _number(claims, "nbf", required=False)
        if nbf is not None and now + self._leeway < nbf:
            raise NotYetValid("token not yet valid", actual=nbf, expected=f"<= {int(now)}")
        iat = _number(claims, "iat", required=True)
        if iat > now + self._leeway:
            raise IssuedInFuture("token issued in the future", actual=iat, expected=f"<= {int(now)}")
        # Who: sub is the key of every user's data, so it must be there.
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise SubjectMissing("token has no sub")
        username = claims.get("username" if token_use == "access" else "cognito:username", sub)
        if not isinstance(username, str):
            raise ClaimInvalid("username is not a string", actual=type(username).__name__)
        groups = claims.get("cognito:groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ClaimInvalid("cognito:groups is not a list of strings", actual=type(groups).__name__)
        # Optional: membership of at least one required group.
        if self._required_groups and not self._required_groups.intersection(groups):
            raise GroupNotAllowed("user is in none of the required groups", actual=len(groups),
                                  expected=sorted(self._required_groups))
        return Identity(sub=sub, username=username, groups=tuple(groups), expires_at=int(exp), token_use=token_use)


@overload
def _number(claims: dict[str, Any], name: str, *, required: Literal[True]) -> float: ...


@overload
def _number(claims: dict[str, Any], name: str, *, required: bool) -> float | None: ...


def _number(claims: dict[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ClaimInvalid(f"'{name}' is not a number", actual=type(value).__name__)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ClaimInvalid(f"'{name}' is not a finite number")
    return number


def _decode_unverified(token: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if token is None or token == "":
        raise TokenMissing("no token")
    if not isinstance(token, str):
        raise JwtMalformed("token is not a string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise JwtMalformed("token is too long", actual=len(token))
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtMalformed("token does not have three segments", actual=len(parts))
    # Python's base64 decoder skips characters outside the alphabet; a JWT must not have any.
    if not all(_BASE64URL.fullmatch(part) for part in parts):
        raise JwtMalformed("token has characters outside base64url")
    return _segment(parts[0], "header"), _segment(parts[1], "payload")


def _short(value: Any) -> Any:
    """A value fit for a log line: attacker-controlled strings are cut short."""
    return value[:64] if isinstance(value, str) else value


def _segment(segment: str, name: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise JwtMalformed(f"{name} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise JwtMalformed(f"{name} is not a JSON object")
    return value
