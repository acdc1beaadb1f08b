"""How much the named-check verifier costs over PyJWT's own decode, per token (warm keys).

    .venv/bin/python bench/auth_verify.py [--rounds 2000]

Both verify the same RS256 access token with the same public key; the baseline lets
PyJWT check exp/iat/iss, ours runs every check of chalicelib.auth.verifier. Prints the
median microseconds of each and the ratio, measured in the same run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collections.abc import Callable

import jwt

from chalicelib.auth.jwks import JwksCache
from chalicelib.auth.verifier import CognitoJwtVerifier
from tests import tokens


def median_us(call: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    rounds = parser.parse_args().rounds
    token = tokens.sign(tokens.claims())
    public_key = tokens.private_key().public_key()
    fetcher = tokens.CountingFetcher(tokens.jwks())
    verifier = CognitoJwtVerifier(issuer=tokens.ISSUER, client_ids=(tokens.CLIENT_ID,), token_use="access",
                                  jwks_url="https://example.test/jwks.json", jwks_cache=JwksCache(fetcher))
    verifier.verify(token)  # warm the key cache, as a warm Lambda container is

    def baseline():
        jwt.decode(token, public_key, algorithms=["RS256"], issuer=tokens.ISSUER, options={"require": ["exp", "iat"]})

    ours_us = median_us(lambda: verifier.verify(token), rounds)
    base_us = median_us(baseline, rounds)
    print(f"rounds={rounds}  JWKS fetches={fetcher.fetches}")
    print(f"PyJWT jwt.decode (baseline)  median {base_us:8.1f} us")
    print(f"CognitoJwtVerifier.verify    median {ours_us:8.1f} us")
    print(f"ratio ours/baseline          {ours_us / base_us:8.2f}")


if __name__ == "__main__":
    main()
