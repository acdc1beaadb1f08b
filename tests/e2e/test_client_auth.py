"""`llm-ide login`, `whoami`, `logout` against the local stack's Cognito, on a terminal: SRP, renewal
after expiry, revocation, and the NEW_PASSWORD_REQUIRED and TOTP challenges answered at the prompts."""
from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pexpect
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from devserver import aws as dev_aws
from tests.e2e.conftest import LLM_IDE, start_stack, stop_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory):
    # Its own stack: moto checks one-time codes here, and tests shorten the tokens' lifetime.
    running = start_stack(tmp_path_factory.mktemp("auth-stack"), env={"MOTO_COGNITO_IDP_USER_POOL_ENABLE_TOTP": "true"})
    yield running
    stop_stack(running.process)


@pytest.fixture
def cognito(auth_stack):
    # Cognito, as users reach it.
    return dev_aws.aws_client("cognito-idp", auth_stack.document["cognito"]["endpointUrl"])


def env_for(stack, home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "LLM_IDE_ENDPOINTS": str(stack.endpoints_path), "LLM_IDE_HOME": str(home),
            "PYTHONUNBUFFERED": "1", **extra}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LLM_IDE, *args], check=False, env=env, capture_output=True, text=True, timeout=60)


def stored(home: Path) -> dict:
    return next(iter(json.loads((home / "tokens.json").read_text()).values()))["users"]


def test_login_whoami_and_a_token_file_only_its_owner_reads(auth_stack, tmp_path):
    env = env_for(auth_stack, tmp_path)
    login = run(env, "login", "--username", "dev")
    assert login.returncode == 0, login.stderr
    assert "Signed in as dev" in login.stdout and "renewed automatically" in login.stdout
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600
    whoami = run(env, "whoami")
    assert whoami.returncode == 0 and whoami.stdout.startswith("dev (sub ")
    assert auth_stack.document["websocketUrl"] in whoami.stdout
    assert "valid until 20" in whoami.stdout and "(in 59 min)" in whoami.stdout  # a local time, not epoch
    assert run(env, "ping").returncode == 0


def test_an_expired_access_token_is_renewed_by_the_next_command(auth_stack, cognito, tmp_path):
    pool, client = auth_stack.document["cognito"]["userPoolId"], auth_stack.document["cognito"]["clientId"]
    cognito.update_user_pool_client(UserPoolId=pool, ClientId=client, AccessTokenValidity=4, IdTokenValidity=4,
                                    TokenValidityUnits={"AccessToken": "seconds", "IdToken": "seconds"})
    try:
        env = env_for(auth_stack, tmp_path)
        assert run(env, "login", "--username", "dev").returncode == 0
        first = stored(tmp_path)["dev"]
        time.sleep(5)  # the access token has expired: the backend would refuse it
        ping = run(env, "ping")
        assert ping.returncode == 0, ping.stderr
        renewed = stored(tmp_path)["dev"]
        assert renewed["access_token"] != first["access_token"]
        assert renewed["refresh_token"] == first["refresh_token"] and renewed["expires_at"] > time.time()
    finally:
        cognito.update_user_pool_client(UserPoolId=pool, ClientId=client, AccessTokenValidity=1, IdTokenValidity=1,
                                        TokenValidityUnits={"AccessToken": "hours", "IdToken": "hours"})


def test_logout_revokes_the_refresh_token_and_forgets_the_tokens(auth_stack, cognito, tmp_path):
    env = env_for(auth_stack, tmp_path)
    assert run(env, "login", "--username", "dev2").returncode == 0
    refresh_token = stored(tmp_path)["dev2"]["refresh_token"]
    logout = run(env, "logout")
    assert logout.returncode == 0 and "revoked" in logout.stdout
    with pytest.raises(ClientError) as refused:
        cognito.initiate_auth(ClientId=auth_stack.document["cognito"]["clientId"], AuthFlow="REFRESH_TOKEN_AUTH",
                              AuthParameters={"REFRESH_TOKEN": refresh_token})
    assert refused.value.response["Error"]["Code"] == "NotAuthorizedException"
    assert "dev2" not in json.dumps(json.loads((tmp_path / "tokens.json").read_text()))
    ping = run(env, "ping")
    assert ping.returncode == 1 and "llm-ide login" in ping.stderr


def login_on_a_terminal(stack, home: Path, username: str, password: str) -> pexpect.spawn:
    return pexpect.spawn(LLM_IDE, ["login", "--username", username], encoding="utf-8", timeout=30,
                         env=env_for(stack, home, LLM_IDE_PASSWORD=password))


def test_a_new_password_is_asked_when_cognito_requires_one(auth_stack, cognito, tmp_path):
    pool = auth_stack.document["cognito"]["userPoolId"]
    cognito.admin_create_user(UserPoolId=pool, Username="newcomer", TemporaryPassword="Temp-pass-1a!",
                              MessageAction="SUPPRESS")
    terminal = login_on_a_terminal(auth_stack, tmp_path, "newcomer", "Temp-pass-1a!")
    terminal.expect("choose a new password")
    terminal.expect("New password: ")
    terminal.sendline("Chosen-pass-2b!")
    terminal.expect("New password again: ")
    terminal.sendline("Chosen-pass-2b!")
    terminal.expect("Signed in as newcomer")
    terminal.expect(pexpect.EOF)
    terminal.close()
    assert terminal.exitstatus == 0
    assert cognito.admin_get_user(UserPoolId=pool, Username="newcomer")["UserStatus"] == "CONFIRMED"


def test_a_one_time_code_is_asked_and_a_wrong_one_asked_again(auth_stack, cognito, tmp_path):
    pool, client = auth_stack.document["cognito"]["userPoolId"], auth_stack.document["cognito"]["clientId"]
    cognito.admin_create_user(UserPoolId=pool, Username="guarded", MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=pool, Username="guarded", Password="Guarded-pass-3c!", Permanent=True)
    access = cognito.initiate_auth(ClientId=client, AuthFlow="USER_PASSWORD_AUTH", AuthParameters={
        "USERNAME": "guarded", "PASSWORD": "Guarded-pass-3c!"})["AuthenticationResult"]["AccessToken"]
    secret = cognito.associate_software_token(AccessToken=access)["SecretCode"]
    app = TOTP(base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True), 6, SHA1(), 30,
               enforce_key_length=False)  # the person's authenticator app
    cognito.verify_software_token(AccessToken=access, UserCode=app.generate(time.time()).decode())
    cognito.set_user_mfa_preference(AccessToken=access,
                                    SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True})
    terminal = login_on_a_terminal(auth_stack, tmp_path, "guarded", "Guarded-pass-3c!")
    terminal.expect("One-time code from your authenticator app: ")
    terminal.sendline("000000" if app.generate(time.time()).decode() != "000000" else "111111")
    terminal.expect("That code was not accepted.")
    terminal.expect("One-time code from your authenticator app: ")
    terminal.sendline(app.generate(time.time()).decode())
    terminal.expect("Signed in as guarded")
    terminal.expect(pexpect.EOF)
    terminal.close()
    assert terminal.exitstatus == 0
    assert "guarded" in stored(tmp_path)


def test_a_wrong_user_is_a_clear_sign_in_failure(auth_stack, tmp_path):
    failed = run(env_for(auth_stack, tmp_path, LLM_IDE_PASSWORD="whatever-1A!"), "login", "--username", "nobody")
    assert failed.returncode == 1 and "sign-in failed: UserNotFoundException" in failed.stderr
    assert not (tmp_path / "tokens.json").exists()
