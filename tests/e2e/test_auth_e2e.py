"""Authentication through the running local stack: the $connect authorizer, GET /me, expiry on an open socket."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from client import ClientClosed, ConnectionRefused, IdeClient
from tests import tokens
from tests.e2e.conftest import GENEROUS_LIMITS, start_stack, stop_stack
from tests.e2e.test_skeleton import connection_ids, wait_until


def pool_claims(stack, **overrides):
    cognito = stack.document["cognito"]
    return tokens.claims(**{"iss": f"https://cognito-idp.us-east-1.amazonaws.com/{cognito['userPoolId']}",
                            "client_id": cognito["clientId"], **overrides})


def get_me(stack, authorization=None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    request = urllib.request.Request(stack.document["httpUrl"] + "/me", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.mark.parametrize("case", ["garbage", "expired", "wrong client", "other key"])
def test_the_authorizer_refuses_with_401_before_connect_runs_and_nothing_is_stored(stack, case):
    now = int(time.time())
    token = {
        "garbage": "not.a.jwt",
        "expired": tokens.sign_as_moto(pool_claims(stack, exp=now - 60, iat=now - 3660)),
        "wrong client": tokens.sign_as_moto(pool_claims(stack, client_id="someoneelse")),
        "other key": tokens.sign(pool_claims(stack), kid="dummy"),
    }[case]
    before = connection_ids(stack)
    log_before = stack.log_text().count("refused by the authorizer (401)")
    for token_in in ("header", "query"):
        with pytest.raises(ConnectionRefused) as refused:
            IdeClient(stack.endpoints.websocket_url, token, token_in=token_in)
        assert refused.value.status == 401
    assert connection_ids(stack) <= before  # nothing stored (ids: another test's connection may be leaving)
    assert wait_until(lambda: stack.log_text().count("refused by the authorizer (401)") == log_before + 2)


def test_a_token_the_pool_issued_connects_by_header_and_query(stack):
    token = stack.tokens("dev").access_token
    for token_in in ("header", "query"):
        with IdeClient(stack.endpoints.websocket_url, token, token_in=token_in) as client:
            assert client.ping() < 5


def test_a_token_signed_by_the_pool_key_but_never_issued_is_refused_by_the_revocation_check(stack):
    """It verifies offline (the pool's key, issuer, client, expiry), but Cognito never issued it."""
    with pytest.raises(ConnectionRefused) as refused:
        IdeClient(stack.endpoints.websocket_url, tokens.sign_as_moto(pool_claims(stack)))
    assert refused.value.status == 401
    assert wait_until(lambda: '"reason": "revoked"' in stack.log_text() or "reason=revoked" in stack.log_text())


@pytest.fixture(scope="module")
def unchecked_stack(tmp_path_factory):
    """A stack without the revocation check, for a token moto cannot issue (it issues one-hour tokens only)."""
    running = start_stack(tmp_path_factory.mktemp("unchecked"), env={**GENEROUS_LIMITS,
                                                                     "COGNITO_REVOCATION_CHECK": "false"})
    yield running
    stop_stack(running.process)


def test_a_token_expiring_while_connected_gets_unauthorized_and_the_socket_closes(unchecked_stack):
    stack = unchecked_stack
    expires = int(time.time()) + 3
    with IdeClient(stack.endpoints.websocket_url, tokens.sign_as_moto(pool_claims(stack, exp=expires))) as client:
        assert client.ping() < 5
        time.sleep(max(0.0, expires - time.time()) + 0.2)
        client.send("ping", id="after-expiry")
        frame = client.next_frame("after-expiry")
        assert frame["type"] == "error" and frame["error"]["code"] == "UNAUTHORIZED"
        assert client.closed.wait(5)
        with pytest.raises(ClientClosed):
            client.next_frame("never", timeout=2)


def test_me_needs_a_valid_bearer_token(stack):
    status, body = get_me(stack, f"Bearer {stack.tokens('dev').access_token}")
    assert status == 200 and body["username"] == "dev" and body["groups"] == [] and body["sub"]
    assert get_me(stack)[0] == 401
    assert get_me(stack, "Bearer garbage") == (401, {"message": "Unauthorized"})
    assert get_me(stack, f"Bearer {tokens.sign(pool_claims(stack), kid='dummy')}")[0] == 401


def test_health_stays_public(stack):
    with urllib.request.urlopen(stack.document["httpUrl"] + "/health", timeout=5) as response:
        assert response.status == 200
