"""moto in server mode, and the resources the app needs created in it.

Tables, buckets and the secret come from infra/resources.py, the definition the
CDK app deploys, so the local stack cannot drift from AWS.
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.config import DEFAULT_ALLOWED_MODELS
from infra import resources

REGION = "us-east-1"
LOCAL_EXTRA_MODEL = "us.anthropic.claude-sonnet-4-20250514-v1:0"
ACCOUNT = "123456789012"  # moto's default account
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
USERNAMES = ("dev", "dev2")


def _prepare_child(parent_mask: set[int | signal.Signals]) -> None:
    """Between fork and exec, in the child: it dies with the dev server, and Ctrl-C, held back while
    the parent forked (see MotoServer.start), reaches it again, as the default action: a Ctrl-C that
    came meanwhile ends it here rather than in the parent's Python handler it inherited."""
    if sys.platform == "linux":
        # The emulator gets SIGTERM if the dev server dies, even by SIGKILL. Elsewhere the dev
        # server's own shutdown still stops it.
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, parent_mask)


def listen(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on host:port (0: a free port, the OS's pick). OSError if the port is taken.

    A server is handed the socket rather than a port number: a port found free and bound later (by
    a child process that takes seconds to start) can be taken meanwhile by any other process on the
    machine, another stack's moto among them, which then answered in this stack's place."""
    return socket.create_server((host, port), backlog=128)


class MotoServer:
    """moto's server in a child process, so it runs on its own core, serving on `listener`.

    The child inherits the socket, already listening, by werkzeug's own way of handing its server
    one (its reloader's): WERKZEUG_SERVER_FD names the descriptor, WERKZEUG_RUN_MAIN says to use it.
    It works for any moto server run_simple starts (moto_atomic.py, or moto's own in bench/)."""

    def __init__(self, *, listener: socket.socket, log_path: Path) -> None:
        self._listener = listener
        self.host, self.port = listener.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        # moto.server with atomic DynamoDB writes (see moto_atomic.py).
        self._args = [sys.executable, str(Path(__file__).with_name("moto_atomic.py")), "-H", self.host,
                      "-p", str(self.port)]
        self._log_path = log_path
        self._process: subprocess.Popen | None = None

    def start(self, *, timeout: float = 30.0) -> None:
        fd = self._listener.fileno()
        env = {**os.environ, **CREDENTIALS, "WERKZEUG_RUN_MAIN": "true", "WERKZEUG_SERVER_FD": str(fd)}
        # Ctrl-C is held back while the child is made. Python runs a signal's handler at its next line of
        # Python, which in the parent may be an at-fork hook (logging has one), where an exception is
        # "ignored": the KeyboardInterrupt was lost and the stack came up after Ctrl-C. Held, it is
        # raised below, where the fork is done, like anywhere else.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            with open(self._log_path, "ab") as log:
                # preexec_fn runs between fork and exec, where another thread's lock could hang it; this one
                # only calls libc's prctl and the signal module, and no other way asks Linux to end the child
                # with its parent.
                self._process = subprocess.Popen(
                    self._args, stdout=log, stderr=subprocess.STDOUT, env=env, pass_fds=(fd,),
                    preexec_fn=functools.partial(_prepare_child, mask))  # noqa: PLW1509
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            # The child holds the socket now (or nobody: once moto is gone, a connection is refused, not queued).
            self._listener.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto exited with {self._process.returncode}; see {self._log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto did not start within {timeout:.0f} s; see {self._log_path}")

    def stop(self) -> None:
        self._listener.close()  # if it never started
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


@dataclass(frozen=True)
class Provisioned:
    stage: str
    user_pool_id: str
    client_id: str
    users: tuple[tuple[str, str], ...]  # (username, password)
    names: dict[str, str]  # env var -> physical name or ARN


def aws_client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(retries={"mode": "standard", "max_attempts": 3}))


def provision(endpoint: str, *, stage: str) -> Provisioned:
    """Create every table, bucket, secret and the user pool in a fresh moto."""
    names: dict[str, str] = {}
    dynamodb = aws_client("dynamodb", endpoint)
    for table in resources.TABLES:
        name = table.physical_name(stage)
        names[table.env_var] = name
        kwargs: dict[str, Any] = {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": a.name, "AttributeType": a.type} for a in table.attributes()],
            "KeySchema": _key_schema(table.partition_key, table.sort_key),
        }
        if table.indexes:
            kwargs["GlobalSecondaryIndexes"] = [
                {"IndexName": i.name, "KeySchema": _key_schema(i.partition_key, i.sort_key),
                 "Projection": {"ProjectionType": "ALL"}}
                for i in table.indexes
            ]
        dynamodb.create_table(**kwargs)
        if table.ttl_attribute:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": table.ttl_attribute})

    s3 = aws_client("s3", endpoint)
    for bucket in resources.BUCKETS:
        name = bucket.physical_name(stage, ACCOUNT)
        names[bucket.env_var] = name
        s3.create_bucket(Bucket=name)
        if not bucket.cdn:
            s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [resources.BROWSER_CORS]})
        # From the app's own setting of each rule, as the CDK app builds them from the stage's.
        rules = [{"ID": rule.id, "Status": "Enabled", "Filter": {"Tag": {"Key": rule.tag_key, "Value": rule.tag_value}},
                  "Expiration": {"Days": rule.expiration_days(int(os.environ.get(rule.days_setting)
                                                                  or rule.default_days))}}
                 for rule in bucket.expiry_rules]
        if bucket.expiration_days:
            rules.append({"ID": "expire-objects", "Status": "Enabled", "Filter": {"Prefix": ""},
                          "Expiration": {"Days": bucket.expiration_days}})
        if rules:
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})

    secretsmanager = aws_client("secretsmanager", endpoint)
    for secret in resources.SECRETS:
        created = secretsmanager.create_secret(Name=secret.physical_name(stage), SecretString="{}")
        names[secret.env_var] = created["ARN"]

    cognito = aws_client("cognito-idp", endpoint)
    pool_id = cognito.create_user_pool(PoolName=f"llm-ide-{stage}")["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName="ide",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    users = []
    for username in USERNAMES:
        password = f"Dev-{secrets.token_urlsafe(12)}-9a"
        cognito.admin_create_user(UserPoolId=pool_id, Username=username, MessageAction="SUPPRESS")
        cognito.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=password, Permanent=True)
        users.append((username, password))
    return Provisioned(stage=stage, user_pool_id=pool_id, client_id=client_id, users=tuple(users), names=names)


def _key_schema(partition: resources.Attribute, sort: resources.Attribute | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": partition.name, "KeyType": "HASH"}]
    if sort:
        schema.append({"AttributeName": sort.name, "KeyType": "RANGE"})
    return schema


def app_environment(moto_url: str, gateway_url: str, provisioned: Provisioned) -> dict[str, str]:
    """The environment the app's handlers run with: AWS is moto, the Management API is the gateway."""
    pool = provisioned.user_pool_id
    return {
        **CREDENTIALS,
        "STAGE": provisioned.stage,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        # The catch-all keeps every call on this machine; the specific ones name each emulator.
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
        "AWS_ENDPOINT_URL_S3": moto_url,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_url,
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": moto_url,
        "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": f"{gateway_url}/{provisioned.stage}",
        "COGNITO_USER_POOL_ID": pool,
        "COGNITO_APP_CLIENT_IDS": provisioned.client_id,
        "COGNITO_JWKS_URL": f"{moto_url}/{pool}/.well-known/jwks.json",
        # The app's default models, and one with a large output cap and prompt caching, as the stages have.
        "ALLOWED_MODELS": f"{DEFAULT_ALLOWED_MODELS},{LOCAL_EXTRA_MODEL}",
        **provisioned.names,
    }


def endpoints_document(*, websocket_url: str, http_url: str, moto_url: str, cognito_url: str,
                       provisioned: Provisioned) -> dict[str, Any]:
    """`cognito_url` is Cognito's endpoint (devserver/cognito_front.py in front of moto)."""
    return {
        "websocketUrl": websocket_url,
        "httpUrl": http_url,
        "region": REGION,
        "awsEndpointUrl": moto_url,
        "cognito": {"userPoolId": provisioned.user_pool_id, "clientId": provisioned.client_id,
                    "endpointUrl": cognito_url},
        "users": [{"username": u, "password": p} for u, p in provisioned.users],
    }


def web_client_config(endpoints: dict[str, Any], *, context_max_bytes: int) -> dict[str, Any]:
    """What the web client needs (web/config.json): the endpoints without the users' passwords, and the
    largest context file the app takes (CONTEXT_MAX_BYTES), which the page refuses before reading."""
    return {**{key: endpoints[key] for key in ("websocketUrl", "httpUrl", "region", "cognito")},
            "contextMaxBytes": context_max_bytes}


def write_json_atomically(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.chmod(tmp, 0o600)  # it holds the dev users' passwords
    tmp.replace(path)
