"""Cold start: what importing the app costs over a bare `import boto3, chalice`.

Each sample is a fresh interpreter (as a new Lambda container), with the dev
stage's environment and tracing off, alternating the two so drift hits both.
Prints both medians, the difference (goal: at most 80 ms), which heavy modules
the import pulled in, and the Lambda bundle size from `chalice package`. A third
figure adds what the message handler loads on its first frame (the stores, the
limits and the action table, which app.py defers so the authorizers, /health and
the workers' imports of app.py do not pay for them), and a fourth what tracing
costs where it is on (staging, prod): the SDK loaded and botocore patched, in
Lambda's environment (outside Lambda the SDK would also build a sampling client).

    .venv/bin/python bench/coldstart.py [--runs 21] [--no-package]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_MS = 80.0
LAMBDA_TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
HEAVY = ("jwt", "cryptography", "aws_xray_sdk", "chalicelib.github", "boto3.resources")


def stage_environment(stage: str = "dev") -> dict[str, str]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(config["stages"][stage]["environment_variables"])
    env["TRACING_ENABLED"] = "false"
    return env


def time_import(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    return (time.perf_counter() - started) * 1000


def heavy_modules_loaded(env: dict[str, str]) -> list[str]:
    code = f"import sys, app; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return [m for m in out.stdout.strip().split(",") if m]


def bundle_size(stage: str) -> int:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([str(Path(sys.executable).with_name("chalice")), "package", "--stage", stage, out],
                       cwd=ROOT, check=True, capture_output=True,
                       env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"})
        archive = Path(out) / "deployment.zip"
        with zipfile.ZipFile(archive) as zf:
            unzipped = sum(info.file_size for info in zf.infolist())
        print(f"Lambda bundle ({stage}): {archive.stat().st_size / 1e6:.2f} MB zipped, "
              f"{unzipped / 1e6:.2f} MB unzipped")
        return archive.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--no-package", action="store_true", help="skip `chalice package`")
    args = parser.parse_args()
    env = stage_environment()
    baseline, app, message, traced = [], [], [], []
    message_code = "import boto3, chalice, app, chalicelib.dispatch.handlers"
    traced_code = "import boto3, chalice, app; from chalicelib.observability import tracing; tracing.start()"
    traced_env = {**env, "TRACING_ENABLED": "true", "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",
                  "LAMBDA_TASK_ROOT": str(ROOT), "_X_AMZN_TRACE_ID": LAMBDA_TRACE}
    time_import(message_code, env)  # warm the OS file cache and bytecode
    time_import(traced_code, traced_env)
    for _ in range(args.runs):
        baseline.append(time_import("import boto3, chalice", env))
        app.append(time_import("import boto3, chalice, app", env))
        message.append(time_import(message_code, env))
        traced.append(time_import(traced_code, traced_env))
    base_ms, app_ms, message_ms, traced_ms = (statistics.median(x) for x in (baseline, app, message, traced))
    print(f"import boto3, chalice        median {base_ms:7.1f} ms  ({args.runs} fresh interpreters each)")
    print(f"import app (dev, no tracing) median {app_ms:7.1f} ms")
    print(f"app over baseline: {app_ms - base_ms:+.1f} ms (goal <= {GOAL_MS:.0f} ms); ratio {app_ms / base_ms:.3f}")
    print(f"app + the message handler's modules median {message_ms:7.1f} ms "
          f"({message_ms - base_ms:+.1f} ms over baseline)")
    print(f"app + tracing on, in Lambda's environment median {traced_ms:7.1f} ms "
          f"({traced_ms - app_ms:+.1f} ms over the app without tracing)")
    print(f"heavy modules imported by app: {', '.join(heavy_modules_loaded(env)) or 'none'}")
    if not args.no_package:
        bundle_size("dev")


if __name__ == "__main__":
    main()
