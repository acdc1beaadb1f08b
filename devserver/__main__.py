"""`python -m devserver`: the whole backend on 127.0.0.1, offline. Ctrl-C stops it all."""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import importlib
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import IO

from aiohttp import web

from chalicelib.config import ConfigError, load_settings, read_number
from devserver import aws, aws_calls, github
from devserver.bedrock import BedrockEmulator
from devserver.cognito_front import CognitoFront
from devserver.gateway import IDLE_TIMEOUT_SECONDS, MAX_CONNECTION_SECONDS, Gateway, LambdaRuntime
from devserver.lambda_api import LambdaApi
from devserver.s3_front import S3Front
from infra import web_bundle
from infra.web_csp import content_security_policy

ROOT = Path(__file__).resolve().parent.parent
STAGE = "local"


def _bind(host: str, port: int, variable: str = "PORT") -> socket.socket:
    """A listening socket on host:port (0: a free one), or an exit naming the `variable` that set the port."""
    try:
        return aws.listen(host, port)
    except OSError as exc:
        raise SystemExit(f"devserver: cannot listen on {host}:{port} ({exc.strerror}); "
                         f"set {variable} to another port") from None


def _claim(state_dir: Path) -> IO[str]:
    """Hold the state directory for this stack's life (the lock goes with the process, however it
    ends). A second stack started on the same directory (`make dev` run twice in one clone) is
    refused before it touches anything: it would have replaced, then deleted on its way out, the
    endpoints.json the client finds the first stack by."""
    holder = (state_dir / "devserver.lock").open("a+")
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder.close()
        try:
            running = json.loads((state_dir / "endpoints.json").read_text())["websocketUrl"]
        except (OSError, ValueError, KeyError):
            running = "still starting"
        raise SystemExit(f"devserver: another local stack is running from {state_dir} ({running}): stop it "
                         "(Ctrl-C in its terminal), or give this one a directory of its own (DEV_STATE_DIR)") from None
    return holder


def _epoch_seconds(value: str) -> float:
    try:
        instant = float(value)
    except ValueError:
        instant = math.nan
    if not math.isfinite(instant) or instant <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not epoch seconds (a positive number)")
    return instant


def _settings() -> dict[str, float]:
    """The stack's own variables (docs/CONFIGURATION.md, "The local stack"), each checked before
    anything starts: a bad one stops `make dev` with a message naming it."""
    env = os.environ
    try:
        return {
            "port": read_number(env, "PORT", 8000, int, minimum=0, maximum=65535),
            "moto_port": read_number(env, "MOTO_PORT", 0, int, minimum=0, maximum=65535),
            "bedrock_port": read_number(env, "DEV_BEDROCK_PORT", 0, int, minimum=0, maximum=65535),
            "lambda_timeout_seconds": read_number(env, "DEV_LAMBDA_TIMEOUT_SECONDS", 900.0, float, minimum=1,
                                                  maximum=900),
            "post_latency_ms": read_number(env, "DEV_POST_LATENCY_MS", 0.0, float, minimum=0, maximum=60_000),
            "max_connection_seconds": read_number(env, "DEV_WS_MAX_CONNECTION_SECONDS", float(MAX_CONNECTION_SECONDS),
                                                  float, minimum=1, maximum=86_400),
            "idle_seconds": read_number(env, "DEV_WS_IDLE_SECONDS", float(IDLE_TIMEOUT_SECONDS), float, minimum=1,
                                        maximum=86_400),
            "tokens_per_second": read_number(env, "DEV_MODEL_TOKENS_PER_SECOND", 0.0, float, minimum=0,
                                             maximum=1_000_000),
            "event_delay_ms": read_number(env, "DEV_LAMBDA_EVENT_DELAY_MS", 0.0, float, minimum=0, maximum=60_000),
        }
    except ConfigError as exc:
        raise SystemExit(f"devserver: {exc}") from None


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devserver", description=__doc__)
    # The variables' values, checked, are the defaults of the flags that share their names (--port, ...).
    parser.set_defaults(**_settings(), github_installations=github.installation_ids(
        os.environ.get("DEV_GITHUB_INSTALLATION_IDS")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int,
                        help="gateway port (env PORT, default 8000; 0 picks a free one)")
    parser.add_argument("--moto-port", type=int,
                        help="moto's port (env MOTO_PORT, default: a free one)")
    parser.add_argument("--bedrock-port", type=int,
                        help="the Bedrock emulator's port (env DEV_BEDROCK_PORT, default: a free one)")
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("DEV_STATE_DIR", ROOT / ".dev")),
                        help="where endpoints.json and logs go (default .dev)")
    parser.add_argument("--fixed-clock", type=_epoch_seconds, default=os.environ.get("DEV_FIXED_CLOCK") or None,
                        metavar="EPOCH_SECONDS",
                        help="hold the app's clock still at this instant, so that tests of the limit windows "
                             "never straddle two (env DEV_FIXED_CLOCK, default: the real time)")
    return parser.parse_args()


def _hold_clock(instant: float) -> None:
    """Every root of the app reads `instant` as the time: its limit windows, token expiry, stored times."""
    from chalicelib import process
    from chalicelib.root import get_clock

    process.install(get_clock, lambda: instant)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instant))
    logging.getLogger("devserver").info("the app's clock stands still at %s (DEV_FIXED_CLOCK)", stamp)


def _describe(doc: dict, emulators: dict) -> str:
    users = ", ".join(f"{u['username']} / {u['password']}" for u in doc["users"])
    return "\n".join([
        "The local stack is ready.",
        f"  WebSocket API   {doc['websocketUrl']}",
        f"  REST API        {doc['httpUrl']}  (try {doc['httpUrl']}/health)",
        f"  Web client      {doc['httpUrl']}/",
        f"  AWS (moto)      {doc['awsEndpointUrl']}  region {doc['region']}",
        f"  GitHub API      {emulators['githubApiUrl']}  (emulator: octo-org/hello-world)",
        f"  Bedrock (echo)  {emulators['bedrockUrl']}",
        f"  Cognito         {doc['cognito']['endpointUrl']}  user pool {doc['cognito']['userPoolId']}, "
        f"app client {doc['cognito']['clientId']}",
        f"  Users           {users}",
        "Sign in with `.venv/bin/llm-ide login --username dev`, then `.venv/bin/llm-ide chat \"Hello\"`,",
        "or serve the OpenAI and Anthropic APIs to your IDE with `.venv/bin/llm-ide serve` (docs/IDE.md).",
        "Press Ctrl-C to stop everything.",
    ])


def _readable_logs(state_dir: Path) -> None:
    """The app's log lines as short text (unless LOG_FORMAT says otherwise), its metric (EMF)
    lines in metrics.log rather than between them."""
    os.environ.setdefault("LOG_FORMAT", "text")
    if os.environ["LOG_FORMAT"] != "text":
        return
    from chalicelib.observability import metrics

    path = state_dir / "metrics.log"
    lock = threading.Lock()

    def write(line: str) -> None:
        with lock, path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
    metrics.set_output(write)


async def _serve(args: argparse.Namespace) -> None:
    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    claim = _claim(state_dir)
    endpoints_path = state_dir / "endpoints.json"
    endpoints_path.unlink(missing_ok=True)  # a stale file (a stack killed) must never look like a ready stack

    try:
        await _serve_from(args, state_dir, endpoints_path)
    finally:
        claim.close()


async def _serve_from(args: argparse.Namespace, state_dir: Path, endpoints_path: Path) -> None:
    """Every server of the stack, on a state directory this process holds, until SIGINT or SIGTERM."""
    gateway_socket = _bind(args.host, args.port)
    port = gateway_socket.getsockname()[1]
    http_url = f"http://{args.host}:{port}"
    lambda_socket = _bind(args.host, 0)
    lambda_url = f"http://{args.host}:{lambda_socket.getsockname()[1]}"
    github_socket = _bind(args.host, 0)
    github_url = f"http://{args.host}:{github_socket.getsockname()[1]}"
    s3_socket = _bind(args.host, 0)
    s3_url = f"http://{args.host}:{s3_socket.getsockname()[1]}"
    cognito_socket = _bind(args.host, 0)
    cognito_url = f"http://{args.host}:{cognito_socket.getsockname()[1]}"
    bedrock_socket = _bind(args.host, args.bedrock_port, "DEV_BEDROCK_PORT")
    bedrock_url = f"http://{args.host}:{bedrock_socket.getsockname()[1]}"
    moto = aws.MotoServer(listener=_bind(args.host, args.moto_port, "MOTO_PORT"), log_path=state_dir / "moto.log")
    runners: list[web.AppRunner] = []
    runtime: LambdaRuntime | None = None
    try:
        moto.start()
        provisioned = aws.provision(moto.url, stage=STAGE)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(aws.app_environment(moto.url, http_url, provisioned))
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = lambda_url
        github_emulator = github.provision(
            aws.aws_client("secretsmanager", moto.url), provisioned.names["GITHUB_SECRET_ARN"],
            installations=args.github_installations)
        os.environ["GITHUB_API_URL"] = github_url
        os.environ["AWS_ENDPOINT_URL_S3"] = s3_url  # presigned URLs are checked there, as S3 does
        os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = bedrock_url
        sys.path.insert(0, str(ROOT))
        _readable_logs(state_dir)
        app_module = importlib.import_module("app")
        if args.fixed_clock is not None:
            _hold_clock(args.fixed_clock)

        runtime = LambdaRuntime(app_module, timeout_seconds=args.lambda_timeout_seconds)
        document = aws.endpoints_document(websocket_url=f"ws://{args.host}:{port}/{STAGE}", http_url=http_url,
                                          moto_url=moto.url, cognito_url=cognito_url, provisioned=provisioned)
        gateway = Gateway(app_module=app_module, runtime=runtime, stage=STAGE,
                          domain_name=f"{args.host}:{port}", web_dir=web_bundle.DIST_DIR,
                          web_config=aws.web_client_config(
                              document, context_max_bytes=load_settings(os.environ).context_max_bytes),
                          web_csp=content_security_policy(
                              [f"ws://{args.host}:{port}", cognito_url, s3_url]),
                          post_latency_ms=args.post_latency_ms, max_connection_seconds=args.max_connection_seconds,
                          idle_seconds=args.idle_seconds)
        bedrock = BedrockEmulator(tokens_per_second=args.tokens_per_second)
        lambda_api = LambdaApi(runtime, app_name=app_module.app.app_name, stage=STAGE,
                               functions=tuple(f.name for f in app_module.app.pure_lambda_functions),
                               event_delay_ms=args.event_delay_ms)
        s3_front = S3Front(moto.url, secrets={aws.CREDENTIALS["AWS_ACCESS_KEY_ID"]:
                                              aws.CREDENTIALS["AWS_SECRET_ACCESS_KEY"]})
        cognito_front = CognitoFront(moto.url, passwords={(provisioned.user_pool_id, username): password
                                                          for username, password in provisioned.users})
        # From the first await on, Ctrl-C (or SIGTERM) is the loop's: it lets the start-up finish, then stops.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        for web_app, sock in ((gateway.make_app(), gateway_socket), (lambda_api.make_app(), lambda_socket),
                              (github_emulator.make_app(), github_socket), (s3_front.make_app(), s3_socket),
                              (bedrock.make_app(), bedrock_socket), (cognito_front.make_app(), cognito_socket)):
            runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
            await runner.setup()
            runners.append(runner)
            await web.SockSite(runner, sock).start()

        if stop.is_set():
            logging.getLogger("devserver").info("interrupted during start-up")
            return
        # endpoints.json is exactly the designed document; the emulators' addresses go beside it.
        emulators = {"lambdaUrl": lambda_url, "githubApiUrl": github_url, "s3Url": s3_url, "bedrockUrl": bedrock_url,
                     "cognitoUrl": cognito_url}
        aws.write_json_atomically(state_dir / "emulators.json", emulators)
        aws.write_json_atomically(endpoints_path, document)
        print(_describe(document, emulators), flush=True)
        print(f"(written to {endpoints_path})", flush=True)
        await stop.wait()
        print("\nStopping the local stack...", flush=True)
    finally:
        endpoints_path.unlink(missing_ok=True)
        (state_dir / "emulators.json").unlink(missing_ok=True)
        for runner in runners:
            await runner.cleanup()
        for sock in (gateway_socket, lambda_socket, github_socket, s3_socket, bedrock_socket, cognito_socket):
            sock.close()
        if runtime is not None:
            runtime.shutdown()
        moto.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found endpoint for ..." on every new client
    started = time.monotonic()
    args = _parse_args()
    aws_calls.install_from_env()  # DEV_RECORD_AWS_CALLS: which AWS calls each function makes
    aws_calls.time_calls_from_env()  # DEV_TIME_AWS_CALLS: when each call started and ended
    # Ctrl-C during start-up interrupts it where it is. (asyncio.run would otherwise take SIGINT and only
    # cancel the task at its first await, while the start-up, which blocks, went on to find moto, which
    # got the same Ctrl-C, gone: a traceback blaming moto.) From its first await, the loop's handlers take over.
    signal.signal(signal.SIGINT, _interrupt)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were installed: the finally blocks cleaned up.
        logging.getLogger("devserver").info("interrupted during start-up")
    logging.getLogger("devserver").info("stopped after %.0f s", time.monotonic() - started)


if __name__ == "__main__":
    main()
