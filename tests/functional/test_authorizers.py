"""ws_authorizer, the REST authorizer and $connect, called with API Gateway's event shapes, against moto.

Tokens are signed with moto's own Cognito key (the key the app trusts through the
pool's JWKS), so each case below differs from a good token in exactly one way.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import app as chalice_app
from chalicelib.auth.authorizer import AccessRefused
from devserver import events
from tests import tokens
from tests.conftest import reset_app_caches
from tests.handler_calls import connect, login, message

ROOT = Path(__file__).resolve().parents[2]
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef123/test/$connect"


def pool_claims(pool, token_use="access", **overrides):
    iss = f"https://cognito-idp.us-east-1.amazonaws.com/{pool.user_pool_id}"
    client = {"client_id": pool.client_id} if token_use == "access" else {"aud": pool.client_id}
    return tokens.claims(token_use, **{"iss": iss, **client, **overrides})


def b64(data) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def authorizer_event(*, headers=None, query=None):
    return events.authorizer_event(
        connection_id="auth-conn=", connected_at_ms=int(time.time() * 1000), stage="test",
        domain_name="abcdef123.execute-api.us-east-1.amazonaws.com", source_ip="10.0.0.1",
        headers=headers or {}, query={k: [v] for k, v in (query or {}).items()}, method_arn=METHOD_ARN)


def bad_tokens(pool) -> dict[str, str | None]:
    now = int(time.time())
    good = tokens.sign_as_moto(pool_claims(pool))
    header, payload, signature = good.split(".")
    # The pool's own public key (moto's, served by its JWKS) as the HMAC secret.
    public_pem = tokens.moto_private_key().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    hs_header = b64({"alg": "HS256", "kid": "dummy", "typ": "JWT"})
    hs_body = b64(pool_claims(pool))
    hs_signature = b64(hmac.new(public_pem, f"{hs_header}.{hs_body}".encode(), hashlib.sha256).digest())
    no_sub = pool_claims(pool)
    del no_sub["sub"]
    return {
        "no token": None,
        "empty": "",
        "garbage": "garbage",
        "two segments": f"{header}.{payload}",
        "alg none": f"{b64({'alg': 'none', 'kid': 'dummy'})}.{payload}.",
        "HS256 with the public key as secret": f"{hs_header}.{hs_body}.{hs_signature}",
        "another key under the right kid": tokens.sign(pool_claims(pool), kid="dummy"),
        "unknown kid": tokens.sign(pool_claims(pool), kid="not-in-the-pool"),
        "expired": tokens.sign_as_moto(pool_claims(pool, exp=now - 60, iat=now - 3660)),
        "nbf in the future": tokens.sign_as_moto(pool_claims(pool, nbf=now + 600)),
        "iat in the future": tokens.sign_as_moto(pool_claims(pool, iat=now + 600)),
        "wrong iss": tokens.sign_as_moto(pool_claims(pool, iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other")),
        "wrong client": tokens.sign_as_moto(pool_claims(pool, client_id="someoneelse")),
        "ID token where access is configured": tokens.sign_as_moto(pool_claims(pool, "id")),
        "tampered payload": f"{header}.{b64(pool_claims(pool, sub='someone-else'))}.{signature}",
        "missing sub": tokens.sign_as_moto(no_sub),
    }


CASES = ["no token", "empty", "garbage", "two segments", "alg none", "HS256 with the public key as secret",
         "another key under the right kid", "unknown kid", "expired", "nbf in the future", "iat in the future",
         "wrong iss", "wrong client", "ID token where access is configured", "tampered payload", "missing sub"]


def test_every_case_is_known():
    class Pool:
        user_pool_id, client_id = "us-east-1_X", "c"
    assert sorted(bad_tokens(Pool)) == sorted(CASES)


def test_a_good_moto_signed_token_is_accepted(app_env, table, sender):
    token = tokens.sign_as_moto(pool_claims(app_env))
    assert chalice_app.ws_authorizer(authorizer_event(query={"token": token}), None)["principalId"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("where", ["header", "query"])
def test_bad_tokens_are_refused_by_the_authorizer_and_by_connect(app_env, table, sender, case, where):
    token = bad_tokens(app_env)[case]
    headers = {"Authorization": f"Bearer {token}"} if where == "header" and token is not None else {}
    query = {"token": token} if where == "query" and token is not None else {}
    with pytest.raises(AccessRefused) as refused:
        chalice_app.ws_authorizer(authorizer_event(headers=headers, query=query), None)
    assert str(refused.value) == "Unauthorized"  # the message API Gateway turns into a 401
    before = table.scan()["Count"]
    assert connect("refused=", headers=headers, query=query)["statusCode"] == 401
    assert table.scan()["Count"] == before


@pytest.mark.parametrize("where", ["header", "query"])
def test_a_valid_token_by_header_or_query_is_allowed_on_the_method_arn(app_env, boto, where):
    token = login(boto, app_env)
    headers = {"Authorization": f"Bearer {token}"} if where == "header" else {}
    query = {"token": token} if where == "query" else {}
    answer = chalice_app.ws_authorizer(authorizer_event(headers=headers, query=query), None)
    assert answer["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}]
    context = answer["context"]
    assert answer["principalId"] == context["sub"] and context["username"] == "dev"
    assert json.loads(context["groups"]) == [] and all(isinstance(v, str) for v in context.values())


def test_id_tokens_when_configured_and_access_tokens_then_refused(app_env, monkeypatch):
    monkeypatch.setenv("COGNITO_TOKEN_USE", "id")
    reset_app_caches()
    id_token = tokens.sign_as_moto(pool_claims(app_env, "id"))
    answer = chalice_app.ws_authorizer(authorizer_event(query={"token": id_token}), None)
    assert answer["context"]["username"] == "alice"
    access_token = tokens.sign_as_moto(pool_claims(app_env))
    with pytest.raises(AccessRefused):
        chalice_app.ws_authorizer(authorizer_event(query={"token": access_token}), None)


@pytest.mark.parametrize("where", ["header", "query"])
def test_an_access_token_where_id_tokens_are_configured_is_refused_by_connect(app_env, monkeypatch, table, sender,
                                                                              where):
    monkeypatch.setenv("COGNITO_TOKEN_USE", "id")
    reset_app_caches()
    access_token = tokens.sign_as_moto(pool_claims(app_env))
    headers = {"Authorization": f"Bearer {access_token}"} if where == "header" else {}
    query = {"token": access_token} if where == "query" else {}
    before = table.scan()["Count"]
    assert connect("refused=", headers=headers, query=query)["statusCode"] == 401
    assert table.scan()["Count"] == before  # nothing stored
    id_token = tokens.sign_as_moto(pool_claims(app_env, "id"))
    assert connect("accepted=", query={"token": id_token})["statusCode"] == 200  # the same pool, the right use


def test_required_group_missing_is_refused_and_present_is_allowed(app_env, monkeypatch, table, sender):
    monkeypatch.setenv("REQUIRED_GROUPS", "ide-users,admins")
    reset_app_caches()
    outsider = tokens.sign_as_moto(pool_claims(app_env, **{"cognito:groups": ["guests"]}))
    with pytest.raises(AccessRefused):
        chalice_app.ws_authorizer(authorizer_event(query={"token": outsider}), None)
    assert connect("outsider=", query={"token": outsider})["statusCode"] == 401
    member = tokens.sign_as_moto(pool_claims(app_env, **{"cognito:groups": ["admins", "a,b"]}))
    answer = chalice_app.ws_authorizer(authorizer_event(query={"token": member}), None)
    assert json.loads(answer["context"]["groups"]) == ["admins", "a,b"]


@pytest.fixture
def without_revocation_check(app_env, monkeypatch):
    """The app with COGNITO_REVOCATION_CHECK off, for a token minted here: moto issues one-hour tokens
    only, and Cognito never issued this one, so the check (tests/functional/test_revocation.py) would
    rightly refuse it. Before `clock`, whose installed clock a cache reset would drop."""
    monkeypatch.setenv("COGNITO_REVOCATION_CHECK", "false")
    reset_app_caches()


def test_a_token_expiring_during_the_connection(app_env, table, sender, without_revocation_check, clock):
    expires = int(time.time()) + 60
    token = tokens.sign_as_moto(pool_claims(app_env, exp=expires))
    clock.now = expires - 1  # the app's time, a second before the token expires
    assert connect("short=", query={"token": token})["statusCode"] == 200
    message("short=", '{"action": "ping", "id": "early"}')
    assert sender.frames["short="] == [{"type": "pong", "id": "early"}]
    clock.now = expires
    message("short=", '{"action": "ping", "id": "late"}')
    assert sender.frames["short="][1]["error"]["code"] == "UNAUTHORIZED" and sender.frames["short="][1]["id"] == "late"
    assert sender.closed == ["short="]


def test_refusals_are_logged_with_their_reason_and_never_the_token(app_env, caplog):
    from chalicelib.auth.authorizer import AccessRefused, authorize_bearer

    token = tokens.sign(tokens.claims())  # our key: the pool's JWKS does not hold its kid
    with caplog.at_level(logging.INFO, logger="chalicelib.auth"), pytest.raises(AccessRefused):
        authorize_bearer(f"Bearer {token}")
    (record,) = [r for r in caplog.records if getattr(r, "outcome", None) == "refused"]
    assert record.reason == "bad_issuer"  # the pool is moto's, the token claims the test pool
    assert token not in caplog.text and token.split(".")[2] not in caplog.text


def rest_event(authorization, path="/me"):
    return events.token_authorizer_event(authorization=authorization,
                                         method_arn=events.rest_method_arn("test", "GET", path))


def test_rest_authorizer_allows_a_valid_bearer_token(app_env, boto):
    answer = chalice_app.rest_authorizer(rest_event(f"Bearer {login(boto, app_env)}"), None)
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert answer["principalId"] == answer["context"]["sub"] and answer["context"]["username"] == "dev"


def test_the_rest_handler_serves_the_authorizers_caller(app_env, boto):
    # API Gateway's REST flow: the TOKEN authorizer's answer becomes the proxy event's requestContext.authorizer.
    from devserver import authorizers

    token = login(boto, app_env)
    arn = events.rest_method_arn("test", "GET", "/usage")
    decision = authorizers.from_answer(chalice_app.rest_authorizer(rest_event(f"Bearer {token}", "/usage"), None),
                                       arn, latency_ms=3)
    context = decision.context
    assert decision.allowed and context is not None

    def get(path, authorizer=None):
        event = events.rest_event(method="GET", path=path, stage="test", domain_name="localrest1.example.com",
                                  source_ip="192.0.2.1", headers={"Authorization": f"Bearer {token}"},
                                  authorizer=authorizer)
        answer = chalice_app.app(event, None)
        return answer["statusCode"], json.loads(answer["body"])

    status, usage = get("/usage", context)
    assert status == 200 and set(usage) == {"limits", "usage"}
    status, caller = get("/me", context)
    assert status == 200 and caller["sub"] == context["sub"] and caller["username"] == "dev"
    assert get("/me")[0] == 401  # no authorizer context: never served
    assert get("/health") == (200, {"status": "ok", "stage": "test"})


def test_every_401_of_get_me_is_the_one_body_the_protocol_documents(app_env, boto):
    """GET /me answered 401 in three shapes: `{"message":"Unauthorized"}` without a token (API Gateway's, before the
    authorizer runs), `{"message": "Unauthorized"}` when the authorizer refused one (the local gateway's spacing),
    and Chalice's `{"Code":"UnauthorizedError",...}` when the route was reached without the authorizer's caller."""
    from devserver.gateway import Gateway, LambdaRuntime

    documented = re.search(r"answers 401\s+`([^`]+)`", (ROOT / "docs" / "PROTOCOL.md").read_text())
    assert documented is not None
    expired = tokens.sign_as_moto(pool_claims(app_env, exp=int(time.time()) - 60, iat=int(time.time()) - 3660))

    async def through_the_gateway() -> list[tuple[int, bytes, str | None]]:
        runtime = LambdaRuntime(chalice_app, max_workers=2)
        gateway = Gateway(app_module=chalice_app, runtime=runtime, stage="test", domain_name="127.0.0.1:1",
                          web_dir=Path(__file__).parent, web_config={}, web_csp="default-src 'self'")
        try:
            async with TestClient(TestServer(gateway.make_app())) as client:
                answers = []
                for headers in ({}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": f"Bearer {expired}"}):
                    response = await client.get("/me", headers=headers)
                    answers.append((response.status, await response.read(), response.headers.get("x-amzn-ErrorType")))
                response = await client.get("/me", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
                assert response.status == 200, await response.text()  # the same gateway serves a valid token
                return answers
        finally:
            runtime.shutdown()

    without_caller = chalice_app.app(events.rest_event(
        method="GET", path="/me", stage="test", domain_name="localrest1.example.com", source_ip="192.0.2.1",
        headers={"Authorization": "Bearer t"}, authorizer=None), None)
    answers = asyncio.run(through_the_gateway())
    answers.append((without_caller["statusCode"], without_caller["body"].encode(),
                    without_caller["headers"].get("x-amzn-ErrorType")))
    assert answers == [(401, documented[1].encode(), "UnauthorizedException")] * 4


@pytest.mark.parametrize("case", ["empty", "garbage", "expired", "wrong client", "tampered payload"])
def test_rest_authorizer_refuses_with_unauthorized(app_env, case):
    with pytest.raises(AccessRefused):
        chalice_app.rest_authorizer(rest_event(f"Bearer {bad_tokens(app_env)[case]}"), None)


def test_only_health_is_public():
    public = [(path, method) for path, methods in chalice_app.app.routes.items()
              for method, entry in methods.items() if entry.authorizer is None]
    assert public == [("/health", "GET")]


def test_importing_the_app_does_not_load_the_verifier():
    # Cold start: only a handler that sees a token pays for PyJWT and cryptography.
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys, app; "
            "print(sorted(m for m in ('jwt', 'cryptography', 'chalicelib.auth.verifier') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
