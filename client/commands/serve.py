"""`llm-ide serve`: the OpenAI and Anthropic APIs on this machine, for IDE assistants."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from aiohttp import web

from client.auth import NotSignedIn
from client.bridge.backend import Backend
from client.bridge.localkey import load_or_create
from client.bridge.server import LOOPBACK_NAMES, make_app
from client.commands.common import CommandFailed, Context
from client.endpoints import no_websocket_url

WILDCARDS = ("0.0.0.0", "::", "")


async def _serve(ctx: Context, args: argparse.Namespace, key: str, username: str) -> None:
    url = ctx.endpoints.websocket_url
    assert url is not None
    backend = Backend(url, ctx.account, token_use=args.token_use)
    # A Host header may name the loopback interface, or the address --host names explicitly.
    hosts = LOOPBACK_NAMES | ({args.host if ":" not in args.host else f"[{args.host}]"}
                              if args.host not in WILDCARDS else set())
    runner = web.AppRunner(make_app(backend, key, hosts=frozenset(hosts)), handler_cancellation=True,
                           access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        try:
            await site.start()
        except OSError as exc:
            raise CommandFailed(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
        port = runner.addresses[0][1]
        shown = args.host if ":" not in args.host else f"[{args.host}]"
        print(f"OpenAI API     http://{shown}:{port}/v1        key {key}")
        print(f"Anthropic API  http://{shown}:{port}           key {key}")
        print(f"Backend        {url} (signed in as {username}); Ctrl-C stops.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(ctx: Context, args: argparse.Namespace) -> int:
    key = load_or_create()
    if args.print_key:
        print(key)
        return 0
    if not ctx.endpoints.websocket_url:
        raise CommandFailed(no_websocket_url(args.endpoints), 2)
    try:
        username = ctx.account.tokens().username  # signed in (and renewed) before anything is served
    except NotSignedIn as exc:
        raise CommandFailed(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    asyncio.run(_serve(ctx, args, key, username))
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("serve", parents=[common],
                                 help="serve the OpenAI and Anthropic APIs here, for IDE assistants")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=4141, help="port (default 4141; 0 picks a free one)")
    parser.add_argument("--print-key", action="store_true", help="print the local key and exit")
    parser.set_defaults(handler=serve)
