"""After `chalice deploy`: attach the `$connect` REQUEST authorizer and throttle the WebSocket stage.

Chalice cannot attach an authorizer to a WebSocket route, and every `chalice deploy`
recreates the API's routes without one. So after each deploy run

    python -m infra.post_deploy --stage prod

It reads `.chalice/deployed/<stage>.json`, then, idempotently: creates or updates the
authorizer for the `ws_authorizer` Lambda, lets API Gateway invoke that Lambda for it,
sets `$connect` to CUSTOM with it, sets the stage's default throttling, turns off
Lambda's automatic retries of the workers' asynchronous invocations, and deploys the
stage. `$connect` verifies the token itself too, so the API is never open meanwhile.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

ROOT = Path(__file__).resolve().parent.parent
AUTHORIZER_NAME = "ws_authorizer"
AUTHORIZER_FUNCTION = "ws_authorizer"
STATEMENT_ID_PREFIX = "llm-ide-ws-authorizer"
# Lambda retries a failed asynchronous invocation twice by default. A retried worker could
# stream a reply again or open a second pull request; each worker already answers every
# failure with an error frame, so a retry has nothing to add.
WORKER_FUNCTIONS = ("bedrock_worker", "github_worker")
# No identity source: API Gateway calls a REQUEST authorizer only when ALL listed sources
# are present, and the token may come in the header or the query string. WebSocket
# authorizers are never cached, so nothing needs a cache key; a request with no token at
# all reaches ws_authorizer, which answers 401 like API Gateway would.
IDENTITY_SOURCE: list[str] = []
# Stage-wide caps on inbound messages (connects included), a blast-radius limit behind the
# per-user rate limit: 500 messages/s of about 0.2 s each is ~100 concurrent websocket_message
# executions, a tenth of the default account concurrency, leaving room for the workers.
DEFAULT_RATE = 500.0
DEFAULT_BURST = 1000


class PostDeployError(Exception):
    """The deployment is not in a state this step can work on; the message says why."""


@dataclass(frozen=True)
class Deployment:
    """What Chalice deployed, as recorded in `.chalice/deployed/<stage>.json`."""

    api_id: str
    function_arn: str
    worker_arns: tuple[str, ...] = ()

    @property
    def partition(self) -> str:
        return self.function_arn.split(":")[1]

    @property
    def region(self) -> str:
        return self.function_arn.split(":")[3]

    @property
    def account(self) -> str:
        return self.function_arn.split(":")[4]

    @property
    def authorizer_uri(self) -> str:
        return (f"arn:{self.partition}:apigateway:{self.region}:lambda:path/2015-03-31/functions/"
                f"{self.function_arn}/invocations")

    def authorizer_source_arn(self, authorizer_id: str) -> str:
        return f"arn:{self.partition}:execute-api:{self.region}:{self.account}:{self.api_id}/authorizers/{authorizer_id}"

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "Deployment":
        resources = record.get("resources") or []
        api = next((r for r in resources if r.get("resource_type") == "websocket_api"), None)
        function = next((r for r in resources if r.get("resource_type") == "lambda_function"
                         and r.get("name") == AUTHORIZER_FUNCTION), None)
        if api is None or not api.get("websocket_api_id"):
            raise PostDeployError("no WebSocket API in the deployed record: run `chalice deploy` first")
        if function is None or str(function.get("lambda_arn", "")).count(":") < 6:
            raise PostDeployError(f"no '{AUTHORIZER_FUNCTION}' Lambda in the deployed record: run `chalice deploy` first")
        workers = tuple(r["lambda_arn"] for r in resources if r.get("resource_type") == "lambda_function"
                        and r.get("name") in WORKER_FUNCTIONS and r.get("lambda_arn"))
        return cls(api_id=api["websocket_api_id"], function_arn=function["lambda_arn"], worker_arns=workers)


@dataclass(frozen=True)
class Throttle:
    rate: float
    burst: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Throttle":
        try:
            rate = float(environ.get("WS_THROTTLE_RATE") or DEFAULT_RATE)
            burst = int(environ.get("WS_THROTTLE_BURST") or DEFAULT_BURST)
        except ValueError:
            raise PostDeployError("WS_THROTTLE_RATE must be a number and WS_THROTTLE_BURST an integer") from None
        if not (0 < rate <= 10_000 and 0 < burst <= 5_000):
            raise PostDeployError("WS_THROTTLE_RATE must be in (0, 10000] and WS_THROTTLE_BURST in 1..5000 "
                                  "(the account's defaults are the ceiling)")
        return cls(rate=rate, burst=burst)


class PostDeploy:
    """The steps, each idempotent; the clients are boto3's `apigatewayv2` and `lambda`."""

    def __init__(self, *, apigateway: Any, lambda_client: Any, say: Callable[[str], None] = print) -> None:
        self._apigw = apigateway
        self._lambda = lambda_client
        self._say = say

    def run(self, deployment: Deployment, *, stage_name: str, throttle: Throttle) -> str:
        """Every step in order; returns the id of the stage's new deployment."""
        authorizer_id = self.ensure_authorizer(deployment)
        self.grant_invoke(deployment, authorizer_id)
        self.attach_to_connect(deployment.api_id, authorizer_id)
        self.throttle_stage(deployment.api_id, stage_name, throttle)
        self.disable_async_retries(deployment)
        return self.deploy_stage(deployment.api_id, stage_name)

    def ensure_authorizer(self, deployment: Deployment) -> str:
        spec = {"AuthorizerType": "REQUEST", "AuthorizerUri": deployment.authorizer_uri,
                "IdentitySource": IDENTITY_SOURCE, "Name": AUTHORIZER_NAME}
        existing = self._find_authorizer(deployment.api_id)
        if existing is None:
            authorizer_id = self._apigw.create_authorizer(ApiId=deployment.api_id, **spec)["AuthorizerId"]
            self._say(f"created authorizer {AUTHORIZER_NAME} ({authorizer_id})")
        else:
            authorizer_id = existing["AuthorizerId"]
            self._apigw.update_authorizer(ApiId=deployment.api_id, AuthorizerId=authorizer_id, **spec)
            self._say(f"updated authorizer {AUTHORIZER_NAME} ({authorizer_id})")
        return authorizer_id

    def grant_invoke(self, deployment: Deployment, authorizer_id: str) -> None:
        """Let API Gateway invoke the Lambda for this authorizer, and only for it."""
        statement_id = f"{STATEMENT_ID_PREFIX}-{deployment.api_id}"
        source_arn = deployment.authorizer_source_arn(authorizer_id)
        for statement in self._policy_statements(deployment.function_arn):
            if statement.get("Sid") != statement_id:
                continue
            if statement.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn") == source_arn:
                self._say("invoke permission already in place")
                return
            # The authorizer was recreated: the old grant names an authorizer that is gone.
            self._lambda.remove_permission(FunctionName=deployment.function_arn, StatementId=statement_id)
        self._lambda.add_permission(FunctionName=deployment.function_arn, StatementId=statement_id,
                                    Action="lambda:InvokeFunction", Principal="apigateway.amazonaws.com",
                                    SourceArn=source_arn)
        self._say("granted API Gateway permission to invoke the authorizer")

    def attach_to_connect(self, api_id: str, authorizer_id: str) -> None:
        route = next((r for r in self._routes(api_id) if r.get("RouteKey") == "$connect"), None)
        if route is None:
            raise PostDeployError("the WebSocket API has no $connect route: run `chalice deploy` first")
        self._apigw.update_route(ApiId=api_id, RouteId=route["RouteId"], AuthorizationType="CUSTOM",
                                 AuthorizerId=authorizer_id)
        self._say("$connect now uses the authorizer")

    def throttle_stage(self, api_id: str, stage_name: str, throttle: Throttle) -> None:
        self._apigw.update_stage(ApiId=api_id, StageName=stage_name, DefaultRouteSettings={
            "ThrottlingRateLimit": throttle.rate, "ThrottlingBurstLimit": throttle.burst})
        self._say(f"stage {stage_name} throttled to {throttle.rate:g}/s, burst {throttle.burst}")

    def disable_async_retries(self, deployment: Deployment) -> None:
        for function_arn in deployment.worker_arns:
            self._lambda.put_function_event_invoke_config(FunctionName=function_arn, MaximumRetryAttempts=0)
            self._say(f"no automatic retries of {function_arn.rsplit(':', 1)[-1]}'s asynchronous invocations")

    def deploy_stage(self, api_id: str, stage_name: str) -> str:
        deployment_id = self._apigw.create_deployment(
            ApiId=api_id, StageName=stage_name, Description="post-deploy: $connect authorizer")["DeploymentId"]
        self._say(f"deployed stage {stage_name} ({deployment_id})")
        return deployment_id

    def _find_authorizer(self, api_id: str) -> dict[str, Any] | None:
        return next((a for a in self._pages(self._apigw.get_authorizers, ApiId=api_id)
                     if a.get("Name") == AUTHORIZER_NAME), None)

    def _routes(self, api_id: str) -> list[dict[str, Any]]:
        return list(self._pages(self._apigw.get_routes, ApiId=api_id))

    def _policy_statements(self, function_arn: str) -> list[dict[str, Any]]:
        try:
            policy = self._lambda.get_policy(FunctionName=function_arn)["Policy"]
        except self._lambda.exceptions.ResourceNotFoundException:
            return []  # no resource policy yet
        return json.loads(policy).get("Statement", [])

    @staticmethod
    def _pages(operation: Callable[..., dict[str, Any]], **params: Any):
        token = None
        while True:
            page = operation(**params, **({"NextToken": token} if token else {}))
            yield from page.get("Items", [])
            token = page.get("NextToken")
            if not token:
                return


def websocket_stage_name(chalice_config: Mapping[str, Any], stage: str) -> str:
    """The API Gateway stage Chalice deployed the WebSocket API to, for a Chalice stage.

    Chalice deploys both APIs to `api_gateway_stage`, looked up in the stage, then at the top, else "api".
    """
    stage_config = chalice_config.get("stages", {}).get(stage)
    if stage_config is None:
        raise PostDeployError(f"no stage '{stage}' in .chalice/config.json")
    return stage_config.get("api_gateway_stage") or chalice_config.get("api_gateway_stage") or "api"


def _clients(region: str) -> tuple[Any, Any]:
    import boto3
    from botocore.config import Config

    config = Config(region_name=region, connect_timeout=5, read_timeout=30,
                    retries={"mode": "standard", "max_attempts": 5})
    return boto3.client("apigatewayv2", config=config), boto3.client("lambda", config=config)


def main(argv: list[str] | None = None, *, environ: Mapping[str, str] = os.environ,
         clients: Callable[[str], tuple[Any, Any]] = _clients) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.post_deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, help="the Chalice stage, e.g. prod")
    parser.add_argument("--project-dir", type=Path, default=ROOT, help="where .chalice/ is (default: this repo)")
    args = parser.parse_args(argv)
    try:
        chalice_dir = args.project_dir / ".chalice"
        record_path = chalice_dir / "deployed" / f"{args.stage}.json"
        if not record_path.exists():
            raise PostDeployError(f"{record_path} not found: run `chalice deploy --stage {args.stage}` first")
        deployment = Deployment.from_record(json.loads(record_path.read_text()))
        stage_name = websocket_stage_name(json.loads((chalice_dir / "config.json").read_text()), args.stage)
        throttle = Throttle.from_env(environ)
        apigateway, lambda_client = clients(deployment.region)
        PostDeploy(apigateway=apigateway, lambda_client=lambda_client).run(
            deployment, stage_name=stage_name, throttle=throttle)
    except PostDeployError as exc:
        print(f"post-deploy: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
