"""Revoked sign-ins (issue 13, section 8): Cognito's word on a verified token at $connect and in the REST
authorizer, and `python -m infra.cut_off`, which disables a user and closes their connections. Against moto."""
from __future__ import annotations

import json
import logging
import uuid

import pytest
from boto3.dynamodb.conditions import Key

import app as chalice_app
from chalicelib.auth.authorizer import AccessRefused
from chalicelib.auth.errors import TokenRevoked
from chalicelib.auth.revocation import RevocationCheck
from chalicelib.dispatch.connections import ConnectionStore
from chalicelib.observability import metric_names
from chalicelib.transport import HttpResponse, HttpTransport
from infra import cut_off
from tests.conftest import reset_app_caches
from tests.fakes import RecordingSender
from tests.handler_calls import connect, message


@pytest.fixture
def user(app_env, boto):
    """A user of the test's own (these tests sign users out and disable them): (username, password)."""
    username, password = f"cut-{uuid.uuid4().hex[:8]}", "Revocation-test-password-1"
    cognito = boto("cognito-idp")
    cognito.admin_create_user(UserPoolId=app_env.user_pool_id, Username=username, MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=app_env.user_pool_id, Username=username, Password=password,
                                    Permanent=True)
    return username, password


def sign_in(boto, app_env, user) -> str:
    username, password = user
    return boto("cognito-idp").initiate_auth(ClientId=app_env.client_id, AuthFlow="USER_PASSWORD_AUTH",
                                             AuthParameters={"USERNAME": username, "PASSWORD": password}
                                             )["AuthenticationResult"]["AccessToken"]


def rest_event(authorization: str) -> dict:
    return {"type": "TOKEN", "authorizationToken": authorization,
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:restapi01/api/GET/me"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_user_signed_out_everywhere_cannot_connect_with_their_access_token(app_env, boto, user, sender, table):
    token = sign_in(boto, app_env, user)
    assert connect("before=", headers=bearer(token))["statusCode"] == 200
    boto("cognito-idp").global_sign_out(AccessToken=token)  # "sign out everywhere"
    # The token still verifies offline (signature, issuer, client, expiry); Cognito no longer honours it.
    assert connect("after=", headers=bearer(token))["statusCode"] == 401
    assert connect("after=", query={"token": token})["statusCode"] == 401
    assert "Item" not in table.get_item(Key={"connectionId": "after="})
    with pytest.raises(AccessRefused):
        chalice_app.rest_authorizer(rest_event(f"Bearer {token}"), None)
    # A fresh sign-in works again.
    assert connect("again=", headers=bearer(sign_in(boto, app_env, user)))["statusCode"] == 200


@pytest.mark.parametrize("admin_call", ["admin_user_global_sign_out", "admin_disable_user", "admin_delete_user"])
def test_an_administrators_sign_out_disable_or_delete_refuses_the_users_token(app_env, boto, user, sender,
                                                                             admin_call):
    token = sign_in(boto, app_env, user)
    getattr(boto("cognito-idp"), admin_call)(UserPoolId=app_env.user_pool_id, Username=user[0])
    assert connect("revoked=", headers=bearer(token))["statusCode"] == 401


def test_the_refusal_is_counted_and_logged_as_revoked_never_with_the_token(app_env, boto, user, sender, logs):
    token = sign_in(boto, app_env, user)
    boto("cognito-idp").global_sign_out(AccessToken=token)
    assert connect("r=", headers=bearer(token))["statusCode"] == 401
    [refused] = logs.handled()
    assert (refused["outcome"], refused["reason"]) == ("refused", "revoked")
    name = metric_names.AUTH_REFUSED.name
    assert [(line["reason"], line[name]) for line in logs.metric(name)] == [("revoked", 1)]
    assert token not in json.dumps(logs.lines()) and token not in json.dumps(logs.metrics())


def test_with_the_check_off_a_revoked_token_still_connects(app_env, boto, user, sender, monkeypatch):
    """What COGNITO_REVOCATION_CHECK=false costs: the token is honoured until it expires."""
    monkeypatch.setenv("COGNITO_REVOCATION_CHECK", "false")
    reset_app_caches()
    token = sign_in(boto, app_env, user)
    boto("cognito-idp").global_sign_out(AccessToken=token)
    assert connect("unchecked=", headers=bearer(token))["statusCode"] == 200


def test_when_cognito_cannot_answer_the_verified_token_is_let_in_and_the_outage_logged(caplog):
    unreachable = HttpTransport(connect_timeout=0.5, read_timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="chalicelib.auth.revocation"):
        RevocationCheck(unreachable, endpoint="http://127.0.0.1:9")("a.verified.token")
    assert [r.getMessage() for r in caplog.records] == ["revocation check unavailable"]


def test_cognitos_refusals_are_revocations_and_its_failures_are_not():
    asked: list[dict] = []

    def answering(status, code):
        class Cognito:  # Cognito's JSON protocol, as GetUser answers
            def send(self, method, url, *, headers, body, timeout=None):
                asked.append({"method": method, "url": url, "target": headers["X-Amz-Target"],
                              "body": json.loads(body)})
                return HttpResponse(status=status, headers={}, body=json.dumps({"__type": code}).encode())
        return RevocationCheck(Cognito(), endpoint="https://cognito-idp.eu-west-1.amazonaws.com")

    for code in ("NotAuthorizedException", "com.amazonaws.cognito#UserNotFoundException"):
        with pytest.raises(TokenRevoked):
            answering(400, code)("t")
    assert asked[0] == {"method": "POST", "url": "https://cognito-idp.eu-west-1.amazonaws.com/",
                        "target": "AWSCognitoIdentityProviderService.GetUser", "body": {"AccessToken": "t"}}
    asked.clear()
    for status, code in ((400, "TooManyRequestsException"), (500, "InternalErrorException")):
        answering(status, code)("t")  # Cognito cannot say: let the verified token in (after one more try)
    assert len(asked) == 4
    answering(200, "")("t")  # honoured


# --- python -m infra.cut_off ---------------------------------------------------------------------------

def listing(table) -> ConnectionStore:
    """The connections as the command reads them (it adds none and counts no frame)."""
    return ConnectionStore(table, ttl_seconds=0, max_per_user=0, frame_window_seconds=1)


def test_cut_off_disables_signs_out_and_closes_every_connection_of_the_user(app_env, boto, user, sender, table):
    token = sign_in(boto, app_env, user)
    other = sign_in(boto, app_env, ("dev2", app_env.users[1][1]))
    for connection_id in ("cut-a=", "cut-b="):
        assert connect(connection_id, headers=bearer(token))["statusCode"] == 200
    assert connect("bystander=", headers=bearer(other))["statusCode"] == 200

    report = cut_off.cut_off(user[0], cognito=boto("cognito-idp"), user_pool_id=app_env.user_pool_id,
                             connections=listing(table), sender_for=lambda endpoint: sender)

    assert sorted(report.closed) == ["cut-a=", "cut-b="] and report.failed == []
    assert sorted(sender.closed) == ["cut-a=", "cut-b="]  # the bystander's connection stays
    assert table.query(IndexName="byUser", KeyConditionExpression=Key("userSub").eq(report.sub))["Items"] == []
    assert table.get_item(Key={"connectionId": f"user#{report.sub}"})["Item"]["open"] == {}  # their list too
    # No way back in: the old token is refused at $connect, and so is a sign-in.
    assert connect("back=", headers=bearer(token))["statusCode"] == 401
    with pytest.raises(boto("cognito-idp").exceptions.NotAuthorizedException):
        sign_in(boto, app_env, user)
    message("bystander=", '{"action": "ping", "id": "p"}')
    assert sender.frames["bystander="] == [{"type": "pong", "id": "p"}]


def test_cut_off_of_an_unknown_user_fails_and_says_so(app_env, boto, table):
    with pytest.raises(cut_off.CutOffError, match="UserNotFoundException"):
        cut_off.cut_off("nobody-here", cognito=boto("cognito-idp"), user_pool_id=app_env.user_pool_id,
                        connections=listing(table), sender_for=lambda endpoint: RecordingSender())


def test_the_command_finds_the_stages_pool_and_table_and_asks_for_a_pool_it_cannot_find(tmp_path, capsys):
    assert cut_off.main(["--stage", "nosuch", "--username", "u", "--chalice-dir", str(tmp_path)]) == 2
    assert "pass --user-pool-id" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"stages": {"prod": {"environment_variables": {
        "COGNITO_USER_POOL_ID": "eu-west-1_AbC123", "CONNECTIONS_TABLE": "llm-ide-prod-connections"}}}}))
    assert cut_off._stage_settings("prod", tmp_path)["COGNITO_USER_POOL_ID"] == "eu-west-1_AbC123"
