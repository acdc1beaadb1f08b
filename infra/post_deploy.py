"""After `chalice deploy`: attach the `$connect` authorizer, throttle the WebSocket stage, put WAF on the REST API.

Chalice cannot attach an authorizer to a WebSocket route, and every `chalice deploy`
recreates the API's routes without one. So after each deploy run

    python -m infra.post_deploy --stage prod

It reads `.chalice/deployed/<stage>.json`, then, idempotently: creates or updates the
authorizer for the `ws_authorizer` Lambda, lets API Gateway invoke that Lambda for it,
sets `$connect` to CUSTOM with it, sets the stage's default throttling, turns off
Lambda's automatic retries of the workers' asynchronous invocations, deploys the stage,
and associates the stage's REGIONAL web ACL (made by the CDK waf stack, its ARN recorded in
`.chalice/infra.json` by the sync step) with the REST API's stage. `$connect` verifies the
token itself too, so the API is never open meanwhile.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
# `arn:<partition>:wafv2:<region>:<account>:regional/webacl/<name>/<id>`: only a REGIONAL ACL fits API Gateway.
WEB_ACL_ARN = re.compile(r"arn:[\w-]+:wafv2:(?P<region>[a-z0-9-]+):\d{12}:regional/webacl/(?P<name>[\w-]+)/[\w-]+")
# A web ACL made moments ago may not be associable yet (WAFUnavailableEntityException): wait, a few times.
ASSOCIATE_ATTEMPTS = 6
ASSOCIATE_WAIT_SECONDS = 10.0


class PostDeployError(Exception):
    """The deployment is not in a state this step can work on; the message says why."""


@dataclass(frozen=True)
class Deployment:
    """What Chalice deployed, as recorded in `.chalice/deployed/<stage>.json`."""

    api_id: str
    function_arn: str
    worker_arns: tuple[str, ...] = ()
    rest_api_id: str = ""

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

    def rest_api_stage_arn(self, stage_name: str) -> str:
        """The REST API's stage as WAF names a resource it protects."""
        if not self.rest_api_id:
            raise PostDeployError("no REST API in the deployed record: run `chalice deploy` first")
        return f"arn:{self.partition}:apigateway:{self.region}::/restapis/{self.rest_api_id}/stages/{stage_name}"

    def authorizer_source_arn(self, authorizer_id: str) -> str:
        api = f"arn:{self.partition}:execute-api:{self.region}:{self.account}:{self.api_id}"
        return f"{api}/authorizers/{authorizer_id}"

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Deployment:
        resources = record.get("resources") or []
        api = next((r for r in resources if r.get("resource_type") == "websocket_api"), None)
        function = next((r for r in resources if r.get("resource_type") == "lambda_function"
                         and r.get("name") == AUTHORIZER_FUNCTION), None)
        rest_api = next((r for r in resources if r.get("resource_type") == "rest_api"), None)
        if api is None or not api.get("websocket_api_id"):
            raise PostDeployError("no WebSocket API in the deployed record: run `chalice deploy` first")
        if rest_api is None or not rest_api.get("rest_api_id"):
            raise PostDeployError("no REST API in the deployed record: run `chalice deploy` first")
        if function is None or str(function.get("lambda_arn", "")).count(":") < 6:
            raise PostDeployError(f"no '{AUTHORIZER_FUNCTION}' Lambda in the deployed record: "
                                  "run `chalice deploy` first")
        workers = tuple(r["lambda_arn"] for r in resources if r.get("resource_type") == "lambda_function"
                        and r.get("name") in WORKER_FUNCTIONS and r.get("lambda_arn"))
        return cls(api_id=api["websocket_api_id"], function_arn=function["lambda_arn"], worker_arns=workers,
                   rest_api_id=rest_api["rest_api_id"])


@dataclass(frozen=True)
class Throttle:
    rate: float
    burst: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Throttle:
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
    """The steps, each idempotent; the clients are boto3's `apigatewayv2`, `lambda` and `wafv2`."""

    def __init__(self, *, apigateway: Any, lambda_client: Any, wafv2: Any = None,
                 say: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep) -> None:
        self._apigw = apigateway
        self._lambda = lambda_client
        self._wafv2 = wafv2
        self._say = say
        self._sleep = sleep

    def run(self, deployment: Deployment, *, stage_name: str, throttle: Throttle, web_acl_arn: str) -> str:
        """Every step in order; returns the id of the WebSocket stage's new deployment."""
        authorizer_id = self.ensure_authorizer(deployment)
        self.grant_invoke(deployment, authorizer_id)
        self.attach_to_connect(deployment.api_id, authorizer_id)
        self.throttle_stage(deployment.api_id, stage_name, throttle)
        self.disable_async_retries(deployment)
        deployment_id = self.deploy_stage(deployment.api_id, stage_name)
        self.protect_rest_api(deployment, stage_name, web_acl_arn)
        return deployment_id

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

    def protect_rest_api(self, deployment: Deployment, stage_name: str, web_acl_arn: str) -> None:
        """Associate our REGIONAL web ACL with the REST API's stage, unless it already is.

        An ACL of another name already there (a security team's, Firewall Manager's) is never replaced:
        that is for a person to decide. One of our name is an earlier copy of ours (the waf stack was
        re-created) and is replaced by associating ours over it (a stage has one web ACL; no disassociate first,
so the stage is never left unprotected in between).
        """
        ours = WEB_ACL_ARN.fullmatch(web_acl_arn)
        if ours is None:
            raise PostDeployError(f"{web_acl_arn!r} is not a REGIONAL WAFv2 web ACL ARN: check apiWebAclArn in "
                                  ".chalice/infra.json (written by `python -m infra.sync_config`)")
        if ours["region"] != deployment.region:
            raise PostDeployError(f"the web ACL is in {ours['region']} but the REST API in {deployment.region}: "
                                  "deploy the waf stack from the API's region, then sync again")
        resource_arn = deployment.rest_api_stage_arn(stage_name)
        current = self._wafv2.get_web_acl_for_resource(ResourceArn=resource_arn).get("WebACL")
        if current is not None:
            if current.get("ARN") == web_acl_arn:
                self._say(f"web ACL {ours['name']} already protects the REST API's stage {stage_name}")
                return
            if current.get("Name") != ours["name"]:
                raise PostDeployError(
                    f"the REST API's stage {stage_name} is protected by another web ACL, {current.get('ARN')}; "
                    f"left as it is. To use ours, disassociate that one (`aws wafv2 disassociate-web-acl "
                    f"--resource-arn {resource_arn}`) or add our rules to it, then run this again")
        for attempt in range(1, ASSOCIATE_ATTEMPTS + 1):
            try:
                self._wafv2.associate_web_acl(WebACLArn=web_acl_arn, ResourceArn=resource_arn)
                break
            except self._wafv2.exceptions.WAFNonexistentItemException:
                raise PostDeployError(f"web ACL {web_acl_arn} not found: run `cdk deploy --all` and "
                                      "`python -m infra.sync_config` for this stage, then this again") from None
            except self._wafv2.exceptions.WAFUnavailableEntityException:
                if attempt == ASSOCIATE_ATTEMPTS:
                    raise PostDeployError(f"WAF still cannot associate {web_acl_arn} after {attempt} attempts: "
                                          "a new web ACL can take minutes to propagate; run this again") from None
                self._say(f"web ACL not associable yet, retrying in {ASSOCIATE_WAIT_SECONDS:g} s")
                self._sleep(ASSOCIATE_WAIT_SECONDS)
        replaced = f" (replacing {current['ARN']})" if current is not None else ""
        self._say(f"web ACL {ours['name']} now protects the REST API's stage {stage_name}{replaced}")

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
    def _pages(operation: Callable[..., dict[str, Any]], **params: Any) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            page = operation(**params, **({"NextToken": token} if token else {}))
            yield from page.get("Items", [])
            token = page.get("NextToken")
            if not token:
                return


def websocket_stage_name(chalice_config: Mapping[str, Any], stage: str) -> str:
    """The API Gateway stage Chalice deployed the WebSocket API (and the REST API) to, for a Chalice stage.

    Chalice deploys both APIs to `api_gateway_stage`, looked up in the stage, then at the top, else "api".
    """
    stage_config = chalice_config.get("stages", {}).get(stage)
    if stage_config is None:
        raise PostDeployError(f"no stage '{stage}' in .chalice/config.json")
    return stage_config.get("api_gateway_stage") or chalice_config.get("api_gateway_stage") or "api"


def api_web_acl_arn(chalice_dir: Path, stage: str) -> str:
    """The REST API's web ACL, as the sync step recorded it from the waf stack's output."""
    facts_path = chalice_dir / "infra.json"
    facts = json.loads(facts_path.read_text()).get(stage, {}) if facts_path.exists() else {}
    if not facts.get("apiWebAclArn"):
        raise PostDeployError(f"no apiWebAclArn for stage '{stage}' in {facts_path}: run `cdk deploy --all` and "
                              f"`python -m infra.sync_config --stage {stage}` first")
    return facts["apiWebAclArn"]


def _clients(region: str) -> tuple[Any, Any, Any]:
    import boto3
    from botocore.config import Config

    config = Config(region_name=region, connect_timeout=5, read_timeout=30,
                    retries={"mode": "standard", "max_attempts": 5})
    return (boto3.client("apigatewayv2", config=config), boto3.client("lambda", config=config),
            boto3.client("wafv2", config=config))


def main(argv: list[str] | None = None, *, environ: Mapping[str, str] = os.environ,
         clients: Callable[[str], tuple[Any, Any, Any]] = _clients) -> int:
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
        web_acl_arn = api_web_acl_arn(chalice_dir, args.stage)
        throttle = Throttle.from_env(environ)
        apigateway, lambda_client, wafv2 = clients(deployment.region)
        PostDeploy(apigateway=apigateway, lambda_client=lambda_client, wafv2=wafv2).run(
            deployment, stage_name=stage_name, throttle=throttle, web_acl_arn=web_acl_arn)
    except PostDeployError as exc:
        print(f"post-deploy: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
