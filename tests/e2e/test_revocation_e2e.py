"""Revoked sign-ins through the running local stack (issue 13, section 8): a user signed out everywhere
cannot connect again, and `python -m infra.cut_off` closes a user's sockets and keeps them out."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from client import ConnectionRefused, IdeClient, LoginFailed, login
from tests.e2e.test_skeleton import items_for, wait_until

ROOT = Path(__file__).resolve().parents[2]


def cognito(stack, signed: bool = True):
    config = None if signed else Config(signature_version=UNSIGNED)
    return boto3.client("cognito-idp", endpoint_url=stack.document["cognito"]["endpointUrl"], region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local", config=config)


@pytest.fixture
def user(stack):
    """A user of the test's own, signed in: (username, password, access token)."""
    username, password = f"revoke-{uuid.uuid4().hex[:8]}", "Revocation-e2e-password-1"
    pool = stack.document["cognito"]["userPoolId"]
    cognito(stack).admin_create_user(UserPoolId=pool, Username=username, MessageAction="SUPPRESS")
    cognito(stack).admin_set_user_password(UserPoolId=pool, Username=username, Password=password, Permanent=True)
    return username, password, sign_in(stack, username, password)


def sign_in(stack, username, password) -> str:
    e = stack.endpoints
    return login(username, password, client_id=e.client_id, region=e.region, user_pool_id=e.user_pool_id,
                 endpoint_url=e.cognito_endpoint).access_token


def test_after_sign_out_everywhere_the_access_token_no_longer_connects(stack, user):
    username, password, token = user
    with IdeClient(stack.endpoints.websocket_url, token) as client:
        assert client.ping() < 5
        cognito(stack, signed=False).global_sign_out(AccessToken=token)
        for token_in in ("header", "query"):
            with pytest.raises(ConnectionRefused) as refused:
                IdeClient(stack.endpoints.websocket_url, token, token_in=token_in)
            assert refused.value.status == 401
        # An open connection is not closed by the user's own sign-out: it lasts until its token expires
        # (then UNAUTHORIZED), or until an administrator cuts the user off (below; docs/OPERATIONS.md).
        assert client.ping() < 5
    with IdeClient(stack.endpoints.websocket_url, sign_in(stack, username, password)) as client:
        assert client.ping() < 5


def test_cut_off_closes_every_socket_of_the_user_and_keeps_them_out(stack, user):
    username, password, token = user
    first, second = IdeClient(stack.endpoints.websocket_url, token), IdeClient(stack.endpoints.websocket_url, token)
    bystander = stack.connect("dev2")
    try:
        assert first.ping() < 5 and second.ping() < 5
        assert wait_until(lambda: len(items_for(stack, username)) == 2)
        env = {**os.environ, "AWS_ENDPOINT_URL": stack.document["awsEndpointUrl"], "AWS_ACCESS_KEY_ID": "local",
               "AWS_SECRET_ACCESS_KEY": "local"}
        done = subprocess.run([sys.executable, "-m", "infra.cut_off", "--stage", "local", "--username", username,
                               "--user-pool-id", stack.document["cognito"]["userPoolId"]],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "disabled, signed out everywhere, 2 connection(s) closed" in done.stdout
        assert first.closed.wait(5) and second.closed.wait(5)
        assert wait_until(lambda: items_for(stack, username) == [])
        with pytest.raises(ConnectionRefused) as refused:
            IdeClient(stack.endpoints.websocket_url, token)
        assert refused.value.status == 401
        with pytest.raises(LoginFailed, match="NotAuthorizedException"):
            sign_in(stack, username, password)
        assert bystander.ping() < 5  # nobody else is touched
    finally:
        for client in (first, second, bystander):
            client.close()
