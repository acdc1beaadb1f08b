from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chalicelib.auth import errors, token_from_request
from chalicelib.auth.jwks import JwksCache, PenaltyBox
from chalicelib.auth.verifier import CognitoJwtVerifier
from tests import tokens

URL = "https://example.test/jwks.json"


def make_verifier(*, token_use="access", fetcher=None, clock=time.time, penalty_clock=None, **kwargs):
    fetcher = fetcher or tokens.CountingFetcher(tokens.jwks())
    box = PenaltyBox(clock=penalty_clock) if penalty_clock else None
    return CognitoJwtVerifier(issuer=tokens.ISSUER, client_ids=(tokens.CLIENT_ID,), token_use=token_use,
                              jwks_url=URL, jwks_cache=JwksCache(fetcher, penalty_box=box), clock=clock, **kwargs)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_access_token_gives_identity():
    payload = tokens.claims(**{"cognito:groups": ["admins"]})
    identity = make_verifier().verify(tokens.sign(payload))
    assert identity.sub == payload["sub"] and identity.username == "alice"
    assert identity.groups == ("admins",) and identity.expires_at == payload["exp"]


def test_valid_id_token_when_configured():
    identity = make_verifier(token_use="id").verify(tokens.sign(tokens.claims("id")))
    assert identity.token_use == "id" and identity.username == "alice"


@pytest.mark.parametrize("token, reason", [
    (None, errors.TokenMissing), ("", errors.TokenMissing), ("garbage", errors.JwtMalformed),
    ("a.b", errors.JwtMalformed), ("a.b.c", errors.JwtMalformed), (12, errors.JwtMalformed),
])
def test_malformed_tokens(token, reason):
    with pytest.raises(reason):
        make_verifier().verify(token)


def test_alg_none_is_refused():
    token = f"{b64({'alg': 'none', 'kid': tokens.KID})}.{b64(tokens.claims())}."
    with pytest.raises(errors.AlgorithmNotAllowed):
        make_verifier().verify(token)


def test_hs256_signed_with_the_public_key_is_refused():
    public_pem = tokens.private_key().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = b64({"alg": "HS256", "kid": tokens.KID, "typ": "JWT"})
    body = b64(tokens.claims())
    signature = base64.urlsafe_b64encode(hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    with pytest.raises(errors.AlgorithmNotAllowed):
        make_verifier().verify(f"{header}.{body}.{signature.rstrip(b'=').decode()}")


def test_other_key_under_the_right_kid_is_refused():
    with pytest.raises(errors.SignatureInvalid):
        make_verifier().verify(tokens.sign(tokens.claims(), key_name="attacker"))


def test_tampered_payload_is_refused():
    header, _, signature = tokens.sign(tokens.claims()).split(".")
    forged = b64(tokens.claims(sub="someone-else"))
    with pytest.raises(errors.SignatureInvalid):
        make_verifier().verify(f"{header}.{forged}.{signature}")


# Times relative to the test's own run (not to collection: a long suite runs this many minutes later).
@pytest.mark.parametrize("overrides, reason", [
    (lambda now: {"exp": now - 60}, errors.Expired),
    (lambda now: {"nbf": now + 600}, errors.NotYetValid),
    (lambda now: {"iat": now + 600}, errors.IssuedInFuture),
    (lambda now: {"iat": "yesterday"}, errors.ClaimInvalid),
    (lambda now: {"iss": "https://evil.example/pool"}, errors.IssuerInvalid),
    (lambda now: {"client_id": "otherclient"}, errors.ClientInvalid),
    (lambda now: {"token_use": "id"}, errors.TokenUseInvalid),
])
def test_bad_claims_are_refused(overrides, reason):
    with pytest.raises(reason):
        make_verifier().verify(tokens.sign(tokens.claims(**overrides(int(time.time())))))


def test_id_token_refused_where_access_configured_and_reverse():
    with pytest.raises(errors.TokenUseInvalid):
        make_verifier(token_use="access").verify(tokens.sign(tokens.claims("id")))
    with pytest.raises(errors.TokenUseInvalid):
        make_verifier(token_use="id").verify(tokens.sign(tokens.claims("access")))


@pytest.mark.parametrize("sub", [None, "", "   ", 42])
def test_missing_sub_is_refused(sub):
    payload = tokens.claims()
    if sub is None:
        del payload["sub"]
    else:
        payload["sub"] = sub
    with pytest.raises(errors.SubjectMissing):
        make_verifier().verify(tokens.sign(payload))


@pytest.mark.parametrize("header, reason", [
    ({"alg": "RS256"}, errors.KidMissing), ({"alg": "RS256", "kid": ""}, errors.KidMissing),
    ({"alg": "RS256", "kid": 7}, errors.KidMissing), ({"kid": tokens.KID}, errors.AlgorithmNotAllowed),
    ({"alg": "RS512", "kid": tokens.KID}, errors.AlgorithmNotAllowed),
])
def test_header_without_kid_or_allowed_alg_is_refused(header, reason):
    with pytest.raises(reason):
        make_verifier().verify(f"{b64(header)}.{b64(tokens.claims())}.{b64({})}")


def test_characters_outside_base64url_are_malformed():
    header, payload, signature = tokens.sign(tokens.claims()).split(".")
    for forged in (f"{header}.{payload}!.{signature}", f"{header}.{payload}.{signature}=",
                   f"{header}.{payload} .{signature}"):
        with pytest.raises(errors.JwtMalformed):
            make_verifier().verify(forged)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10 ** 400, True, "1700000000", None])
def test_exp_must_be_a_finite_number(value):
    payload = tokens.claims()
    payload["exp"] = value
    token = jwt.PyJWS().encode(json.dumps(payload).encode(), tokens.private_key(), algorithm="RS256",
                               headers={"kid": tokens.KID})  # signed: only the claim check can refuse it
    with pytest.raises(errors.ClaimInvalid):
        make_verifier().verify(token)


def test_wrong_issuer_is_refused_before_any_key_is_fetched():
    fetcher = tokens.CountingFetcher(tokens.jwks())
    with pytest.raises(errors.IssuerInvalid):
        make_verifier(fetcher=fetcher).verify(tokens.sign(tokens.claims(iss="https://evil.example/pool"), kid="bogus"))
    assert fetcher.fetches == 0


def test_one_of_several_allowed_clients():
    verifier = CognitoJwtVerifier(issuer=tokens.ISSUER, client_ids=("webclient", tokens.CLIENT_ID), token_use="access",
                                  jwks_url=URL, jwks_cache=JwksCache(tokens.CountingFetcher(tokens.jwks())))
    assert verifier.verify(tokens.sign(tokens.claims(client_id="webclient")))
    assert verifier.verify(tokens.sign(tokens.claims()))
    with pytest.raises(errors.ClientInvalid):
        verifier.verify(tokens.sign(tokens.claims(client_id="third")))


@pytest.mark.parametrize("kwargs", [
    {"issuer": ""}, {"client_ids": ()}, {"client_ids": "testclient123"}, {"token_use": "refresh"}, {"jwks_url": ""},
])
def test_configuration_errors_are_not_token_errors(kwargs):
    options = {"issuer": tokens.ISSUER, "client_ids": (tokens.CLIENT_ID,), "token_use": "access", "jwks_url": URL,
               "jwks_cache": JwksCache(tokens.CountingFetcher(tokens.jwks()))}
    with pytest.raises(errors.JwtConfigError):
        CognitoJwtVerifier(**{**options, **kwargs})


def test_leeway_accepts_a_token_just_expired():
    payload = tokens.claims(exp=int(time.time()) - 2)
    assert make_verifier(leeway_seconds=5).verify(tokens.sign(payload)).sub == payload["sub"]


def test_required_groups():
    verifier = make_verifier(required_groups=("ide-users",))
    assert verifier.verify(tokens.sign(tokens.claims(**{"cognito:groups": ["ide-users"]})))
    with pytest.raises(errors.GroupNotAllowed):
        verifier.verify(tokens.sign(tokens.claims()))


def test_unknown_kid_refetches_at_most_once_per_penalty_interval():
    now = [1000.0]
    fetcher = tokens.CountingFetcher(tokens.jwks())
    verifier = make_verifier(fetcher=fetcher, penalty_clock=lambda: now[0])
    verifier.verify(tokens.sign(tokens.claims()))
    assert fetcher.fetches == 1
    for _ in range(50):
        with pytest.raises(errors.KidNotFound):
            verifier.verify(tokens.sign(tokens.claims(), kid="bogus"))
    assert fetcher.fetches == 2  # one refetch for the unknown kid, then the penalty box holds
    now[0] += 10.5
    with pytest.raises(errors.KidNotFound):
        verifier.verify(tokens.sign(tokens.claims(), kid="bogus"))
    assert fetcher.fetches == 3


def _verify_concurrently(verifier, token, threads=16):
    barrier = threading.Barrier(threads)
    outcomes: list = []

    def run():
        barrier.wait()
        try:
            outcomes.append(verifier.verify(token))
        except errors.JwtInvalid as exc:
            outcomes.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    return outcomes


def test_concurrent_cold_verifications_share_one_fetch():
    fetcher = tokens.CountingFetcher(tokens.jwks(), delay=0.2)
    outcomes = _verify_concurrently(make_verifier(fetcher=fetcher), tokens.sign(tokens.claims()))
    assert len(outcomes) == 16 and all(not isinstance(o, Exception) for o in outcomes)
    assert fetcher.fetches == 1


def test_concurrent_unknown_kids_share_one_refetch():
    fetcher = tokens.CountingFetcher(tokens.jwks(), delay=0.2)
    verifier = make_verifier(fetcher=fetcher)
    verifier.verify(tokens.sign(tokens.claims()))
    outcomes = _verify_concurrently(verifier, tokens.sign(tokens.claims(), kid="unknown"))
    assert len(outcomes) == 16 and all(isinstance(o, errors.KidNotFound) for o in outcomes)
    assert fetcher.fetches == 2


def test_failed_fetch_is_not_repeated_within_the_penalty_interval():
    now = [0.0]

    class Down:
        fetches = 0

        def fetch(self, url):
            self.fetches += 1
            raise errors.JwksUnavailable("down")

    fetcher = Down()
    verifier = make_verifier(fetcher=fetcher, penalty_clock=lambda: now[0])
    for _ in range(20):
        with pytest.raises(errors.JwksUnavailable):
            verifier.verify(tokens.sign(tokens.claims()))
    assert fetcher.fetches == 1
    now[0] = 10.5
    with pytest.raises(errors.JwksUnavailable):
        verifier.verify(tokens.sign(tokens.claims()))
    assert fetcher.fetches == 2


def test_rotated_key_is_found_by_a_refetch():
    fetcher = tokens.CountingFetcher(tokens.jwks())
    verifier = make_verifier(fetcher=fetcher)
    verifier.verify(tokens.sign(tokens.claims()))
    fetcher.document = tokens.jwks(tokens.jwk(), tokens.jwk("rotated", kid="kid-2"))
    assert verifier.verify(tokens.sign(tokens.claims(), key_name="rotated", kid="kid-2"))
    assert fetcher.fetches == 2


@pytest.mark.parametrize("extra, reason", [
    ({"use": "enc"}, errors.JwkInvalidUse), ({"use": None}, errors.JwkInvalidUse),
    ({"kty": "EC"}, errors.JwkInvalidKty),
    ({"alg": "RS512"}, errors.JwkAlgorithmMismatch), ({"n": "!!"}, errors.JwkInvalid),
])
def test_unsuitable_jwk_is_refused(extra, reason):
    fetcher = tokens.CountingFetcher(tokens.jwks(tokens.jwk(**extra)))
    with pytest.raises(reason):
        make_verifier(fetcher=fetcher).verify(tokens.sign(tokens.claims()))


def test_token_from_header_or_query():
    assert token_from_request({"Authorization": "Bearer abc"}, None) == "abc"
    assert token_from_request({"authorization": "bearer  abc "}, None) == "abc"
    assert token_from_request({}, {"token": "xyz"}) == "xyz"
    assert token_from_request({"Authorization": "Basic abc"}, None) is None
    assert token_from_request(None, None) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_strings_raise_only_verifier_errors(text):
    with pytest.raises(errors.JwtInvalid):
        make_verifier().verify(text)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=10), st.one_of(st.none(), st.integers(), st.text(max_size=10)), max_size=5),
       st.dictionaries(st.text(max_size=10),
                       st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.integers())), max_size=8))
def test_arbitrary_headers_and_claims_raise_only_verifier_errors(header, payload):
    token = f"{b64(header)}.{b64(payload)}.{b64({})}"
    with pytest.raises(errors.JwtInvalid):
        make_verifier().verify(token)


_VALID_TOKEN = tokens.sign(tokens.claims(exp=int(time.time()) + 86400))
_VALID_SUB = json.loads(base64.urlsafe_b64decode(_VALID_TOKEN.split(".")[1] + "=="))["sub"]
_VERIFIER = make_verifier()


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(_VALID_TOKEN) - 1),
       st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "))
def test_any_one_character_change_is_refused_or_changes_nothing(index, char):
    assume(_VALID_TOKEN[index] != char)
    forged = _VALID_TOKEN[:index] + char + _VALID_TOKEN[index + 1:]
    try:
        identity = _VERIFIER.verify(forged)
    except errors.JwtInvalid:
        return
    # Only a change in the unused low bits of the last base64 character can keep the bytes the same.
    assert identity.sub == _VALID_SUB and index == len(_VALID_TOKEN) - 1


_CLAIM_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12),
                          st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["sub", "iss", "token_use", "client_id", "aud", "exp", "nbf", "iat", "username",
                                        "cognito:groups", "cognito:username"]), _CLAIM_VALUES, max_size=5))
def test_properly_signed_odd_claims_give_an_identity_or_a_verifier_error(overrides):
    payload = {**tokens.claims(), **overrides}
    token = jwt.PyJWS().encode(json.dumps(payload).encode(), tokens.private_key(), algorithm="RS256",
                               headers={"kid": tokens.KID})
    try:
        identity = _VERIFIER.verify(token)
    except errors.JwtInvalid:
        return
    assert isinstance(identity.sub, str) and identity.sub.strip() and isinstance(identity.expires_at, int)
