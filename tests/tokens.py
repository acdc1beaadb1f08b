"""Test tokens: an RSA key pair of our own, its JWKS, and Cognito-shaped claims."""
from __future__ import annotations

import functools
import gzip
import json
import threading
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool"
CLIENT_ID = "testclient123"
KID = "test-kid-1"


def private_key(name: str = "main") -> rsa.RSAPrivateKey:
    return _private_key(name)  # one cache key per name, however the name is passed


@functools.lru_cache(maxsize=4)
def _private_key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(name: str = "main", kid: str = KID, **extra: Any) -> dict[str, Any]:
    public = RSAAlgorithm.to_jwk(private_key(name).public_key(), as_dict=True)
    return {**public, "kid": kid, "alg": "RS256", "use": "sig", **extra}


def jwks(*keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(keys) or [jwk()]}


def claims(token_use: str = "access", /, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": str(uuid.uuid4()), "iss": ISSUER, "token_use": token_use, "iat": now, "auth_time": now,
        "exp": now + 3600, "jti": str(uuid.uuid4()),
    }
    if token_use == "access":
        base.update(client_id=CLIENT_ID, username="alice")
    else:
        base.update({"aud": CLIENT_ID, "cognito:username": "alice"})
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], *, key_name: str = "main", kid: str | None = KID, alg: str = "RS256",
         headers: dict[str, Any] | None = None) -> str:
    header = {"kid": kid} if kid is not None else {}
    header.update(headers or {})
    return jwt.encode(payload, private_key(key_name), algorithm=alg, headers=header)


def sign_as_moto(payload: dict[str, Any]) -> str:
    """A token signed with moto's own Cognito key (kid "dummy"), which the local stack's JWKS serves.

    Only tests use this: it lets them mint tokens moto would not (a 3-second lifetime)
    without teaching the app to trust any other key.
    """
    return jwt.encode(payload, moto_private_key(), algorithm="RS256", headers={"kid": "dummy"})


@functools.lru_cache(maxsize=1)
def moto_private_key() -> rsa.RSAPrivateKey:
    import moto.cognitoidp

    # The file has no primes, so loading it recovers them: slow enough to do once.
    with gzip.open(f"{moto.cognitoidp.__path__[0]}/resources/jwks-private.json.gz", "rt") as file:
        return jwt.PyJWK(json.load(file)).key


class CountingFetcher:
    """A JWKS fetcher that serves a fixed document, optionally slowly, and counts its fetches."""

    def __init__(self, document: dict[str, Any], *, delay: float = 0.0) -> None:
        self.document = document
        self.delay = delay
        self.fetches = 0
        self._lock = threading.Lock()

    def fetch(self, url: str) -> dict[str, Any]:
        with self._lock:
            self.fetches += 1
        time.sleep(self.delay)
        return self.document
