"""The web client for a deployed stage: `web/` plus the `config.json` it reads, ready to upload.

    python -m infra.web_bundle --stage prod --outputs infra/cdk-outputs.json --out build/web
    aws s3 sync build/web/ s3://<UiBucketName>/ --delete

The page learns where the APIs and Cognito are from `config.json` beside it (the local stack
serves one too). Its values come from the CDK outputs (Cognito) and from
`.chalice/deployed/<stage>.json` (the APIs' URLs), so run this after `chalice deploy`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from infra import outputs as names
from infra import policies
from infra.sync_config import SyncError, stack_outputs

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def deployed_urls(chalice_dir: Path, stage: str) -> tuple[str, str]:
    """(the WebSocket API's URL, the REST API's URL) that `chalice deploy` recorded for the stage."""
    path = chalice_dir / "deployed" / f"{stage}.json"
    if not path.exists():
        raise SyncError(f"{path} not found: run `chalice deploy --stage {stage}` first")
    urls = {resource.get("resource_type"): resource for resource in json.loads(path.read_text()).get("resources", [])}
    try:
        return (urls["websocket_api"]["websocket_api_url"].rstrip("/"), urls["rest_api"]["rest_api_url"].rstrip("/"))
    except KeyError as missing:
        raise SyncError(f"{path} has no {missing.args[0]!r}: is it a complete deployment of the stage?") from None


def web_config(out: dict[str, str], websocket_url: str, http_url: str) -> dict[str, Any]:
    """The same document the local stack serves, for AWS (no Cognito endpoint: the regional one)."""
    for key in (names.REGION, names.USER_POOL_ID, names.USER_POOL_CLIENT_ID):
        if not out.get(key):
            raise SyncError(f"output {key!r} is missing: did `cdk deploy --all --outputs-file` run for this stage?")
    if not websocket_url.startswith("wss://") or not http_url.startswith("https://"):
        raise SyncError(f"unexpected API URLs {websocket_url!r}, {http_url!r}: expected wss:// and https://")
    return {"websocketUrl": websocket_url, "httpUrl": http_url, "region": out[names.REGION],
            "cognito": {"userPoolId": out[names.USER_POOL_ID], "clientId": out[names.USER_POOL_CLIENT_ID]}}


def build(*, stage: str, outputs_file: Path, out_dir: Path, chalice_dir: Path = policies.CHALICE_DIR,
          web_dir: Path = WEB_DIR) -> dict[str, Any]:
    """Write web/ and its config.json into `out_dir` (emptied first); returns the config."""
    if not outputs_file.exists():
        raise SyncError(f"{outputs_file} not found: run `cdk deploy --all --outputs-file {outputs_file}` first")
    config = web_config(stack_outputs(json.loads(outputs_file.read_text()), stage), *deployed_urls(chalice_dir, stage))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(web_dir, out_dir, ignore=shutil.ignore_patterns("config.json", ".*"))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--outputs", type=Path, default=Path("infra/cdk-outputs.json"),
                        help="the file `cdk deploy --outputs-file` wrote")
    parser.add_argument("--out", type=Path, default=Path("build/web"), help="the directory to upload")
    parser.add_argument("--chalice-dir", type=Path, default=policies.CHALICE_DIR)
    args = parser.parse_args(argv)
    try:
        config = build(stage=args.stage, outputs_file=args.outputs, out_dir=args.out, chalice_dir=args.chalice_dir)
    except SyncError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}/ for {config['websocketUrl']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
