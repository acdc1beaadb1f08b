"""`python -m client`: sign in, then talk to the backend from a terminal.

Settings come from flags, then environment variables, then `.dev/endpoints.json`
(written by `make dev`), so against the local stack no flag is needed.
"""
from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import statistics
import sys
from typing import Any, Iterable

from client.auth import LoginFailed, TokenStore, login
from client.connection import ConnectionRefused, IdeClient, UploadFailed
from client.endpoints import Endpoints, EndpointsNotFound, load_endpoints


def _resolve(args: argparse.Namespace) -> Endpoints:
    try:
        base = load_endpoints(args.endpoints)
    except EndpointsNotFound:
        base = Endpoints()
    return base.override(
        websocket_url=args.url or os.environ.get("LLM_IDE_URL"),
        region=args.region or os.environ.get("LLM_IDE_REGION"),
        client_id=args.client_id or os.environ.get("LLM_IDE_CLIENT_ID"),
        cognito_endpoint=args.cognito_endpoint or os.environ.get("LLM_IDE_COGNITO_ENDPOINT"),
    )


def _login(args: argparse.Namespace) -> int:
    endpoints = _resolve(args)
    if not endpoints.client_id or not endpoints.region:
        print("error: no Cognito app client: run `make dev`, or pass --client-id and --region", file=sys.stderr)
        return 2
    username = args.username or os.environ.get("LLM_IDE_USERNAME") or input("Username: ")
    password = os.environ.get("LLM_IDE_PASSWORD") or endpoints.dev_password(username) or getpass.getpass()
    try:
        tokens = login(username, password, client_id=endpoints.client_id, region=endpoints.region,
                       endpoint_url=endpoints.cognito_endpoint)
    except LoginFailed as exc:
        print(f"error: sign-in failed: {exc}", file=sys.stderr)
        return 1
    TokenStore().save([endpoints.websocket_url, endpoints.client_id], tokens)
    print(f"Signed in as {username}; the token is valid until epoch {tokens.expires_at}.")
    return 0


def _connect(args: argparse.Namespace) -> IdeClient:
    endpoints = _resolve(args)
    if not endpoints.websocket_url:
        raise SystemExit("error: no WebSocket URL: run `make dev`, or pass --url")
    tokens = TokenStore().load([endpoints.websocket_url, endpoints.client_id], args.username)
    if tokens is None or tokens.expired():
        raise SystemExit("error: not signed in here (or the token expired): run `python -m client login` with the"
                         " same --url (or --client-id) as this command")
    try:
        return IdeClient(endpoints.websocket_url, tokens.token(args.token_use))
    except ConnectionRefused as exc:
        raise SystemExit(f"error: {exc}") from None


def _ping(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        rtts = []
        for _ in range(args.count):
            rtts.append(client.ping() * 1000)
            print(f"pong in {rtts[-1]:.1f} ms")
        if args.count > 1:
            print(f"median {statistics.median(rtts):.1f} ms over {args.count} pings")
    return 0


def _chat_params(args: argparse.Namespace) -> dict:
    """chat.send's parameters from the command line: a prompt, or a conversation (a file, images), and tools."""
    params = {"model": args.model, "maxTokens": args.max_tokens, "system": args.system,
              "temperature": args.temperature, "sessionId": args.session, "contextPaths": args.context or None,
              "tools": _json_file(args.tools) if args.tools else None,
              "toolChoice": _tool_choice(args.tool_choice) if args.tool_choice else None}
    if args.messages or args.image:
        messages = _json_file(args.messages) if args.messages else []
        content = [_image_block(path) for path in args.image or ()]
        if args.prompt:
            content.append({"type": "text", "text": args.prompt})
        if content:
            messages.append({"role": "user", "content": content})
        params["messages"] = messages
    else:
        params["prompt"] = args.prompt
    return {k: v for k, v in params.items() if v is not None}


def _json_file(path: str) -> Any:
    try:
        with (sys.stdin if path == "-" else open(path, encoding="utf-8")) as source:
            return json.load(source)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {path}: {exc}") from None


def _tool_choice(value: str) -> str | dict:
    return value if value in ("auto", "any") else {"name": value}


def _image_block(path: str) -> dict:
    formats = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif", ".webp": "webp"}
    kind = formats.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise SystemExit(f"error: {path}: an image must be .png, .jpg, .jpeg, .gif or .webp")
    try:
        with open(path, "rb") as image:
            data = base64.b64encode(image.read()).decode("ascii")
    except OSError as exc:
        raise SystemExit(f"error: {path}: {exc}") from None
    return {"type": "image", "format": kind, "data": data}


def _chat(args: argparse.Namespace) -> int:
    """Print the reply (and the model's tool calls) as it streams, then the usage; Ctrl-C cancels the chat."""
    if not (args.prompt or args.messages or args.image):
        raise SystemExit("error: give a prompt, --messages or --image")
    params = _chat_params(args)
    with _connect(args) as client:
        try:
            sent_id = client.send_chat(params)
        except UploadFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        chat_id = None
        try:
            for frame in client.frames(sent_id):
                kind = frame.get("type")
                if kind == "ack":
                    chat_id = frame["id"]
                elif kind == "delta":
                    sys.stdout.write(frame["text"])
                    sys.stdout.flush()
                elif kind == "toolUse":
                    print(f"\n[tool call {frame['name']} {frame['toolUseId']}] "
                          f"{json.dumps(frame['input'], ensure_ascii=False)}")
                elif kind == "done":
                    usage = frame["usage"]
                    cached = ""
                    if usage.get("cacheReadInputTokens") or usage.get("cacheWriteInputTokens"):
                        cached = (f" + {usage['cacheReadInputTokens']} read from and "
                                  f"{usage['cacheWriteInputTokens']} written to the cache")
                    print(f"\n[{frame['stopReason']}] {usage['inputTokens']} input{cached} + "
                          f"{usage['outputTokens']} output = {usage['totalTokens']} tokens")
                    return 0
                elif kind == "error":
                    error = frame["error"]
                    retry = f" (retry after {error['retryAfter']} s)" if "retryAfter" in error else ""
                    print(f"\nerror: {error['code']}: {error['message']}{retry}", file=sys.stderr)
                    return 1
        except KeyboardInterrupt:
            if chat_id is None:  # not acknowledged yet: the chat may already run, so wait for its ack
                chat_id = _ack_of(client.frames(sent_id, timeout=10))
            if chat_id is not None:
                client.send("chat.cancel", requestId=chat_id)
                for frame in client.frames(chat_id, timeout=10):  # the rest, up to `done` (stopReason cancelled)
                    if frame.get("type") == "delta":
                        sys.stdout.write(frame["text"])
                print("\n[cancelled]")
            return 130
    return 1


def _ack_of(frames: Iterable[dict]) -> str | None:
    """The chat's id once its ack arrives; None if it ended (refused) first or never answered."""
    try:
        for frame in frames:
            if frame.get("type") == "ack":
                return frame["id"]
            if frame.get("type") in ("done", "error"):
                return None
    except TimeoutError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    # The shared options are accepted before or after the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoints", default=argparse.SUPPRESS, help="endpoints file (default: .dev/endpoints.json)")
    common.add_argument("--url", default=argparse.SUPPRESS, help="WebSocket URL (env LLM_IDE_URL)")
    common.add_argument("--region", default=argparse.SUPPRESS, help="AWS region of the user pool (env LLM_IDE_REGION)")
    common.add_argument("--client-id", default=argparse.SUPPRESS, help="Cognito app client id (env LLM_IDE_CLIENT_ID)")
    common.add_argument("--cognito-endpoint", default=argparse.SUPPRESS,
                        help="Cognito endpoint URL (env LLM_IDE_COGNITO_ENDPOINT; the local stack's is in endpoints.json)")
    common.add_argument("--username", default=argparse.SUPPRESS, help="user to sign in or act as (env LLM_IDE_USERNAME)")
    common.add_argument("--token-use", choices=("access", "id"), default=argparse.SUPPRESS,
                        help="which Cognito token to present (the backend's COGNITO_TOKEN_USE; default access)")
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__, parents=[common])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("login", parents=[common], help="sign in with Cognito and keep the token")
    ping = commands.add_parser("ping", parents=[common], help="connect and measure the round trip")
    ping.add_argument("--count", type=int, default=1)
    chat = commands.add_parser("chat", parents=[common], help="send a prompt and print the reply as it streams")
    chat.add_argument("prompt", nargs="?", help="the prompt (with --messages or --image: the last user message)")
    chat.add_argument("--model", help="a model id of the server's allow-list (default: the server's default)")
    chat.add_argument("--max-tokens", type=int, help="the most tokens of reply")
    chat.add_argument("--system", help="a system prompt")
    chat.add_argument("--temperature", type=float, help="0 to 1")
    chat.add_argument("--session", help="continue this session (its id, from session.create)")
    chat.add_argument("--context", action="append", metavar="PATH",
                      help="a context file for the model (repeatable)")
    chat.add_argument("--messages", metavar="FILE", help="the conversation: a JSON list of messages ('-': stdin)")
    chat.add_argument("--image", action="append", metavar="PATH", help="an image for the model (repeatable)")
    chat.add_argument("--tools", metavar="FILE", help="tools the model may call: a JSON list of "
                                                      "{name, description, inputSchema}")
    chat.add_argument("--tool-choice", metavar="CHOICE", help="auto, any, or the name of the tool to call")
    args = parser.parse_args(argv)
    for name, default in (("endpoints", None), ("url", None), ("region", None), ("client_id", None),
                          ("cognito_endpoint", None), ("username", None), ("token_use", "access")):
        if not hasattr(args, name):
            setattr(args, name, default)
    handlers = {"login": _login, "ping": _ping, "chat": _chat}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
