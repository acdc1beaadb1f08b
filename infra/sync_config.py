"""Write a deployed stage's CDK outputs into `.chalice/config.json` and regenerate its policies.

    cdk deploy --all -c environment=prod --outputs-file cdk-outputs.json
    python -m infra.sync_config --stage prod --outputs infra/cdk-outputs.json

It sets the stage's environment variables (table, bucket and secret names, the context
bucket's KMS key, Cognito ids and issuer, worker function names, models, the session and
context-file TTLs, the WebSocket API's Management API endpoint once the API exists),
X-Ray, the VPC subnets and security group, one policy file per function with
`autogen_policy: false`, records the deployment facts in `.chalice/infra.json` (with the REST
API's web ACL ARN, which `python -m infra.post_deploy` associates) and rewrites
the policy files with the real account, region and ARNs.
The WebSocket API id comes from `.chalice/deployed/<stage>.json` once `chalice deploy` made
the API: on the very first deploy, run this, `chalice deploy`, this again, `chalice deploy`.
The CDK app reads the REST API's URL from the same file (`health_url`) for the health canary.
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from infra import outputs as names
from infra import policies, resources
from infra.stages import Stage, profile_prefix, usable_from
from infra.stages import stage as get_stage


class SyncError(Exception):
    """The outputs file does not describe a complete deployment of the stage."""


def stack_outputs(all_outputs: dict[str, dict[str, str]], stage: str) -> dict[str, str]:
    """The outputs of the stage's stacks, merged (output names are unique across them)."""
    merged: dict[str, str] = {}
    for part in names.STACK_PARTS:
        merged.update(all_outputs.get(names.stack_name(stage, part), {}))
    return merged


def _require(out: dict[str, str], key: str) -> str:
    value = out.get(key)
    if not value:
        raise SyncError(f"output {key!r} is missing: did `cdk deploy --all --outputs-file` run for this stage?")
    return value


def _check_models(stage: Stage, region: str) -> None:
    for model in stage.allowed_models:
        geography = profile_prefix(model)
        if geography is not None and not usable_from(geography, region):
            raise SyncError(f"model {model} is a {geography!r} inference profile, unusable from {region}: "
                            f"edit allowed_models in infra/stages.py")


def _deployed(chalice_dir: Path, stage: str, resource_type: str, key: str) -> str | None:
    """A value `chalice deploy` recorded for one of the stage's resources, if it has run."""
    path = chalice_dir / "deployed" / f"{stage}.json"
    if not path.exists():
        return None
    for resource in json.loads(path.read_text()).get("resources", []):
        if resource.get("resource_type") == resource_type:
            return resource[key]
    return None


def websocket_api_id(chalice_dir: Path, stage: str) -> str | None:
    """The id of the WebSocket API that `chalice deploy` recorded, if it has run."""
    return _deployed(chalice_dir, stage, "websocket_api", "websocket_api_id")


def management_api_endpoint(chalice_dir: Path, stage: str, *, api_id: str | None, region: str,
                            api_stage: str) -> str | None:
    """The deployed WebSocket API's Management API endpoint,
    `https://<api id>.execute-api.<region>.amazonaws.com/<stage>`: from the URL `chalice deploy`
    recorded, else from the API id given; None before the API exists.

    The app posts frames there (MANAGEMENT_API_ENDPOINT), never to the event's domain name,
    which is a custom domain's when one is mapped to the API.
    """
    url = _deployed(chalice_dir, stage, "websocket_api", "websocket_api_url")
    if url and (api_id is None or f"//{api_id}." in url):
        parts = urllib.parse.urlsplit(url)
        return f"https://{parts.netloc}{parts.path.rstrip('/')}"
    if api_id:
        return f"https://{api_id}.execute-api.{region}.amazonaws.com/{api_stage}"
    return None


def rest_api_url(chalice_dir: Path, stage: str) -> str | None:
    """The REST API's URL (`https://<id>.execute-api.<region>.amazonaws.com/<stage>/`), if `chalice deploy` ran."""
    return _deployed(chalice_dir, stage, "rest_api", "rest_api_url")


def health_url(*, stage: str, given: str | None = None, chalice_dir: Path = policies.CHALICE_DIR) -> str | None:
    """The URL the availability canary GETs: `given` (the CDK context `health_url`), else the REST API's
    `/health` once `chalice deploy` ran; None before that. Only an https URL is accepted."""
    url = given or (f"{base.rstrip('/')}/health" if (base := rest_api_url(chalice_dir, stage)) else None)
    if url is None:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"health_url must be an https URL without query, not {url!r}")
    return url


def environment(stage: Stage, out: dict[str, str]) -> dict[str, str]:
    env = {"STAGE": stage.name}
    for table in resources.TABLES:
        env[table.env_var] = _require(out, names.table_name(table.key))
    for bucket in resources.BUCKETS:
        if not bucket.cdn:  # the app never touches the UI bucket
            env[bucket.env_var] = _require(out, names.bucket_name(bucket.key))
    for secret in resources.SECRETS:
        env[secret.env_var] = _require(out, names.secret_arn(secret.key))
    env.update({
        "COGNITO_USER_POOL_ID": _require(out, names.USER_POOL_ID),
        "COGNITO_APP_CLIENT_IDS": _require(out, names.USER_POOL_CLIENT_ID),
        "COGNITO_ISSUER": _require(out, names.ISSUER),
        # SSE-KMS with the stage's customer key on every put, copy and presigned PUT (unset, the
        # app would send SSE-S3, which overrides the bucket's default key).
        "CONTEXT_KMS_KEY_ID": _require(out, names.CONTEXT_KEY_ARN),
        # The bucket's expiry rules are built from the same stage settings.
        "SESSION_TTL_DAYS": str(stage.session_ttl_days),
        "CONTEXT_FILE_TTL_DAYS": str(stage.context_file_ttl_days),
        "BEDROCK_WORKER_FUNCTION": resources.function_name(stage.name, "bedrock_worker"),
        "GITHUB_WORKER_FUNCTION": resources.function_name(stage.name, "github_worker"),
        "ALLOWED_MODELS": ",".join(stage.allowed_models),
        "DEFAULT_MODEL_ID": stage.default_model,
        **({"MODELS": models} if (models := stage.models_json()) else {}),
        "TRACING_ENABLED": "true" if stage.xray else "false",  # the SDK follows Lambda's active tracing
    })
    return env


def update_stage_config(config: dict[str, Any], stage: Stage, out: dict[str, str], *,
                        management_endpoint: str | None = None) -> dict[str, Any]:
    """The stage's section of .chalice/config.json with the outputs applied; other keys kept.

    `management_endpoint` is the deployed WebSocket API's (None before the first deploy: the app
    then derives it from each event's API id)."""
    section = config.setdefault("stages", {}).setdefault(stage.name, {})
    section.setdefault("api_gateway_stage", stage.name)
    # A REGIONAL REST API, not Chalice's default edge-optimized one: its WAF web ACL (the waf stack)
    # then sees the clients' own addresses, which its per-IP rate rule counts.
    section["api_gateway_endpoint_type"] = "REGIONAL"
    variables = section.setdefault("environment_variables", {})
    variables.update(environment(stage, out))
    if management_endpoint:
        variables["MANAGEMENT_API_ENDPOINT"] = management_endpoint
    else:
        variables.pop("MANAGEMENT_API_ENDPOINT", None)
    section["xray"] = stage.xray
    # The same tags as the CDK stacks, so Cost Explorer can split the bill by stage.
    section.setdefault("tags", {}).update({"project": resources.PROJECT, "stage": stage.name})
    section["autogen_policy"] = False
    if stage.vpc:
        section["subnet_ids"] = _require(out, names.SUBNET_IDS).split(",")
        section["security_group_ids"] = [_require(out, names.SECURITY_GROUP_ID)]
    else:
        section.pop("subnet_ids", None)
        section.pop("security_group_ids", None)
    functions = section.setdefault("lambda_functions", {})
    for function in resources.FUNCTIONS:
        functions.setdefault(function, {})["iam_policy_file"] = policies.policy_filename(stage.name, function)
    return section


def sync(*, stage_name: str, outputs_file: Path, chalice_dir: Path = policies.CHALICE_DIR,
         api_id: str | None = None) -> policies.Deployment:
    stage = get_stage(stage_name)
    out = stack_outputs(json.loads(outputs_file.read_text()), stage_name)
    region = _require(out, names.REGION)
    _check_models(stage, region)
    api_web_acl_arn = _require(out, names.API_WEB_ACL_ARN)  # for post_deploy, which associates it
    deployment = policies.Deployment(
        stage=stage, account=_require(out, names.ACCOUNT), region=region,
        context_key_arn=_require(out, names.CONTEXT_KEY_ARN),
        github_secret_arn=_require(out, names.secret_arn("github-app")),
        websocket_api_id=api_id or websocket_api_id(chalice_dir, stage_name),
    )
    config_path = chalice_dir / "config.json"
    config = json.loads(config_path.read_text())
    api_stage = config.get("stages", {}).get(stage_name, {}).get("api_gateway_stage", stage_name)
    endpoint = management_api_endpoint(chalice_dir, stage_name, api_id=deployment.websocket_api_id, region=region,
                                       api_stage=api_stage)
    update_stage_config(config, stage, out, management_endpoint=endpoint)
    config_path.write_text(json.dumps(config, indent=2) + "\n")

    facts_path = chalice_dir / "infra.json"
    facts = json.loads(facts_path.read_text()) if facts_path.exists() else {}
    facts[stage_name] = {"account": deployment.account, "region": deployment.region,
                         "contextKeyArn": deployment.context_key_arn,
                         "githubSecretArn": deployment.github_secret_arn,
                         "apiWebAclArn": api_web_acl_arn}
    if deployment.websocket_api_id:
        facts[stage_name]["websocketApiId"] = deployment.websocket_api_id
    facts_path.write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    policies.write_policies(deployment, chalice_dir=chalice_dir)
    return deployment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--outputs", type=Path, default=Path("infra/cdk-outputs.json"),
                        help="the file written by `cdk deploy --outputs-file`")
    parser.add_argument("--chalice-dir", type=Path, default=policies.CHALICE_DIR)
    parser.add_argument("--websocket-api-id", help="overrides .chalice/deployed/<stage>.json")
    args = parser.parse_args(argv)
    try:
        deployment = sync(stage_name=args.stage, outputs_file=args.outputs, chalice_dir=args.chalice_dir,
                          api_id=args.websocket_api_id)
    except (SyncError, OSError, ValueError) as exc:
        print(f"sync_config: {exc}", file=sys.stderr)
        return 1
    print(f"stage {args.stage}: .chalice/config.json and {len(resources.FUNCTIONS)} policy files written "
          f"for account {deployment.account} in {deployment.region}")
    if deployment.websocket_api_id is None:
        print("no WebSocket API yet: the policies grant no execute-api:ManageConnections. After the first "
              f"`chalice deploy --stage {args.stage}`, run this again and deploy again.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
