"""The post-deploy step: against moto (apigatewayv2, apigateway, lambda, wafv2), and botocore's Stubber
where moto stops.

moto (5.2) has no GetAuthorizers, UpdateStage or CreateDeployment; those three calls go
to a Stubber-backed client whose answers the test derives from moto's state, and the
full call sequence is also checked against Stubber alone.
"""
from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from infra import post_deploy
from infra.post_deploy import Deployment, PostDeploy, PostDeployError, Throttle
from infra.stacks.waf import api_web_acl_name

REGION = "us-east-1"


def stub_client(service):
    return boto3.client(service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")


class SplitClient:
    """moto for the operations it implements, a stubbed client for the others."""

    def __init__(self, moto_client, stubbed_client, stubbed_operations):
        self._moto, self._stubbed, self._ops = moto_client, stubbed_client, set(stubbed_operations)

    def __getattr__(self, name):
        return getattr(self._stubbed if name in self._ops else self._moto, name)


def create_function(lambda_client, iam, name: str) -> str:
    """A do-nothing function in moto named as Chalice names the app's functions."""
    role = iam.create_role(RoleName=f"r-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("app.py", "def handler(event, context):\n    return None\n")
    return lambda_client.create_function(
        FunctionName=f"llm-ide-test-{name}-{uuid.uuid4().hex[:6]}", Runtime="python3.11", Role=role,
        Handler="app.handler", Code={"ZipFile": archive.getvalue()})["FunctionArn"]


VISIBILITY = {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": "m"}


def create_web_acl(wafv2, name: str) -> str:
    return wafv2.create_web_acl(Name=name, Scope="REGIONAL", DefaultAction={"Allow": {}},
                                VisibilityConfig=VISIBILITY)["Summary"]["ARN"]


def create_rest_api(boto, stage: str) -> str:
    """A REST API deployed to a stage, as `chalice deploy` leaves it (one GET route)."""
    rest = boto("apigateway")
    rest_api_id = rest.create_rest_api(name=f"llm-ide-{uuid.uuid4().hex[:6]}")["id"]
    root = rest.get_resources(restApiId=rest_api_id)["items"][0]["id"]
    rest.put_method(restApiId=rest_api_id, resourceId=root, httpMethod="GET", authorizationType="NONE")
    rest.put_integration(restApiId=rest_api_id, resourceId=root, httpMethod="GET", type="MOCK")
    rest.create_deployment(restApiId=rest_api_id, stageName=stage)
    return rest_api_id


@pytest.fixture
def deployed(boto):
    """A WebSocket API with Chalice's routes, a ws_authorizer function and a REST API, in moto,
    and the stage's REGIONAL web ACL."""
    apigw, lambda_client, iam = boto("apigatewayv2"), boto("lambda"), boto("iam")
    api_id = apigw.create_api(Name=f"llm-ide-{uuid.uuid4().hex[:6]}", ProtocolType="WEBSOCKET",
                              RouteSelectionExpression="$request.body.action")["ApiId"]
    for key in ("$connect", "$default", "$disconnect"):
        apigw.create_route(ApiId=api_id, RouteKey=key)
    function_arn = create_function(lambda_client, iam, "ws_authorizer")
    web_acl_arn = create_web_acl(boto("wafv2"), f"{api_web_acl_name('prod')}-{uuid.uuid4().hex[:6]}")
    deployment = Deployment(api_id=api_id, function_arn=function_arn, rest_api_id=create_rest_api(boto, "prod"))
    return deployment, apigw, lambda_client, web_acl_arn


def run_against_moto(deployment, apigw, lambda_client, known_authorizers, wafv2, web_acl_arn):
    stubbed = stub_client("apigatewayv2")
    with Stubber(stubbed) as stubber:
        stubber.add_response("get_authorizers", {"Items": known_authorizers}, {"ApiId": deployment.api_id})
        stubber.add_response("update_stage", {}, {
            "ApiId": deployment.api_id, "StageName": "prod",
            "DefaultRouteSettings": {"ThrottlingRateLimit": 500.0, "ThrottlingBurstLimit": 1000}})
        stubber.add_response("create_deployment", {"DeploymentId": "dep1"},
                             {"ApiId": deployment.api_id, "StageName": "prod", "Description": ANY})
        client = SplitClient(apigw, stubbed, {"get_authorizers", "update_stage", "create_deployment"})
        step = PostDeploy(apigateway=client, lambda_client=lambda_client, wafv2=wafv2, say=lambda line: None)
        assert step.run(deployment, stage_name="prod", throttle=Throttle.from_env({}),
                        web_acl_arn=web_acl_arn) == "dep1"
        stubber.assert_no_pending_responses()


def test_post_deploy_against_moto_is_idempotent(deployed, boto):
    deployment, apigw, lambda_client, web_acl_arn = deployed
    wafv2 = boto("wafv2")
    stage_arn = deployment.rest_api_stage_arn("prod")
    assert "WebACL" not in wafv2.get_web_acl_for_resource(ResourceArn=stage_arn)
    run_against_moto(deployment, apigw, lambda_client, known_authorizers=[], wafv2=wafv2, web_acl_arn=web_acl_arn)
    assert wafv2.get_web_acl_for_resource(ResourceArn=stage_arn)["WebACL"]["ARN"] == web_acl_arn
    assert boto("apigateway").get_stage(restApiId=deployment.rest_api_id, stageName="prod")["webAclArn"] == web_acl_arn
    connect = next(r for r in apigw.get_routes(ApiId=deployment.api_id)["Items"] if r["RouteKey"] == "$connect")
    assert connect["AuthorizationType"] == "CUSTOM"
    authorizer = apigw.get_authorizer(ApiId=deployment.api_id, AuthorizerId=connect["AuthorizerId"])
    authorizer.pop("ResponseMetadata")
    assert authorizer["Name"] == "ws_authorizer" and authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["AuthorizerUri"] == deployment.authorizer_uri
    assert deployment.function_arn in authorizer["AuthorizerUri"]

    # Again, as after the next `chalice deploy`: the same authorizer is updated, the grant is not duplicated.
    run_against_moto(deployment, apigw, lambda_client, known_authorizers=[authorizer], wafv2=wafv2,
                     web_acl_arn=web_acl_arn)
    assert wafv2.get_web_acl_for_resource(ResourceArn=stage_arn)["WebACL"]["ARN"] == web_acl_arn
    connect_again = next(r for r in apigw.get_routes(ApiId=deployment.api_id)["Items"] if r["RouteKey"] == "$connect")
    assert connect_again["AuthorizerId"] == authorizer["AuthorizerId"]
    statements = json.loads(lambda_client.get_policy(FunctionName=deployment.function_arn)["Policy"])["Statement"]
    assert len(statements) == 1
    (statement,) = statements
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    source_arn = deployment.authorizer_source_arn(authorizer["AuthorizerId"])
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == source_arn
    # Other routes are left alone.
    others = [r for r in apigw.get_routes(ApiId=deployment.api_id)["Items"] if r["RouteKey"] != "$connect"]
    assert all(r.get("AuthorizationType", "NONE") == "NONE" for r in others)


def test_a_recreated_authorizer_gets_a_fresh_grant(deployed, boto):
    deployment, apigw, lambda_client, web_acl_arn = deployed
    lambda_client.add_permission(FunctionName=deployment.function_arn,
                                 StatementId=f"llm-ide-ws-authorizer-{deployment.api_id}",
                                 Action="lambda:InvokeFunction", Principal="apigateway.amazonaws.com",
                                 SourceArn=deployment.authorizer_source_arn("gone123"))
    run_against_moto(deployment, apigw, lambda_client, known_authorizers=[], wafv2=boto("wafv2"),
                     web_acl_arn=web_acl_arn)
    (statement,) = json.loads(lambda_client.get_policy(FunctionName=deployment.function_arn)["Policy"])["Statement"]
    assert "gone123" not in statement["Condition"]["ArnLike"]["AWS:SourceArn"]


DEPLOYMENT = Deployment(api_id="wsapi1",
                        function_arn="arn:aws:lambda:eu-west-1:111122223333:function:llm-ide-prod-ws_authorizer",
                        rest_api_id="restapi1")
WEB_ACL_ARN = ("arn:aws:wafv2:eu-west-1:111122223333:regional/webacl/llm-ide-prod-api/"
               "0a1b2c3d-0000-4000-8000-000000000001")
STAGE_ARN = "arn:aws:apigateway:eu-west-1::/restapis/restapi1/stages/prod"


def test_the_whole_sequence_with_stubber_first_run_then_rerun():
    apigw, lambda_client, wafv2 = stub_client("apigatewayv2"), stub_client("lambda"), stub_client("wafv2")
    uri = ("arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/"
           "arn:aws:lambda:eu-west-1:111122223333:function:llm-ide-prod-ws_authorizer/invocations")
    spec = {"ApiId": "wsapi1", "AuthorizerType": "REQUEST", "AuthorizerUri": uri, "IdentitySource": [],
            "Name": "ws_authorizer"}
    source_arn = "arn:aws:execute-api:eu-west-1:111122223333:wsapi1/authorizers/auth1"
    routes = {"Items": [{"RouteId": "r0", "RouteKey": "$default"}, {"RouteId": "r1", "RouteKey": "$connect"}]}
    grant = {"FunctionName": DEPLOYMENT.function_arn, "StatementId": "llm-ide-ws-authorizer-wsapi1",
             "Action": "lambda:InvokeFunction", "Principal": "apigateway.amazonaws.com", "SourceArn": source_arn}
    throttle = {"ApiId": "wsapi1", "StageName": "prod",
                "DefaultRouteSettings": {"ThrottlingRateLimit": 50.0, "ThrottlingBurstLimit": 100}}
    web_acl = {"Name": "llm-ide-prod-api", "Id": "0a1b2c3d-0000-4000-8000-000000000001", "ARN": WEB_ACL_ARN,
               "DefaultAction": {"Allow": {}}, "VisibilityConfig": VISIBILITY}
    with Stubber(apigw) as api_stub, Stubber(lambda_client) as lambda_stub, Stubber(wafv2) as waf_stub:
        # First run: nothing exists yet (and the authorizers list comes in two pages).
        api_stub.add_response("get_authorizers", {"Items": [{"Name": "other", "AuthorizerId": "x"}], "NextToken": "t"},
                              {"ApiId": "wsapi1"})
        api_stub.add_response("get_authorizers", {"Items": []}, {"ApiId": "wsapi1", "NextToken": "t"})
        api_stub.add_response("create_authorizer", {"AuthorizerId": "auth1"}, spec)
        lambda_stub.add_client_error("get_policy", "ResourceNotFoundException", http_status_code=404)
        lambda_stub.add_response("add_permission", {"Statement": "{}"}, grant)
        api_stub.add_response("get_routes", routes, {"ApiId": "wsapi1"})
        api_stub.add_response("update_route", {}, {"ApiId": "wsapi1", "RouteId": "r1", "AuthorizationType": "CUSTOM",
                                                   "AuthorizerId": "auth1"})
        api_stub.add_response("update_stage", {}, throttle)
        api_stub.add_response("create_deployment", {"DeploymentId": "d1"}, {"ApiId": "wsapi1", "StageName": "prod",
                                                                            "Description": ANY})
        waf_stub.add_response("get_web_acl_for_resource", {}, {"ResourceArn": STAGE_ARN})
        waf_stub.add_response("associate_web_acl", {}, {"WebACLArn": WEB_ACL_ARN, "ResourceArn": STAGE_ARN})
        # Second run: the authorizer and the grant exist; both are kept.
        api_stub.add_response("get_authorizers", {"Items": [{"Name": "ws_authorizer", "AuthorizerId": "auth1"}]},
                              {"ApiId": "wsapi1"})
        api_stub.add_response("update_authorizer", {}, {**spec, "AuthorizerId": "auth1"})
        policy = {"Statement": [{"Sid": "llm-ide-ws-authorizer-wsapi1",
                                 "Condition": {"ArnLike": {"AWS:SourceArn": source_arn}}}]}
        lambda_stub.add_response("get_policy", {"Policy": json.dumps(policy)},
                                 {"FunctionName": DEPLOYMENT.function_arn})
        api_stub.add_response("get_routes", routes, {"ApiId": "wsapi1"})
        api_stub.add_response("update_route", {}, {"ApiId": "wsapi1", "RouteId": "r1", "AuthorizationType": "CUSTOM",
                                                   "AuthorizerId": "auth1"})
        api_stub.add_response("update_stage", {}, throttle)
        api_stub.add_response("create_deployment", {"DeploymentId": "d2"}, {"ApiId": "wsapi1", "StageName": "prod",
                                                                            "Description": ANY})
        # Ours is associated already: no associate call (the Stubber would refuse one).
        waf_stub.add_response("get_web_acl_for_resource", {"WebACL": web_acl}, {"ResourceArn": STAGE_ARN})
        lines: list[str] = []
        step = PostDeploy(apigateway=apigw, lambda_client=lambda_client, wafv2=wafv2, say=lines.append)
        throttle_settings = Throttle.from_env({"WS_THROTTLE_RATE": "50", "WS_THROTTLE_BURST": "100"})
        assert step.run(DEPLOYMENT, stage_name="prod", throttle=throttle_settings, web_acl_arn=WEB_ACL_ARN) == "d1"
        assert step.run(DEPLOYMENT, stage_name="prod", throttle=throttle_settings, web_acl_arn=WEB_ACL_ARN) == "d2"
        api_stub.assert_no_pending_responses()
        lambda_stub.assert_no_pending_responses()
        waf_stub.assert_no_pending_responses()
    assert "invoke permission already in place" in lines
    assert "web ACL llm-ide-prod-api now protects the REST API's stage prod" in lines
    assert "web ACL llm-ide-prod-api already protects the REST API's stage prod" in lines


def test_no_connect_route_is_an_error():
    apigw = stub_client("apigatewayv2")
    with Stubber(apigw) as stub:
        stub.add_response("get_routes", {"Items": [{"RouteId": "r0", "RouteKey": "$default"}]}, {"ApiId": "wsapi1"})
        with pytest.raises(PostDeployError, match=r"\$connect"):
            PostDeploy(apigateway=apigw, lambda_client=None).attach_to_connect("wsapi1", "auth1")


RECORD: dict[str, Any] = {"resources": [
    {"name": "websocket_connect", "resource_type": "lambda_function",
     "lambda_arn": "arn:aws:lambda:eu-west-1:111122223333:function:llm-ide-prod-websocket_connect"},
    {"name": "ws_authorizer", "resource_type": "lambda_function", "lambda_arn": DEPLOYMENT.function_arn},
    {"name": "websocket_api", "resource_type": "websocket_api", "websocket_api_id": "wsapi1",
     "websocket_api_url": "wss://wsapi1.execute-api.eu-west-1.amazonaws.com/prod/"},
    {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "restapi1",
     "rest_api_url": "https://restapi1.execute-api.eu-west-1.amazonaws.com/prod/"},
], "schema_version": "2.0", "backend": "api"}


def test_deployment_from_the_chalice_record():
    assert Deployment.from_record(RECORD) == DEPLOYMENT
    assert (DEPLOYMENT.region, DEPLOYMENT.account, DEPLOYMENT.partition) == ("eu-west-1", "111122223333", "aws")
    assert DEPLOYMENT.rest_api_stage_arn("prod") == STAGE_ARN
    with pytest.raises(PostDeployError, match="ws_authorizer"):
        Deployment.from_record({"resources": RECORD["resources"][:1] + RECORD["resources"][2:]})
    with pytest.raises(PostDeployError, match="WebSocket API"):
        Deployment.from_record({"resources": RECORD["resources"][:2] + RECORD["resources"][3:]})


def test_worker_functions_are_read_from_the_record():
    workers = [{"name": name, "resource_type": "lambda_function",
                "lambda_arn": f"arn:aws:lambda:eu-west-1:111122223333:function:llm-ide-prod-{name}"}
               for name in ("bedrock_worker", "github_worker")]
    deployment = Deployment.from_record({"resources": RECORD["resources"] + workers})
    assert deployment.worker_arns == tuple(w["lambda_arn"] for w in workers)


def test_workers_async_invocations_are_never_retried(deployed, boto):
    _, _, lambda_client, _ = deployed
    worker = create_function(lambda_client, boto("iam"), "bedrock_worker")
    deployment = Deployment(api_id="a", function_arn="arn:aws:lambda:us-east-1:123456789012:function:x",
                            worker_arns=(worker,))
    step = PostDeploy(apigateway=None, lambda_client=lambda_client, say=lambda line: None)
    for _ in range(2):  # idempotent
        step.disable_async_retries(deployment)
    assert lambda_client.get_function_event_invoke_config(FunctionName=worker)["MaximumRetryAttempts"] == 0


@pytest.mark.parametrize("env", [{"WS_THROTTLE_RATE": "fast"}, {"WS_THROTTLE_BURST": "1.5"},
                                 {"WS_THROTTLE_RATE": "0"}, {"WS_THROTTLE_BURST": "999999"}])
def test_bad_throttle_settings_are_refused(env):
    with pytest.raises(PostDeployError, match="WS_THROTTLE"):
        Throttle.from_env(env)


def test_main_reads_the_record_and_the_stage_name(tmp_path, capsys, monkeypatch):
    (tmp_path / ".chalice" / "deployed").mkdir(parents=True)
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(
        {"stages": {"prod": {"api_gateway_stage": "live"}}}))
    assert post_deploy.main(["--stage", "prod", "--project-dir", str(tmp_path)]) == 2
    assert "chalice deploy --stage prod" in capsys.readouterr().err
    (tmp_path / ".chalice" / "deployed" / "prod.json").write_text(json.dumps(RECORD))
    # No web ACL recorded yet (the sync step has not run since the waf stack was deployed).
    assert post_deploy.main(["--stage", "prod", "--project-dir", str(tmp_path)]) == 2
    assert "no apiWebAclArn for stage 'prod'" in capsys.readouterr().err
    (tmp_path / ".chalice" / "infra.json").write_text(json.dumps({"prod": {"apiWebAclArn": WEB_ACL_ARN}}))
    seen: dict[str, object] = {}

    class Recorder(PostDeploy):
        def run(self, deployment, *, stage_name, throttle, web_acl_arn):
            seen.update(deployment=deployment, stage_name=stage_name, throttle=throttle, web_acl_arn=web_acl_arn,
                        wafv2=self._wafv2)
            return "d"

    monkeypatch.setattr(post_deploy, "PostDeploy", Recorder)
    code = post_deploy.main(["--stage", "prod", "--project-dir", str(tmp_path)], environ={"WS_THROTTLE_RATE": "20"},
                            clients=lambda region: (region, region, f"wafv2:{region}"))
    assert code == 0
    assert seen == {"deployment": DEPLOYMENT, "stage_name": "live", "throttle": Throttle(rate=20.0, burst=1000),
                    "web_acl_arn": WEB_ACL_ARN, "wafv2": "wafv2:eu-west-1"}


def test_a_record_without_the_rest_api_is_a_clear_error(tmp_path, capsys):
    (tmp_path / ".chalice" / "deployed").mkdir(parents=True)
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps({"stages": {"prod": {}}}))
    (tmp_path / ".chalice" / "infra.json").write_text(json.dumps({"prod": {"apiWebAclArn": WEB_ACL_ARN}}))
    no_rest_api = {**RECORD, "resources": [r for r in RECORD["resources"] if r["resource_type"] != "rest_api"]}
    (tmp_path / ".chalice" / "deployed" / "prod.json").write_text(json.dumps(no_rest_api))
    called: list[str] = []

    def clients(region: str) -> tuple[Any, Any, Any]:
        called.append(region)
        raise AssertionError("no AWS client may be made")

    assert post_deploy.main(["--stage", "prod", "--project-dir", str(tmp_path)], clients=clients) == 2
    assert "no REST API in the deployed record: run `chalice deploy` first" in capsys.readouterr().err
    assert called == []  # nothing was touched
    with pytest.raises(PostDeployError, match="no REST API"):
        Deployment(api_id="a", function_arn=DEPLOYMENT.function_arn).rest_api_stage_arn("prod")


# The REST API's web ACL ---------------------------------------------------------------------------
def protect(wafv2, *, web_acl_arn=WEB_ACL_ARN, sleep=None):
    lines: list[str] = []
    step = PostDeploy(apigateway=None, lambda_client=None, wafv2=wafv2, say=lines.append,
                      sleep=sleep or (lambda seconds: pytest.fail("no wait expected")))
    step.protect_rest_api(DEPLOYMENT, "prod", web_acl_arn)
    return lines


def test_another_teams_web_acl_is_left_alone_and_named():
    wafv2 = stub_client("wafv2")
    theirs = ("arn:aws:wafv2:eu-west-1:111122223333:regional/webacl/FMManagedWebACLV2-corp/"
              "0a1b2c3d-0000-4000-8000-00000000000f")
    with Stubber(wafv2) as stub:
        stub.add_response("get_web_acl_for_resource", {"WebACL": {
            "Name": "FMManagedWebACLV2-corp", "Id": "0a1b2c3d-0000-4000-8000-00000000000f", "ARN": theirs,
            "DefaultAction": {"Allow": {}}, "VisibilityConfig": VISIBILITY}}, {"ResourceArn": STAGE_ARN})
        with pytest.raises(PostDeployError, match="protected by another web ACL") as refused:
            protect(wafv2)
        stub.assert_no_pending_responses()  # and no associate call: the Stubber would have refused it
    assert theirs in str(refused.value) and "disassociate-web-acl" in str(refused.value)


def test_an_earlier_copy_of_ours_is_replaced():
    wafv2 = stub_client("wafv2")
    stale = "arn:aws:wafv2:eu-west-1:111122223333:regional/webacl/llm-ide-prod-api/0a1b2c3d-0000-4000-8000-0000000000aa"
    with Stubber(wafv2) as stub:
        stub.add_response("get_web_acl_for_resource", {"WebACL": {
            "Name": "llm-ide-prod-api", "Id": "0a1b2c3d-0000-4000-8000-0000000000aa", "ARN": stale,
            "DefaultAction": {"Allow": {}}, "VisibilityConfig": VISIBILITY}}, {"ResourceArn": STAGE_ARN})
        stub.add_response("associate_web_acl", {}, {"WebACLArn": WEB_ACL_ARN, "ResourceArn": STAGE_ARN})
        lines = protect(wafv2)
        stub.assert_no_pending_responses()
    assert lines == [f"web ACL llm-ide-prod-api now protects the REST API's stage prod (replacing {stale})"]


def test_a_web_acl_not_yet_propagated_is_retried_then_associated():
    wafv2 = stub_client("wafv2")
    waits: list[float] = []
    with Stubber(wafv2) as stub:
        stub.add_response("get_web_acl_for_resource", {}, {"ResourceArn": STAGE_ARN})
        for _ in range(2):
            stub.add_client_error("associate_web_acl", "WAFUnavailableEntityException", http_status_code=400)
        stub.add_response("associate_web_acl", {}, {"WebACLArn": WEB_ACL_ARN, "ResourceArn": STAGE_ARN})
        protect(wafv2, sleep=waits.append)
        stub.assert_no_pending_responses()
    assert waits == [post_deploy.ASSOCIATE_WAIT_SECONDS] * 2


def test_a_deleted_web_acl_says_to_deploy_and_sync():
    wafv2 = stub_client("wafv2")
    with Stubber(wafv2) as stub:
        stub.add_response("get_web_acl_for_resource", {}, {"ResourceArn": STAGE_ARN})
        stub.add_client_error("associate_web_acl", "WAFNonexistentItemException", http_status_code=400)
        with pytest.raises(PostDeployError, match="not found: run `cdk deploy --all`"):
            protect(wafv2)


@pytest.mark.parametrize("arn, message", [
    ("arn:aws:wafv2:us-east-1:111122223333:global/webacl/llm-ide-prod-web/0a1b2c3d", "not a REGIONAL"),
    ("arn:aws:wafv2:us-west-2:111122223333:regional/webacl/llm-ide-prod-api/0a1b2c3d",
     "in us-west-2 but the REST API in eu-west-1"),
])
def test_a_web_acl_that_cannot_protect_the_api_is_refused_before_any_call(arn, message):
    with pytest.raises(PostDeployError, match=message):
        protect(None, web_acl_arn=arn)  # no client: nothing may be called
