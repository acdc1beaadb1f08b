"""Least-privilege IAM policies of the Chalice functions: the one source of the policy files.

`python -m infra.policies --stage prod` writes `.chalice/policy-<stage>-<function>.json` for
every function, from the stage's settings (`infra/stages.py`), the resource names
(`infra/resources.py`) and the facts only a deployment knows (account, region, the KMS key
and secret ARNs, the WebSocket API id), which `python -m infra.sync_config` records in
`.chalice/infra.json` and passes here. Each function gets only the actions it calls, on the
ARNs of its own stage. The one kind of `"Resource": "*"` is what AWS accepts nothing else
for: X-Ray's PutTraceSegments/PutTelemetryRecords and the VPC network interface actions.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.models import build_table
from infra import resources
from infra.stages import Stage, destination_regions, profile_model, profile_prefix
from infra.stages import stage as get_stage

CHALICE_DIR = Path(__file__).resolve().parent.parent / ".chalice"
FACTS_FILE = CHALICE_DIR / "infra.json"

# AWS accepts only "*" as the resource of these actions.
XRAY_ACTIONS = ("xray:PutTelemetryRecords", "xray:PutTraceSegments")
# What Lambda needs to attach a function to a VPC (the actions of the managed policy
# AWSLambdaVPCAccessExecutionRole); DescribeNetworkInterfaces works only on "*".
VPC_ENI_ACTIONS = (
    "ec2:AssignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:UnassignPrivateIpAddresses",
)
CONTEXT_PREFIX = "users/"  # every user's objects live under users/<sub>/
# Calls Cognito authorises with the user's own access token, not with the caller's role: "Amazon
# Cognito doesn't evaluate IAM policies in requests for this API operation" (Cognito API reference,
# GetUser), so no policy grants them. `$connect` and the REST authorizer make it (the revocation check).
TOKEN_AUTHORIZED_ACTIONS = ("cognito-idp:GetUser",)


@dataclass(frozen=True)
class Deployment:
    """What a stage's ARNs are made of, besides the names in infra/resources.py."""

    stage: Stage
    account: str
    region: str
    context_key_arn: str
    github_secret_arn: str
    # Known only after the first `chalice deploy`; until then no function may post frames.
    websocket_api_id: str | None = None
    partition: str = "aws"

    # ARNs of the stage's resources.
    def arn(self, service: str, resource: str, *, region: str | None = None, account: str | None = None) -> str:
        region = self.region if region is None else region
        account = self.account if account is None else account
        return f"arn:{self.partition}:{service}:{region}:{account}:{resource}"

    def table_arns(self, key: str, *, indexes: tuple[str, ...] = ()) -> list[str]:
        table = resources.table(key)
        known = {index.name for index in table.indexes}
        if not set(indexes) <= known:
            raise ValueError(f"table {key!r} has no index {sorted(set(indexes) - known)}")
        arn = self.arn("dynamodb", f"table/{table.physical_name(self.stage.name)}")
        return [arn] + [f"{arn}/index/{name}" for name in indexes]

    def bucket_arn(self, key: str) -> str:
        return f"arn:{self.partition}:s3:::{resources.bucket(key).physical_name(self.stage.name, self.account)}"

    def function_arn(self, function: str) -> str:
        return self.arn("lambda", f"function:{resources.function_name(self.stage.name, function)}")

    def log_group_arn(self, function: str) -> str:
        return self.arn("logs", f"log-group:/aws/lambda/{resources.function_name(self.stage.name, function)}")

    def connections_arns(self, *methods: str) -> list[str]:
        api, stage = self.websocket_api_id, self.stage.name
        return [self.arn("execute-api", f"{api}/{stage}/{method}/@connections/*") for method in methods]


Statement = dict[str, Any]


def _allow(sid: str, actions: list[str] | tuple[str, ...], resources_: list[str] | str,
           condition: dict | None = None) -> Statement:
    statement: Statement = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources_}
    if condition:
        statement["Condition"] = condition
    return statement


def _table(d: Deployment, key: str, *actions: str, indexes: tuple[str, ...] = ()) -> Statement:
    """`actions` on the table, and on the named indexes (which only Query reads)."""
    if indexes and "dynamodb:Query" not in actions:
        raise ValueError("an index is only read by Query")
    return _allow(f"{key.capitalize()}Table", actions, d.table_arns(key, indexes=indexes))


def _context_objects(d: Deployment, *actions: str) -> list[Statement]:
    """Objects under users/ in the context bucket, and the customer key that encrypts them."""
    key_actions = ["kms:Decrypt"] + (["kms:GenerateDataKey"] if "s3:PutObject" in actions else [])
    return [
        _allow("ContextObjects", actions, f"{d.bucket_arn('context')}/{CONTEXT_PREFIX}*"),
        # SSE-KMS: S3 uses the caller's permission on the key, and only S3 may use it so.
        _allow("ContextKey", key_actions, d.context_key_arn,
               {"StringEquals": {"kms:ViaService": f"s3.{d.region}.amazonaws.com"}}),
    ]


def _upload_objects(d: Deployment, *actions: str) -> Statement:
    """Chat request bodies (chat.upload) under users/ in the upload bucket; the context key (granted with the
    context objects) encrypts them."""
    return _allow("UploadObjects", actions, f"{d.bucket_arn('uploads')}/{CONTEXT_PREFIX}*")


def _post_frames(d: Deployment, *methods: str) -> list[Statement]:
    if d.websocket_api_id is None:
        return []
    return [_allow("ManageConnections", ["execute-api:ManageConnections"], d.connections_arns(*methods))]


def _bedrock(d: Deployment) -> list[Statement]:
    actions = ["bedrock:InvokeModelWithResponseStream"]  # ConverseStream, the only model call the worker makes
    direct = [m for m in d.stage.allowed_models if profile_prefix(m) is None]
    profiles = {m: prefix for m in d.stage.allowed_models if (prefix := profile_prefix(m)) is not None}
    statements = []
    if direct:
        statements.append(_allow("FoundationModels", actions, [
            d.arn("bedrock", f"foundation-model/{m}", account="") for m in direct]))
    if profiles:
        profile_arns = [d.arn("bedrock", f"inference-profile/{p}") for p in profiles]
        statements.append(_allow("InferenceProfiles", actions, profile_arns))
        # A profile routes to its model in any of its geography's destination regions (a global
        # profile: the source region and the region-less ARN); allow that only through the profile.
        routed = [d.arn("bedrock", f"foundation-model/{profile_model(p)}", region=region, account="")
                  for p, prefix in profiles.items() for region in destination_regions(prefix, d.region)]
        statements.append(_allow("ModelsThroughProfiles", actions, list(dict.fromkeys(routed)),
                                 {"StringEquals": {"bedrock:InferenceProfileArn": profile_arns}}))
    return statements


def _count_tokens(d: Deployment) -> list[Statement]:
    """CountTokens (chat.send and chat.countTokens count a chat's input before it is admitted) takes a foundation
    model id, never a profile: the foundation models of the allowed models whose table entry says it counts them."""
    table = build_table(d.stage.allowed_models, d.stage.default_model, d.stage.models_json())
    counted = sorted({spec.foundation_id for spec in table.models.values() if spec.count_tokens})
    if not counted:
        return []
    return [_allow("CountTokens", ["bedrock:CountTokens"],
                   [d.arn("bedrock", f"foundation-model/{model}", account="") for model in counted])]


def _connect(d: Deployment) -> list[Statement]:
    # The user's list of open connections is read, then written with the connection's item in one
    # TransactWriteItems (two Puts, which IAM checks as PutItem). And GetUser, the revocation check,
    # authorised by the user's token (TOKEN_AUTHORIZED_ACTIONS).
    return [_table(d, "connections", "dynamodb:GetItem", "dynamodb:PutItem")]


def _disconnect(d: Deployment) -> list[Statement]:
    # The connection's item is deleted, then taken out of its user's list.
    return [_table(d, "connections", "dynamodb:DeleteItem", "dynamodb:UpdateItem")]


def _context_listing(d: Deployment) -> Statement:
    # Without s3:ListBucket, S3 answers a GET or HEAD of a missing key with 403, not 404, so a
    # missing context file would be an INTERNAL error instead of NOT_FOUND. A condition on
    # s3:prefix does not help: those requests carry no prefix, so S3 would still answer 403.
    # Listing adds no reach (the role reads every object under users/ already); each user's
    # isolation is the app's: every key it builds starts with the verified sub.
    return _allow("ContextListing", ["s3:ListBucket"], d.bucket_arn("context"))


def _message(d: Deployment) -> list[Statement]:
    return [
        # Each frame is counted in its connection's item by the UpdateItem that reads it.
        _table(d, "connections", "dynamodb:GetItem", "dynamodb:UpdateItem"),
        _table(d, "requests", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
        # chat.send reserves with UpdateItem, or (money budgets) reads the counters with BatchGetItem and
        # reserves in a TransactWriteItems of Updates; a chat that cannot start is settled to zero in a
        # TransactWriteItems, whose Put and Updates IAM checks as PutItem and UpdateItem. usage.get reads
        # the hour records (Query) and the month records (BatchGetItem).
        _table(d, "usage", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"),
        # session.list reads the byUpdated index; a recount of a user's storage asks which of their sessions are
        # still live (BatchGetItem), to drop what was left under deleted ones.
        _table(d, "sessions", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem",
               "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem",
               indexes=("byUpdated",)),
        # Presigned uploads are signed with this role, so it needs PutObject itself. Session-scoped
        # objects are written with tags (PutObjectTagging) and re-written in place with their tags
        # when the session's TTL moves (CopyObject: GetObject/GetObjectTagging, PutObject/PutObjectTagging).
        *_context_objects(d, "s3:DeleteObject", "s3:GetObject", "s3:GetObjectTagging", "s3:PutObject",
                          "s3:PutObjectTagging"),
        _context_listing(d),
        # chat.upload presigns the PUT with this role; chat.send reads the body before the ack, and a body
        # never uploaded must be NOT_FOUND (404), which S3 answers only to a role that may list the bucket.
        _upload_objects(d, "s3:GetObject", "s3:PutObject"),
        _allow("UploadListing", ["s3:ListBucket"], d.bucket_arn("uploads")),
        _allow("InvokeWorkers", ["lambda:InvokeFunction"],
               [d.function_arn("bedrock_worker"), d.function_arn("github_worker")]),
        *_count_tokens(d),
        *_post_frames(d, "POST", "DELETE"),
    ]


def _api(d: Deployment) -> list[Statement]:
    return [_table(d, "usage", "dynamodb:BatchGetItem", "dynamodb:Query")]  # GET /usage (hour and month records)


def _authorizer(d: Deployment) -> list[Statement]:
    # Verifies JWTs against Cognito's public JWKS; the REST one also asks Cognito's GetUser whether the
    # token is revoked, which the token itself authorises (TOKEN_AUTHORIZED_ACTIONS): no permission.
    return []


def _bedrock_worker(d: Deployment) -> list[Statement]:
    return [
        # The chat's record read (cancel, resume) and moved; its stream frames kept for chat.resume (PutItem).
        _table(d, "requests", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
        # Settlement: one TransactWriteItems of a Put (the settled marker) and Updates.
        _table(d, "usage", "dynamodb:PutItem", "dynamodb:UpdateItem"),
        # History (GetItem, Query), the exchange appended (UpdateItem, PutItem), the TTL moved (Query, UpdateItem);
        # an exchange appended into a session deleted meanwhile is removed again (DeleteItem).
        _table(d, "sessions", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query",
               "dynamodb:UpdateItem"),
        # Context files and offloaded history read; a long reply offloaded (a tagged PutObject), and deleted
        # again if its session was deleted meanwhile (DeleteObjects); the session's objects re-written in place
        # when its TTL moves (ListBucket, CopyObject).
        *_context_objects(d, "s3:DeleteObject", "s3:GetObject", "s3:GetObjectTagging", "s3:PutObject",
                          "s3:PutObjectTagging"),
        _context_listing(d),
        # A chat's uploaded body: read (If-Match the ETag the handler checked), then deleted.
        _upload_objects(d, "s3:DeleteObject", "s3:GetObject"),
        *_bedrock(d),
        *_post_frames(d, "POST"),
    ]


def _github_worker(d: Deployment) -> list[Statement]:
    return [
        _allow("GithubSecret", ["secretsmanager:GetSecretValue"], d.github_secret_arn),
        # The user's GitHub call budget: reserved and settled with UpdateItem on their hour record.
        _table(d, "usage", "dynamodb:UpdateItem"),
        *_post_frames(d, "POST"),
    ]


FUNCTION_STATEMENTS: dict[str, Callable[[Deployment], list[Statement]]] = {
    "websocket_connect": _connect,
    "websocket_message": _message,
    "websocket_disconnect": _disconnect,
    "api_handler": _api,
    "ws_authorizer": _authorizer,
    "rest_authorizer": _authorizer,
    "bedrock_worker": _bedrock_worker,
    "github_worker": _github_worker,
}
assert set(FUNCTION_STATEMENTS) == set(resources.FUNCTIONS), "a function without a policy"


def _baseline(d: Deployment, function: str) -> list[Statement]:
    """What every function needs to run: its own log group, traces, and the VPC's ENIs."""
    log_group = d.log_group_arn(function)
    statements = [
        _allow("OwnLogGroup", ["logs:CreateLogGroup"], f"{log_group}:*"),
        _allow("OwnLogStreams", ["logs:CreateLogStream", "logs:PutLogEvents"], f"{log_group}:log-stream:*"),
    ]
    if d.stage.xray:
        statements.append(_allow("XRay", XRAY_ACTIONS, "*"))
    if d.stage.vpc:
        statements.append(_allow("VpcNetworkInterfaces", VPC_ENI_ACTIONS, "*"))
        # Lambda uses the role to manage the ENIs; the function's own code may not.
        statements.append({
            "Sid": "NoEniCallsFromCode", "Effect": "Deny", "Action": list(VPC_ENI_ACTIONS), "Resource": "*",
            "Condition": {"ArnEquals": {"lambda:SourceFunctionArn": d.function_arn(function)}},
        })
    return statements


def policy(d: Deployment, function: str) -> dict[str, Any]:
    return {"Version": "2012-10-17",
            "Statement": _baseline(d, function) + FUNCTION_STATEMENTS[function](d)}


def policy_filename(stage: str, function: str) -> str:
    return f"policy-{stage}-{function}.json"


def write_policies(d: Deployment, *, chalice_dir: Path = CHALICE_DIR) -> list[Path]:
    written = []
    for function in resources.FUNCTIONS:
        path = chalice_dir / policy_filename(d.stage.name, function)
        path.write_text(json.dumps(policy(d, function), indent=2) + "\n")
        written.append(path)
    return written


def load_deployment(stage: str, *, facts_file: Path = FACTS_FILE) -> Deployment:
    """The stage's deployment facts recorded by the sync step."""
    try:
        facts = json.loads(facts_file.read_text())[stage]
    except (OSError, KeyError, ValueError) as exc:
        raise SystemExit(f"no facts for stage {stage!r} in {facts_file}: run python -m infra.sync_config "
                         f"--stage {stage} first ({exc})") from None
    return Deployment(stage=get_stage(stage), account=facts["account"], region=facts["region"],
                      context_key_arn=facts["contextKeyArn"], github_secret_arn=facts["githubSecretArn"],
                      websocket_api_id=facts.get("websocketApiId"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--chalice-dir", type=Path, default=CHALICE_DIR)
    args = parser.parse_args(argv)
    deployment = load_deployment(args.stage, facts_file=args.chalice_dir / "infra.json")
    for path in write_policies(deployment, chalice_dir=args.chalice_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
