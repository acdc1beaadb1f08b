"""An aiohttp application served on a free loopback port from a background thread."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

from aiohttp import web


@contextlib.contextmanager
def serve(app: web.Application, **runner_options: Any) -> Iterator[str]:
    """Serve `app` for the duration of the block; yields its base URL. `runner_options` go to AppRunner."""
    loop = asyncio.new_event_loop()
    # Bound here, before the thread starts: a port found free and bound later could be taken meanwhile.
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    runner = web.AppRunner(app, **runner_options)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the test server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
