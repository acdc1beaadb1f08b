"""The IAM policy files: every one parsed, no wildcard, and exactly the calls each function makes.

CALLS is the contract: each Chalice function's AWS calls and what they touch. A call added to
the code without its permission here and in infra/policies.py fails; a permission granted
without a call listed here fails too.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
from pathlib import Path

import pytest

from chalicelib.models import PROFILE_PREFIXES, build_table, foundation_id
from infra import policies, resources
from infra.stages import GLOBAL, PROFILE_REGIONS, STAGES, UNLISTED_GEOGRAPHIES, destination_regions, profile_prefix

ROOT = Path(__file__).resolve().parents[2]
CHALICE_DIR = ROOT / ".chalice"

# function -> [(IAM action, what it is called on)]. Targets: table:<key>, index:<key>/<index>,
# object:<bucket> (a key under users/<sub>/), prefix:<bucket> (listing users/<sub>/),
# key:<bucket> (its KMS key, through S3), function:<name>, secret:<key>, frames:<METHOD>
# (@connections of this API and stage), model:* (every allowed model or profile), counted:* (the foundation
# model of every allowed model whose table entry says CountTokens counts it), token:access (a call
# Cognito authorises with the user's access token: no IAM permission exists for it, none is granted).
CALLS: dict[str, list[tuple[str, str]]] = {
    "websocket_connect": [("dynamodb:GetItem", "table:connections"), ("dynamodb:PutItem", "table:connections"),
                          ("cognito-idp:GetUser", "token:access")],
    "websocket_disconnect": [("dynamodb:DeleteItem", "table:connections"),
                             ("dynamodb:UpdateItem", "table:connections")],
    "websocket_message": [
        ("dynamodb:GetItem", "table:connections"), ("dynamodb:UpdateItem", "table:connections"),
        ("dynamodb:GetItem", "table:requests"), ("dynamodb:PutItem", "table:requests"),
        ("dynamodb:UpdateItem", "table:requests"),
        ("dynamodb:UpdateItem", "table:usage"),
        ("dynamodb:PutItem", "table:usage"),  # a chat that cannot start is settled to zero (transaction)
        ("dynamodb:Query", "table:usage"),
        ("dynamodb:BatchGetItem", "table:usage"),  # money budgets' counters, before a reservation and in usage.get
        ("bedrock:CountTokens", "counted:*"),  # a chat's input counted before it is admitted
        ("dynamodb:GetItem", "table:sessions"), ("dynamodb:PutItem", "table:sessions"),
        ("dynamodb:UpdateItem", "table:sessions"), ("dynamodb:DeleteItem", "table:sessions"),
        ("dynamodb:Query", "table:sessions"), ("dynamodb:Query", "index:sessions/byUpdated"),
        ("dynamodb:BatchWriteItem", "table:sessions"),
        ("dynamodb:BatchGetItem", "table:sessions"),  # a storage recount asks which sessions are still live
        ("s3:GetObject", "object:context"), ("s3:PutObject", "object:context"),
        ("s3:GetObjectTagging", "object:context"), ("s3:PutObjectTagging", "object:context"),
        ("s3:DeleteObject", "object:context"), ("s3:ListBucket", "prefix:context"),
        ("kms:Decrypt", "key:context"), ("kms:GenerateDataKey", "key:context"),
        # chat.upload presigns a PUT; chat.send reads the body (a missing one is 404 only with ListBucket).
        ("s3:GetObject", "object:uploads"), ("s3:PutObject", "object:uploads"), ("s3:ListBucket", "prefix:uploads"),
        ("lambda:InvokeFunction", "function:bedrock_worker"), ("lambda:InvokeFunction", "function:github_worker"),
        ("execute-api:ManageConnections", "frames:POST"), ("execute-api:ManageConnections", "frames:DELETE"),
    ],
    "api_handler": [("dynamodb:Query", "table:usage"), ("dynamodb:BatchGetItem", "table:usage")],
    "ws_authorizer": [],  # $connect, which runs after it, asks Cognito about revocation: once per connection
    "rest_authorizer": [("cognito-idp:GetUser", "token:access")],
    "bedrock_worker": [
        # The record read and moved through its statuses; a chat's frames kept (PutItem) for chat.resume.
        ("dynamodb:GetItem", "table:requests"), ("dynamodb:PutItem", "table:requests"),
        ("dynamodb:UpdateItem", "table:requests"),
        ("dynamodb:UpdateItem", "table:usage"), ("dynamodb:PutItem", "table:usage"),  # settlement (transaction)
        ("dynamodb:GetItem", "table:sessions"), ("dynamodb:PutItem", "table:sessions"),
        ("dynamodb:UpdateItem", "table:sessions"), ("dynamodb:Query", "table:sessions"),
        ("dynamodb:DeleteItem", "table:sessions"),  # an exchange appended into a session deleted meanwhile, undone
        ("s3:GetObject", "object:context"), ("s3:PutObject", "object:context"),
        ("s3:GetObjectTagging", "object:context"), ("s3:PutObjectTagging", "object:context"),
        ("s3:DeleteObject", "object:context"),  # its offloaded content, undone likewise
        ("s3:ListBucket", "prefix:context"),
        ("kms:Decrypt", "key:context"), ("kms:GenerateDataKey", "key:context"),
        ("s3:GetObject", "object:uploads"), ("s3:DeleteObject", "object:uploads"),  # a chat's upload, read once
        ("bedrock:InvokeModelWithResponseStream", "model:*"),
        ("execute-api:ManageConnections", "frames:POST"),
    ],
    "github_worker": [
        ("secretsmanager:GetSecretValue", "secret:github-app"),
        ("dynamodb:UpdateItem", "table:usage"),  # the user's GitHub call budget
        ("execute-api:ManageConnections", "frames:POST"),
    ],
}
BASELINE_ACTIONS = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                    *policies.XRAY_ACTIONS, *policies.VPC_ENI_ACTIONS}
# The only Allow statements with "Resource": "*": AWS accepts nothing narrower for these.
STAR_RESOURCE_ALLOWED = set(policies.XRAY_ACTIONS) | set(policies.VPC_ENI_ACTIONS)


# A small IAM evaluator: wildcards in actions and ARNs, the condition operators we use. -----
def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    for operator, pairs in condition.items():
        for key, expected in pairs.items():
            if key not in context:
                return False
            value = context[key]
            if operator in ("StringEquals", "ArnEquals"):
                ok = value in _list(expected)
            elif operator in ("StringLike", "ArnLike"):
                ok = any(fnmatch.fnmatchcase(value, pattern) for pattern in _list(expected))
            else:
                raise AssertionError(f"evaluator does not know {operator}")
            if not ok:
                return False
    return True


def allows(policy: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    allowed = False
    for statement in policy["Statement"]:
        if not any(fnmatch.fnmatch(action.lower(), a.lower()) for a in _list(statement["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _list(statement["Resource"])):
            continue
        if "Condition" in statement and not _condition_holds(statement["Condition"], context or {}):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


# Fixtures -----------------------------------------------------------------------------------
def deployment(stage: str, api_id: str | None = "api0123456") -> policies.Deployment:
    return policies.Deployment(
        stage=STAGES[stage], account="123456789012", region="us-east-1",
        context_key_arn="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        github_secret_arn=f"arn:aws:secretsmanager:us-east-1:123456789012:secret:llm-ide/{stage}/github-app-Ab12Cd",
        websocket_api_id=api_id)


def requests_for(d: policies.Deployment, action: str, target: str) -> list[tuple[str, dict[str, str]]]:
    """Concrete (resource ARN, request context) pairs a call on a target makes."""
    kind, _, name = target.partition(":")
    sub = "0f1e2d3c-aaaa-bbbb-cccc-111122223333"
    if kind == "table":
        return [(d.table_arns(name)[0], {})]
    if kind == "index":
        table, index = name.split("/")
        return [(f"{d.table_arns(table)[0]}/index/{index}", {})]
    if kind == "object":
        return [(f"{d.bucket_arn(name)}/users/{sub}/context/src/app.py", {})]
    if kind == "prefix":
        return [(d.bucket_arn(name), {"s3:prefix": f"users/{sub}/context/"})]
    if kind == "key":
        return [(d.context_key_arn, {"kms:ViaService": f"s3.{d.region}.amazonaws.com"})]
    if kind == "function":
        return [(d.function_arn(name), {})]
    if kind == "secret":
        return [(d.github_secret_arn, {})]
    if kind == "frames":
        return [(d.arn("execute-api", f"{d.websocket_api_id}/{d.stage.name}/{name}/@connections/Ab1Cd2Ef3G="), {})]
    if kind == "token":
        return []  # authorised by the user's token: there is no resource to grant
    if kind == "counted":
        counted = build_table(d.stage.allowed_models, d.stage.default_model, d.stage.models_json())
        return [(d.arn("bedrock", f"foundation-model/{spec.foundation_id}", account=""), {})
                for spec in counted.models.values() if spec.count_tokens]
    if kind == "model":
        calls: list[tuple[str, dict[str, str]]] = []
        for model in d.stage.allowed_models:
            prefix = profile_prefix(model)
            if prefix is None:
                calls.append((d.arn("bedrock", f"foundation-model/{model}", account=""), {}))
                continue
            profile = d.arn("bedrock", f"inference-profile/{model}")
            calls.append((profile, {}))
            for region in destination_regions(prefix, d.region):
                calls.append((d.arn("bedrock", f"foundation-model/{foundation_id(model)}", region=region,
                                    account=""), {"bedrock:InferenceProfileArn": profile}))
        return calls
    raise AssertionError(f"unknown target {target}")


STAGE_FUNCTIONS = [(s, f) for s in STAGES for f in resources.FUNCTIONS]


def test_the_contract_covers_every_function():
    assert set(CALLS) == set(resources.FUNCTIONS)


# The committed files ------------------------------------------------------------------------
def test_every_policy_file_parses_and_none_is_missing_or_extra():
    found = {p.name for p in CHALICE_DIR.glob("policy-*.json")}
    assert found == {policies.policy_filename(s, f) for s, f in STAGE_FUNCTIONS}
    for name in found:
        document = json.loads((CHALICE_DIR / name).read_text())
        assert document["Version"] == "2012-10-17" and document["Statement"]


def test_config_wires_each_function_to_its_file_with_autogen_off():
    config = json.loads((CHALICE_DIR / "config.json").read_text())
    for stage in STAGES:
        section = config["stages"][stage]
        assert section["autogen_policy"] is False
        assert section["xray"] is STAGES[stage].xray
        assert bool(section.get("subnet_ids")) is STAGES[stage].vpc
        assert bool(section.get("security_group_ids")) is STAGES[stage].vpc
        for function in resources.FUNCTIONS:
            assert section["lambda_functions"][function]["iam_policy_file"] == policies.policy_filename(stage, function)
    assert "iam_policy_file" not in config and config.get("autogen_policy", False) is False


def test_committed_files_are_what_the_generator_writes(tmp_path):
    """No hand edits: the files are regenerated from infra/policies.py and .chalice/infra.json."""
    for stage in STAGES:
        d = policies.load_deployment(stage, facts_file=CHALICE_DIR / "infra.json")
        for path in policies.write_policies(d, chalice_dir=tmp_path):
            assert json.loads(path.read_text()) == json.loads((CHALICE_DIR / path.name).read_text()), path.name


@pytest.mark.parametrize("path", sorted(CHALICE_DIR.glob("policy-*.json")), ids=lambda p: p.name)
def test_no_wildcard_action_and_no_wildcard_resource(path):
    for statement in json.loads(path.read_text())["Statement"]:
        actions = _list(statement["Action"])
        assert not any("*" in action for action in actions), (path.name, statement["Sid"])
        if statement["Effect"] != "Allow":
            continue
        for resource in _list(statement["Resource"]):
            if resource == "*":
                assert set(actions) <= STAR_RESOURCE_ALLOWED, (path.name, statement["Sid"])
                continue
            _, partition, service, region, account, rest = resource.split(":", 5)
            assert partition == "aws" and "*" not in service + region + account, resource
            assert rest.strip("*/:") and not rest.startswith("*"), resource
            # Only a trailing wildcard (object keys, log streams, connection ids) is allowed.
            assert "*" not in rest.rstrip("*"), resource


# The generator, stage by stage --------------------------------------------------------------
@pytest.mark.parametrize("stage,function", STAGE_FUNCTIONS)
def test_each_listed_call_is_allowed(stage, function):
    d = deployment(stage)
    document = policies.policy(d, function)
    for action, target in CALLS[function]:
        for resource, context in requests_for(d, action, target):
            assert allows(document, action, resource, context), (function, action, resource)


@pytest.mark.parametrize("stage,function", STAGE_FUNCTIONS)
def test_nothing_is_allowed_beyond_the_listed_calls(stage, function):
    document = policies.policy(deployment(stage), function)
    granted = {a for s in document["Statement"] if s["Effect"] == "Allow" for a in _list(s["Action"])}
    assert granted - BASELINE_ACTIONS == {action for action, target in CALLS[function] if target != "token:access"}
    assert not granted & set(policies.TOKEN_AUTHORIZED_ACTIONS)


def test_token_authorized_calls_are_exactly_those_the_contract_names_so():
    listed = {action for calls in CALLS.values() for action, target in calls if target == "token:access"}
    assert listed == set(policies.TOKEN_AUTHORIZED_ACTIONS)


@pytest.mark.parametrize("stage,function", STAGE_FUNCTIONS)
def test_no_resource_is_granted_beyond_the_listed_calls(stage, function):
    # Per resource, not only per action: an index, a table or a bucket no listed call touches fails.
    d = deployment(stage)
    wanted: dict[str, list[str]] = {}
    for action, target in CALLS[function]:
        wanted.setdefault(action, []).extend(resource for resource, _ in requests_for(d, action, target))
    for statement in policies.policy(d, function)["Statement"]:
        actions = set(_list(statement["Action"])) - BASELINE_ACTIONS
        if statement["Effect"] != "Allow" or not actions:
            continue
        for pattern in _list(statement["Resource"]):
            assert any(fnmatch.fnmatchcase(resource, pattern) for action in actions
                       for resource in wanted.get(action, [])), (function, statement["Sid"], pattern)


@pytest.mark.parametrize("stage,function", STAGE_FUNCTIONS)
def test_logs_traces_and_network_interfaces(stage, function):
    d = deployment(stage)
    document = policies.policy(d, function)
    own = d.log_group_arn(function)
    other = d.log_group_arn("websocket_connect" if function != "websocket_connect" else "api_handler")
    assert allows(document, "logs:PutLogEvents", f"{own}:log-stream:2026/11/26/[$LATEST]abc")
    assert allows(document, "logs:CreateLogGroup", f"{own}:*")
    assert not allows(document, "logs:PutLogEvents", f"{other}:log-stream:x")
    assert allows(document, "xray:PutTraceSegments", "*") is STAGES[stage].xray
    assert allows(document, "ec2:CreateNetworkInterface", "*") is STAGES[stage].vpc
    # In a VPC, Lambda may manage the ENIs with the role; the function's own code may not.
    code = {"lambda:SourceFunctionArn": d.function_arn(function)}
    assert not allows(document, "ec2:CreateNetworkInterface", "*", code)


def test_only_the_github_worker_reads_the_secret():
    for stage, function in STAGE_FUNCTIONS:
        d = deployment(stage)
        readable = allows(policies.policy(d, function), "secretsmanager:GetSecretValue", d.github_secret_arn)
        assert readable is (function == "github_worker"), (stage, function)


def test_frames_go_only_to_this_api_and_stage():
    d = deployment("prod")
    document = policies.policy(d, "bedrock_worker")
    assert allows(document, "execute-api:ManageConnections",
                  d.arn("execute-api", "api0123456/prod/POST/@connections/abc="))
    for other in ("otherapi99/prod/POST/@connections/abc=", "api0123456/dev/POST/@connections/abc=",
                  "api0123456/prod/DELETE/@connections/abc="):
        assert not allows(document, "execute-api:ManageConnections", d.arn("execute-api", other)), other


def test_before_the_first_deploy_no_function_may_post_frames():
    for function in resources.FUNCTIONS:
        document = policies.policy(deployment("prod", api_id=None), function)
        assert "execute-api:ManageConnections" not in json.dumps(document)


def test_bedrock_only_on_allowed_models_and_profiles():
    d = deployment("prod")
    document = policies.policy(d, "bedrock_worker")
    action = "bedrock:InvokeModelWithResponseStream"
    assert not allows(document, action, d.arn("bedrock", "foundation-model/anthropic.claude-opus-4-1-20250805-v1:0",
                                              account=""))
    assert not allows(document, action, d.arn("bedrock", "inference-profile/us.anthropic.claude-opus-4-1-v1:0"))
    # A profile's model in another region: only through the profile, never directly.
    routed = d.arn("bedrock", "foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0", region="us-west-2",
                   account="")
    assert not allows(document, action, routed)
    assert not allows(policies.policy(d, "websocket_message"), action, routed)


def test_a_stage_never_reaches_another_stages_data():
    prod, dev = deployment("prod"), deployment("dev")
    for function in resources.FUNCTIONS:
        document = policies.policy(prod, function)
        for table in resources.TABLES:
            for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"):
                assert not allows(document, action, dev.table_arns(table.key)[0])
        assert not allows(document, "s3:GetObject", f"{dev.bucket_arn('context')}/users/x/context/a")


def test_context_objects_only_under_users_and_only_with_the_key_through_s3():
    d = deployment("prod")
    document = policies.policy(d, "websocket_message")
    assert not allows(document, "s3:GetObject", f"{d.bucket_arn('context')}/admin/secrets.txt")
    # Listing the context bucket with no prefix is what lets S3 answer a missing key's GET/HEAD with
    # 404 (NOT_FOUND) rather than 403; no other bucket may be listed.
    assert allows(document, "s3:ListBucket", d.bucket_arn("context"), {})
    assert not allows(document, "s3:ListBucket", d.bucket_arn("ui"), {})
    assert not allows(document, "kms:Decrypt", d.context_key_arn)  # not directly, only via S3


# Inference profiles of every geography (issue 13, section 7) -----------------------------------
SONNET = "anthropic.claude-sonnet-4-20250514-v1:0"


def profile_deployment(model: str, region: str) -> policies.Deployment:
    stage = dataclasses.replace(STAGES["prod"], allowed_models=(model,), default_model=model)
    return dataclasses.replace(deployment("prod"), stage=stage, region=region)


def model_arn(d: policies.Deployment, region: str) -> str:
    return d.arn("bedrock", f"foundation-model/{SONNET}", region=region, account="")


# A destination each geography's profiles route to that a `us.`-only table got wrong, and a region outside it.
@pytest.mark.parametrize("geography, source, inside, outside", [
    ("eu", "eu-west-1", ["eu-north-1", "eu-south-2", "eu-central-2", "eu-west-2"], ["us-east-1", "ap-southeast-1"]),
    ("apac", "ap-southeast-1", ["ap-northeast-3", "ap-south-2", "ap-southeast-4", "me-central-1"],
     ["eu-west-1", "us-west-2"]),
    ("jp", "ap-northeast-1", ["ap-northeast-1", "ap-northeast-3"], ["ap-northeast-2", "ap-southeast-1"]),
    ("au", "ap-southeast-2", ["ap-southeast-2", "ap-southeast-4"], ["ap-southeast-1", "ap-northeast-1"]),
    ("us", "us-east-1", ["us-east-1", "us-east-2", "us-west-1", "us-west-2"], ["eu-west-1", "ca-central-1"]),
])
def test_a_profile_reaches_its_model_in_each_destination_region_of_its_geography_only(geography, source, inside,
                                                                                      outside):
    d = profile_deployment(f"{geography}.{SONNET}", source)
    document = policies.policy(d, "bedrock_worker")
    action = "bedrock:InvokeModelWithResponseStream"
    profile = d.arn("bedrock", f"inference-profile/{geography}.{SONNET}")
    assert allows(document, action, profile)
    through = {"bedrock:InferenceProfileArn": profile}
    for region in inside:
        assert allows(document, action, model_arn(d, region), through), region
        assert not allows(document, action, model_arn(d, region)), region  # only through the profile
    for region in outside:
        assert not allows(document, action, model_arn(d, region), through), region
    # Never the profile id as if it were a model id.
    assert f"foundation-model/{geography}." not in json.dumps(document)


def test_a_global_profile_reaches_its_model_on_the_region_less_arn_and_in_the_source_region():
    d = profile_deployment(f"global.{SONNET}", "eu-west-1")
    document = policies.policy(d, "bedrock_worker")
    action = "bedrock:InvokeModelWithResponseStream"
    profile = d.arn("bedrock", f"inference-profile/global.{SONNET}")
    through = {"bedrock:InferenceProfileArn": profile}
    assert allows(document, action, profile)
    assert allows(document, action, f"arn:aws:bedrock:::foundation-model/{SONNET}", through)
    assert allows(document, action, model_arn(d, "eu-west-1"), through)
    assert not allows(document, action, f"arn:aws:bedrock:::foundation-model/{SONNET}")
    assert not allows(document, action, model_arn(d, "us-east-1"), through)
    assert "foundation-model/global." not in json.dumps(document)


def test_the_geographies_are_the_model_tables_and_none_is_guessed():
    # Every prefix the app's model table strips (chalicelib/models.py) is one the policies know, or refuse.
    assert {f"{g}." for g in (*PROFILE_REGIONS, GLOBAL, *UNLISTED_GEOGRAPHIES)} == set(PROFILE_PREFIXES)
    assert not set(PROFILE_REGIONS) & UNLISTED_GEOGRAPHIES
    for prefix in PROFILE_PREFIXES:
        assert profile_prefix(f"{prefix}{SONNET}") == prefix[:-1] and foundation_id(f"{prefix}{SONNET}") == SONNET
    for geography in UNLISTED_GEOGRAPHIES:
        with pytest.raises(ValueError, match="not recorded in PROFILE_REGIONS"):
            policies.policy(profile_deployment(f"{geography}.{SONNET}", "ca-central-1"), "bedrock_worker")
