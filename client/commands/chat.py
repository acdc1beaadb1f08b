"""`llm-ide ping` and `llm-ide chat`: the round trip, and a streamed reply with Ctrl-C to cancel."""
from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
from collections.abc import Iterable
from typing import Any

from client.commands.common import CommandFailed, Context, error_text, shown
from client.connection import ClientClosed, UploadFailed


def ping(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.connect() as client:
        rtts = []
        for _ in range(args.count):
            rtts.append(client.ping() * 1000)
            print(f"pong in {rtts[-1]:.1f} ms")
        if args.count > 1:
            print(f"median {statistics.median(rtts):.1f} ms over {args.count} pings")
    return 0


def chat_params(args: argparse.Namespace) -> dict[str, Any]:
    """chat.send's parameters from the command line: a prompt, or a conversation (a file, images), and tools."""
    params = {"model": args.model, "maxTokens": args.max_tokens, "system": args.system,
              "temperature": args.temperature, "sessionId": args.session, "contextPaths": args.context or None,
              "tools": _json_file(args.tools) if args.tools else None,
              "toolChoice": _tool_choice(args.tool_choice) if args.tool_choice else None}
    if args.messages or args.image:
        messages = _json_file(args.messages) if args.messages else []
        if not isinstance(messages, list):
            raise SystemExit(f"error: {args.messages}: the conversation must be a JSON list of messages")
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


def _tool_choice(value: str) -> str | dict[str, str]:
    return value if value in ("auto", "any") else {"name": value}


def _image_block(path: str) -> dict[str, str]:
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


def chat(ctx: Context, args: argparse.Namespace) -> int:
    """Print the reply (and the model's tool calls) as it streams, then the usage; Ctrl-C cancels the chat.

    The connection stays up by itself: when it closes mid-answer (API Gateway's two hours, a network
    change, an expired token), the client reconnects and resumes the chat, and the answer goes on.
    """
    if not (args.prompt or args.messages or args.image):
        raise SystemExit("error: give a prompt, --messages or --image")
    params = chat_params(args)
    with ctx.connect(reconnect=True) as client:
        try:
            sent_id = client.send_chat(params)  # through chat.upload when larger than a frame
        except UploadFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        chat_id = None  # the server's id, from the ack: what names the chat on any connection
        midline = False  # the reply printed so far ends mid-line: an error starts on a line of its own
        try:
            for frame in client.frames(sent_id):
                kind = frame.get("type")
                if kind == "ack":
                    chat_id = frame["requestId"]
                elif kind == "delta":
                    sys.stdout.write(shown(frame["text"]))
                    sys.stdout.flush()
                    midline = not frame["text"].endswith("\n")
                elif kind == "toolUse":
                    print(shown(f"\n[tool call {frame['name']} {frame['toolUseId']}] "
                                f"{json.dumps(frame['input'], ensure_ascii=False)}"))
                    midline = False
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
                    lead = "\n" if midline else ""
                    print(f"{lead}error: {error_text(frame['error'])}", file=sys.stderr)
                    return 1
        except ClientClosed as exc:
            raise CommandFailed(f"{exc}: the connection could not be resumed") from None
        except TimeoutError as exc:
            raise CommandFailed(f"the backend stopped answering: {exc}") from None
        except KeyboardInterrupt:
            # Ctrl-C may land after the client took the ack off its queue and before this loop saw it: the
            # client knows the chat's id then. Not acknowledged yet, the chat may already run: wait for its ack.
            chat_id = chat_id or client.chat_request_id(sent_id) or _ack_of(client.frames(sent_id, timeout=10))
            if chat_id is not None:
                client.send("chat.cancel", requestId=chat_id)
                for frame in client.frames(sent_id, timeout=10):  # the rest, up to `done` (stopReason cancelled)
                    if frame.get("type") == "delta":
                        sys.stdout.write(shown(frame["text"]))
                print("\n[cancelled]")
            return 130
    return 1


def _ack_of(frames: Iterable[dict]) -> str | None:
    """The chat's id once its ack arrives; None if it ended (refused) first or never answered."""
    try:
        for frame in frames:
            if frame.get("type") == "ack":
                return frame["requestId"]
            if frame.get("type") in ("done", "error"):
                return None
    except TimeoutError:
        return None
    return None


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ping_parser = commands.add_parser("ping", parents=[common], help="connect and measure the round trip")
    ping_parser.add_argument("--count", type=int, default=1)
    ping_parser.set_defaults(handler=ping)
    chat_parser = commands.add_parser("chat", parents=[common], help="send a prompt and print the reply as it streams")
    chat_parser.add_argument("prompt", nargs="?",
                             help="the prompt (with --messages or --image: the last user message's text)")
    chat_parser.add_argument("--model", help="a model id of the server's allow-list (default: the server's default)")
    chat_parser.add_argument("--max-tokens", type=int, help="the most tokens of reply")
    chat_parser.add_argument("--system", help="a system prompt")
    chat_parser.add_argument("--temperature", type=float, help="0 to 1")
    chat_parser.add_argument("--session", help="continue this session (its id, from `llm-ide sessions list`)")
    chat_parser.add_argument("--context", action="append", metavar="PATH",
                             help="a context file for the model (repeatable)")
    chat_parser.add_argument("--messages", metavar="FILE",
                             help="the conversation: a JSON list of messages ('-': standard input)")
    chat_parser.add_argument("--image", action="append", metavar="PATH", help="an image for the model (repeatable)")
    chat_parser.add_argument("--tools", metavar="FILE",
                             help="tools the model may call: a JSON list of {name, description, inputSchema}")
    chat_parser.add_argument("--tool-choice", metavar="CHOICE", help="auto, any, or the name of the tool to call")
    chat_parser.set_defaults(handler=chat)
