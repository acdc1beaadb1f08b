"""What bench/coldstart.py's cold Lambdas talk to: the local stack's pieces, without its gateway.

moto (with the app's tables, bucket, secret and Cognito users, created as the local stack
creates them), the Bedrock and GitHub emulators, a Management API that records every frame
posted to a connection, the Lambda Invoke API with the workers' jobs kept instead of run (so
each job can be handed to a fresh interpreter), and a UDP port for X-Ray segments. The app's
functions run in child processes with `environment()`, as they run in Lambda with the stage's.
"""
from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from devserver import aws as dev_aws
from devserver import github as dev_github
from devserver.bedrock import BedrockEmulator
from devserver.lambda_api import LambdaApi
from tests.e2e.conftest import GENEROUS_LIMITS  # every run admits a chat and a GitHub job per tree, one user
from tests.servers import serve

STAGE = "dev"  # the stage's environment (.chalice/config.json), tracing off unless asked


class ManagementApi:
    """API Gateway's Management API for connections that are not there: every POST is accepted and kept."""

    def __init__(self) -> None:
        self._frames: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def make_app(self) -> web.Application:
        app = web.Application()
        for method in ("POST", "GET", "DELETE"):
            app.router.add_route(method, f"/{STAGE}/@connections/{{connection_id}}", self._connection)
        return app

    def frames(self, connection_id: str) -> list[Any]:
        with self._lock:
            return list(self._frames.get(connection_id, ()))

    async def _connection(self, request: web.Request) -> web.StreamResponse:
        if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
            return web.json_response({"message": "Missing Authentication Token"}, status=403,
                                     headers={"x-amzn-ErrorType": "ForbiddenException"})
        if request.method == "DELETE":
            return web.Response(status=204)
        if request.method == "GET":
            return web.json_response({"connectedAt": "2026-11-30T00:00:00.000Z",
                                      "identity": {"sourceIp": "192.0.2.10", "userAgent": "bench"}})
        body = await request.read()
        with self._lock:
            self._frames.setdefault(request.match_info["connection_id"], []).append(json.loads(body))
        return web.Response(status=200)


class KeptInvocations:
    """Stands in for LambdaApi's runtime: an invocation is kept, for a cold interpreter to run later."""

    def __init__(self) -> None:
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    async def invoke(self, name: str, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.setdefault(name, []).append(event)

    def take(self, name: str, count: int, *, within_seconds: float) -> list[dict[str, Any]]:
        """The events kept for `name`, once there are `count` of them or the time is up."""
        deadline = time.monotonic() + within_seconds
        while True:
            with self._lock:
                if len(self._events.get(name, ())) >= count or time.monotonic() > deadline:
                    return self._events.pop(name, [])
            time.sleep(0.05)


@dataclass(frozen=True)
class Lab:
    moto_url: str
    provisioned: dev_aws.Provisioned
    urls: dict[str, str]  # the emulators' base URLs: management, lambda, bedrock, github
    management: ManagementApi
    invocations: KeptInvocations
    xray_address: str  # host:port of the UDP socket standing for the X-Ray daemon

    def access_token(self, index: int = 0) -> str:
        """A Cognito access token of a local user, from moto's USER_PASSWORD_AUTH."""
        username, password = self.provisioned.users[index]
        answer = dev_aws.aws_client("cognito-idp", self.moto_url).initiate_auth(
            ClientId=self.provisioned.client_id, AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password})
        return answer["AuthenticationResult"]["AccessToken"]

    def environment(self, stage_variables: dict[str, str], *, tracing: bool = False) -> dict[str, str]:
        """The stage's variables with AWS and the emulators here; tracing as Lambda would see it."""
        local = dev_aws.app_environment(self.moto_url, self.urls["management"], self.provisioned)
        # The local stack's own choices (its model list...) only where the stage makes none.
        here = {name: value for name, value in local.items()
                if name.startswith(("AWS_", "COGNITO_")) or name in self.provisioned.names or name == "STAGE"}
        env = {**local, **stage_variables, **here,
               **GENEROUS_LIMITS,
               "AWS_ENDPOINT_URL_LAMBDA": self.urls["lambda"],
               "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.urls["bedrock"],
               "GITHUB_API_URL": self.urls["github"],
               "TRACING_ENABLED": "true" if tracing else "false"}
        # The stage's deployed places the lab gives another way: the issuer (from the local pool) and
        # the Management API (AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI, as in the local stack).
        for name in ("COGNITO_ISSUER", "MANAGEMENT_API_ENDPOINT"):
            env.pop(name, None)
        if tracing:
            env["AWS_XRAY_DAEMON_ADDRESS"] = self.xray_address
            env["_X_AMZN_TRACE_ID"] = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        return env


@contextlib.contextmanager
def running_lab() -> Iterator[Lab]:
    moto = dev_aws.MotoServer(listener=dev_aws.listen(),
                              log_path=Path(tempfile.gettempdir()) / "bench-coldstart-moto.log")
    moto.start()
    # Segments go to a bound socket nobody reads: sent, as to the X-Ray daemon, never refused.
    xray = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        xray.bind(("127.0.0.1", 0))
        provisioned = dev_aws.provision(moto.url, stage=STAGE)
        github = dev_github.provision(dev_aws.aws_client("secretsmanager", moto.url),
                                      provisioned.names["GITHUB_SECRET_ARN"])
        management, invocations = ManagementApi(), KeptInvocations()
        # Chalice names a function `<app>-<stage>-<name>`, as the stage's *_WORKER_FUNCTION variables do.
        lambda_api = LambdaApi(invocations, app_name="llm-ide", stage=STAGE,  # type: ignore[arg-type]
                               functions=("bedrock_worker", "github_worker"))
        with serve(management.make_app()) as management_url, serve(lambda_api.make_app()) as lambda_url, \
                serve(BedrockEmulator().make_app()) as bedrock_url, serve(github.make_app()) as github_url:
            urls = {"management": management_url, "lambda": lambda_url, "bedrock": bedrock_url, "github": github_url}
            host, port = xray.getsockname()
            yield Lab(moto_url=moto.url, provisioned=provisioned, urls=urls, management=management,
                      invocations=invocations, xray_address=f"{host}:{port}")
    finally:
        xray.close()
        moto.stop()
