"""The GitHub client with a fake clock, a fake transport and a fake Secrets Manager."""
from __future__ import annotations

import json

import jwt
import pytest

from chalicelib.errors import (
    BadRequest,
    Forbidden,
    Internal,
    NotFound,
    PayloadTooLarge,
    UpstreamError,
    UpstreamThrottled,
)
from chalicelib.github.credentials import AppJwt, AppSecret, SecretSource
from chalicelib.transport import TransportError
from devserver.github import new_app_key, secret_document
from tests.fakes import GITHUB_API as API
from tests.fakes import T0, Clock, FakeSecrets, reply

# --- the app JWT and installation tokens ------------------------------------------


def test_app_jwt_is_rs256_backdated_short_lived_and_reused_until_near_expiry(keys):
    private, public = keys
    clock = Clock()
    secret = AppSecret.parse(secret_document(private))
    signer = AppJwt(clock=clock)
    token = signer.token(secret)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, public, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims["iss"] == secret.app_id and claims["iat"] == T0 - 60 and T0 < claims["exp"] <= T0 + 600
    clock.now += 7 * 60
    assert signer.token(secret) == token  # still valid for 2 minutes: reused
    clock.now += 90
    renewed = signer.token(secret)
    assert renewed != token and jwt.decode(renewed, public, algorithms=["RS256"],
                                           options={"verify_exp": False, "verify_iat": False})["iat"] == clock.now - 60


def test_installation_token_is_cached_until_shortly_before_expiry(world):
    client, transport = world(reply(200, {"a": 1}), reply(200, {"a": 2}), reply(200, {"a": 3}))
    assert client.get("/x") == {"a": 1} and client.get("/x") == {"a": 2}
    assert transport.token_requests == 1
    assert transport.api_calls()[1][2]["Authorization"] == "Bearer ghs_1"
    world.clock.now += 3600 - 4 * 60  # within five minutes of expires_at
    client.get("/x")
    assert transport.token_requests == 2 and transport.api_calls()[2][2]["Authorization"] == "Bearer ghs_2"


def test_a_rotated_key_makes_the_client_fetch_the_secret_once_more(world):
    new_private, new_public = new_app_key()
    client, transport = world(reply(200, {}), reply(401, {"message": "Bad credentials"}), reply(200, {"ok": True}))
    client.get("/x")  # the secret and a token are cached
    transport.public_key = new_public  # GitHub now trusts only the new key and revoked the token ...
    world.secrets.document = secret_document(new_private)  # ... and the secret holds the new key
    assert client.get("/x") == {"ok": True}
    assert world.secrets.fetches == 2  # refetched once
    assert transport.token_requests == 3  # the first token; refused with the old key; accepted with the new


def test_credentials_still_refused_after_the_refetch_is_an_upstream_error(world):
    client, transport = world()
    transport.refuse_jwt = 5
    with pytest.raises(UpstreamError):
        client.get("/x")
    assert world.secrets.fetches == 2 and transport.token_requests == 2  # once more, not in a loop


def test_a_revoked_installation_token_is_replaced_once(world):
    client, transport = world(reply(401, {"message": "Bad credentials"}), reply(200, {"ok": 1}))
    assert client.get("/x") == {"ok": 1}
    assert transport.token_requests == 2 and world.secrets.fetches == 1


@pytest.mark.parametrize("document", ["not json", "{}", json.dumps({"appId": "x", "installationId": 1,
                                                                    "privateKey": "k"})])
def test_a_malformed_secret_is_a_configuration_error_without_its_content(document):
    with pytest.raises(Internal) as error:
        SecretSource(FakeSecrets(document), "arn").get()
    assert "k" not in error.value.message.split("privateKey")[-1]


def test_the_secret_never_appears_in_a_repr(keys):
    assert "PRIVATE" not in repr(AppSecret.parse(secret_document(keys[0])))


def test_enterprise_server_base_url_is_used_for_every_call(world):
    client, transport = world(reply(200, {}), api_url="https://ghe.example.com/api/v3/")
    client.get("/repos/o/r", query={"ref": "main"})
    assert [url for _, url, _ in transport.calls] == [
        "https://ghe.example.com/api/v3/app/installations/2002/access_tokens",
        "https://ghe.example.com/api/v3/repos/o/r?ref=main"]


# --- limits, retries and errors --------------------------------------------------


def test_retry_after_is_honoured_then_the_call_succeeds(world):
    client, _ = world(reply(403, {"message": "You have exceeded a secondary rate limit"}, retry_after="7"),
                      reply(200, {"ok": 1}))
    assert client.get("/x") == {"ok": 1}
    assert world.clock.slept == [7.0]


def test_every_rate_limit_answer_is_reported_once(world):
    limited = reply(403, {"message": "secondary rate limit"}, retry_after="1")
    reports: list[int] = []
    client, _ = world(limited, limited, reply(502), reply(200, {"ok": 1}), on_rate_limited=lambda: reports.append(1))
    assert client.get("/x") == {"ok": 1}
    assert len(reports) == 2  # the server error is not a throttle


def test_primary_limit_waits_until_the_reset(world):
    reset = str(int(T0) + 12)
    client, _ = world(reply(403, {"message": "API rate limit exceeded"}, x_ratelimit_remaining="0",
                            x_ratelimit_reset=reset), reply(200, {"ok": 1}))
    assert client.get("/x") == {"ok": 1}
    assert world.clock.slept == [13.0]


def test_a_wait_past_the_bound_gives_up_at_once_with_retry_after(world):
    client, _ = world(reply(429, {"message": "slow down"}))  # no header: GitHub says wait a minute
    with pytest.raises(UpstreamThrottled) as error:
        client.get("/x")
    assert error.value.retry_after == 60 and world.clock.slept == []


def test_the_wait_bound_covers_every_call_of_a_run(world):
    limited = reply(403, {"message": "secondary rate limit"}, retry_after="15")
    client, _ = world(limited, reply(200, {}), limited)
    client.get("/a")
    with pytest.raises(UpstreamThrottled) as error:
        client.get("/b")
    assert world.clock.slept == [15.0] and error.value.retry_after == 15


@pytest.mark.parametrize("headers", [
    {"retry_after": "inf"}, {"retry_after": "Infinity"}, {"retry_after": "1e999"}, {"retry_after": "nan"},
    {"x_ratelimit_remaining": "0", "x_ratelimit_reset": "inf"},
    {"x_ratelimit_remaining": "0", "x_ratelimit_reset": "-inf"},
    {"x_ratelimit_remaining": "0", "x_ratelimit_reset": "nan"},
])
def test_rate_limit_headers_that_are_no_number_are_taken_as_missing(world, headers):
    # float() reads them all; an infinite wait was an OverflowError (INTERNAL), a NaN one no wait at all.
    client, _ = world(reply(403, {"message": "API rate limit exceeded"}, **headers))
    with pytest.raises(UpstreamThrottled) as error:
        client.get("/x")
    assert error.value.retry_after == 60 and world.clock.slept == []  # GitHub's rule without a header


def test_a_rate_limit_wait_is_never_more_than_an_hour(world):
    # GitHub's primary limits reset within the hour; a longer wait is no answer of GitHub's.
    client, _ = world(reply(403, {"message": "API rate limit exceeded"}, retry_after="1e300"))
    with pytest.raises(UpstreamThrottled) as error:
        client.get("/x")
    assert error.value.retry_after == 3600


def test_attempts_are_bounded_for_limits(world):
    limited = reply(403, {"message": "secondary rate limit"}, retry_after="1")
    client, transport = world(*[limited] * 10, max_attempts=3)
    with pytest.raises(UpstreamThrottled) as error:
        client.get("/x")
    assert len(transport.api_calls()) == 3 and world.clock.slept == [1.0, 1.0] and error.value.retry_after == 1


def test_server_errors_are_retried_with_backoff_then_upstream_error(world):
    client, transport = world(*[reply(502)] * 4)
    with pytest.raises(UpstreamError):
        client.get("/x")
    assert len(transport.api_calls()) == 4 and world.clock.slept == [0.5, 1.0, 2.0]


def test_network_failures_are_retried(world):
    client, _ = world(TransportError("connection to GitHub timed out"), reply(200, {"ok": 1}))
    assert client.get("/x") == {"ok": 1}


def test_a_pull_request_post_is_not_repeated_after_a_server_error(world):
    client, transport = world(reply(500), reply(201, {"number": 2}))
    with pytest.raises(UpstreamError):
        client.post("/repos/o/r/pulls", {"title": "t"}, idempotent=False)
    assert len(transport.api_calls()) == 1


@pytest.mark.parametrize("response, error", [
    (reply(404, {"message": "Not Found"}), NotFound),
    (reply(403, {"message": "Resource not accessible by integration"}), Forbidden),
    # GitHub's answer for a file over its API's 100 MB, which was FORBIDDEN
    (reply(403, {"message": "This API returns blobs up to 100 MB in size.",
                 "errors": [{"resource": "Blob", "field": "data", "code": "too_large"}]}), PayloadTooLarge),
    (reply(422, {"message": "Reference already exists"}), BadRequest),
    (reply(409, {"message": "Git Repository is empty."}), BadRequest),
])
def test_final_statuses_become_protocol_errors(world, response, error):
    client, transport = world(response)
    with pytest.raises(error):
        client.get("/x")
    assert len(transport.api_calls()) == 1 and world.clock.slept == []


def test_pages_are_followed_on_the_same_origin_only(world):
    client, transport = world(
        reply(200, {"repositories": [{"n": 1}]}, link=f'<{API}/installation/repositories?page=2>; rel="next"'),
        reply(200, {"repositories": [{"n": 2}]}, link='<https://evil.example/steal?page=3>; rel="next"'),
    )
    items, truncated = client.paginate("/installation/repositories", key="repositories")
    assert [r["n"] for r in items] == [1, 2] and truncated is False
    assert all(url.startswith(API) for _, url, _ in transport.calls)
