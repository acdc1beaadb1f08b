"""The local API Gateway: WebSocket API, its Management API, the REST API and the web client.

One aiohttp server on one port, as API Gateway serves one domain. The app's
handlers run in-process on a thread pool, called with API Gateway's event
shapes; everything they send goes back through the Management API over HTTP,
exactly as in AWS.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from aiohttp import WSMsgType, web
from chalice.config import Config
from chalice.local import LambdaContext, LocalGateway, LocalGatewayException

from devserver import authorizers, events

log = logging.getLogger("devserver.gateway")

# API Gateway's limits for WebSocket APIs. It closes a connection (1001, "Going away") after two
# hours whatever happens, and after ten minutes without a message either way; DEV_WS_MAX_CONNECTION_SECONDS
# and DEV_WS_IDLE_SECONDS shorten them so that clients can be tested against both.
MAX_MESSAGE_BYTES = 128 * 1024
IDLE_TIMEOUT_SECONDS = 10 * 60
MAX_CONNECTION_SECONDS = 2 * 60 * 60
GOING_AWAY = 1001


@dataclass
class _Client:
    ws: web.WebSocketResponse
    connected_at: float
    source_ip: str
    user_agent: str | None
    last_active: float = field(default_factory=time.time)  # the last message either way (the idle timeout)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed_by_gateway: str | None = None  # why the gateway closed it (its duration, or idle)

    def gone(self) -> bool:
        """Closed, or closing: a post to it answers 410 (a method, so no check of it is taken as final)."""
        return self.ws.closed

    @property
    def connected_at_ms(self) -> int:
        return int(self.connected_at * 1000)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LambdaRuntime:
    """Runs the app's functions as Lambda would: one event, a context, on a worker thread."""

    def __init__(self, app_module: ModuleType, *, max_workers: int = 32, timeout_seconds: float = 900.0) -> None:
        self._app = app_module
        self._timeout_ms = int(timeout_seconds * 1000)  # what the context tells; nothing is killed at the end
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="lambda")

    def function(self, name: str) -> Callable[[dict, Any], Any]:
        return getattr(self._app, name)

    async def invoke(self, name: str, event: dict[str, Any]) -> Any:
        handler = self.function(name)
        context = LambdaContext(function_name=name, memory_size=512, max_runtime_ms=self._timeout_ms)
        return await asyncio.get_running_loop().run_in_executor(self._pool, handler, event, context)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Gateway:
    def __init__(self, *, app_module: ModuleType, runtime: LambdaRuntime, stage: str,
                 domain_name: str, web_dir: Path, web_config: dict[str, Any], web_csp: str,
                 connect_authorizer: str | None = "ws_authorizer", post_latency_ms: float = 0.0,
                 max_connection_seconds: float = MAX_CONNECTION_SECONDS,
                 idle_seconds: float = IDLE_TIMEOUT_SECONDS) -> None:
        self._runtime = runtime
        self._max_connection = max_connection_seconds
        self._idle = idle_seconds
        self._web_config = web_config
        self._connect_authorizer = connect_authorizer
        self._post_latency = post_latency_ms / 1000.0  # DEV_POST_LATENCY_MS: the Management API's latency
        self._stage = stage
        self._domain = domain_name
        self._web_dir = web_dir.resolve()  # the built bundle (infra/web_bundle.py), served as the UI bucket is
        self._web_headers = {"Cache-Control": "no-cache", "Content-Security-Policy": web_csp,
                             "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                             "Referrer-Policy": "strict-origin-when-cross-origin"}
        self._clients: dict[str, _Client] = {}
        self._disconnects: set[asyncio.Future[Any]] = set()  # $disconnect invocations under way (kept referenced)
        self._rest = LocalGateway(app_module.app, Config.create(chalice_stage=stage, lambda_timeout=60,
                                                               lambda_memory_size=512, app_name="llm-ide"))

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES + 1024)
        app.router.add_get(f"/{self._stage}", self._websocket)
        for method in ("POST", "GET", "DELETE"):
            app.router.add_route(method, f"/{self._stage}/@connections/{{connection_id}}", self._management)
        # The web client at the root, as CloudFront serves it in AWS (with the same security
        # headers), its settings, and the REST API for every other path.
        app.router.add_get("/config.json", self._config_json)
        app.router.add_route("*", "/{tail:.*}", self._web_file_or_rest_api)
        app.on_shutdown.append(self._close_all)
        return app

    # --- WebSocket API ----------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response({"message": "Upgrade Required"}, status=426, dumps=_compact_json)
        connection_id = events.new_connection_id()
        now = time.time()
        source_ip = request.remote or "127.0.0.1"
        headers = dict(request.headers.items())  # of a repeated header, the last (items() yields every one)
        query = {k: request.query.getall(k) for k in request.query}
        decision = await self._authorize(connection_id=connection_id, now=now, source_ip=source_ip,
                                         headers=headers, query=query)
        if not decision.allowed:
            log.info("$connect %s refused by the authorizer (%d)", connection_id, decision.status)
            return _aws_error(decision.status, decision.error_type or "", decision.message)
        connect = events.connect_event(connection_id=connection_id, connected_at_ms=int(now * 1000),
                                       stage=self._stage, domain_name=self._domain, source_ip=source_ip,
                                       headers=headers, query=query, authorizer=decision.context)
        response = await self._runtime.invoke("websocket_connect", connect)
        status = int((response or {}).get("statusCode", 200))
        if status != 200:
            log.info("$connect %s refused (%d)", connection_id, status)
            return web.json_response({"message": (response or {}).get("body") or "Forbidden"}, status=status,
                                     dumps=_compact_json)

        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
        client = _Client(ws=ws, connected_at=now, source_ip=source_ip, user_agent=headers.get("User-Agent"))
        self._clients[connection_id] = client
        await ws.prepare(request)
        log.debug("$connect %s accepted", connection_id)  # the app's "handled" line says it
        close_code, reason = 1000, "Client closed"
        pending: set[asyncio.Task] = set()
        limits = asyncio.create_task(self._enforce_limits(connection_id, client))
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    client.last_active = time.time()
                    task = asyncio.create_task(self._message(connection_id, client, message.data))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                elif message.type == WSMsgType.ERROR:
                    close_code, reason = 1009, f"Going away: {ws.exception()}"
                    break
        finally:
            limits.cancel()
            if client.closed_by_gateway:
                close_code, reason = GOING_AWAY, client.closed_by_gateway
            self._clients.pop(connection_id, None)
            if not ws.closed:
                await ws.close(code=close_code)
            disconnect = events.disconnect_event(
                connection_id=connection_id, connected_at_ms=client.connected_at_ms, stage=self._stage,
                domain_name=self._domain, source_ip=source_ip, user_agent=client.user_agent,
                status_code=close_code if client.closed_by_gateway else ws.close_code or close_code, reason=reason)
            # API Gateway sends $disconnect however the connection ended: it runs to its end even when this
            # handler is cancelled (a server that cancels handlers whose connection is lost, as aiohttp's
            # test server does, cancelled it mid-invoke on a busy machine, and the app kept the connection).
            invoked = asyncio.ensure_future(self._runtime.invoke("websocket_disconnect", disconnect))
            self._disconnects.add(invoked)
            invoked.add_done_callback(self._disconnects.discard)
            await asyncio.shield(invoked)
            log.debug("$disconnect %s", connection_id)
        return ws

    async def _enforce_limits(self, connection_id: str, client: _Client) -> None:
        """Close the connection as API Gateway does: at its maximum age, or when idle too long."""
        while not client.ws.closed:
            now = time.time()
            ends, idle_ends = client.connected_at + self._max_connection, client.last_active + self._idle
            if now >= min(ends, idle_ends):
                why = "connection duration" if now >= ends else "idle timeout"
                log.info("closing %s: its %s was reached", connection_id, why)
                client.closed_by_gateway = f"Going away ({why})"
                await client.ws.close(code=GOING_AWAY, message=b"Going away")
                return
            await asyncio.sleep(min(ends, idle_ends) - now)

    async def _authorize(self, *, connection_id: str, now: float, source_ip: str, headers: dict[str, str],
                         query: dict[str, list[str]]) -> authorizers.Decision:
        """Run the `$connect` REQUEST authorizer as API Gateway does, before the route's integration."""
        if self._connect_authorizer is None:
            return authorizers.Decision(200)
        method_arn = events.connect_method_arn(self._stage)
        event = events.authorizer_event(connection_id=connection_id, connected_at_ms=int(now * 1000),
                                        stage=self._stage, domain_name=self._domain, source_ip=source_ip,
                                        headers=headers, query=query, method_arn=method_arn)
        started = time.monotonic()
        try:
            answer = await self._runtime.invoke(self._connect_authorizer, event)
        except Exception as exc:  # a failed Lambda: API Gateway reads only its message
            return authorizers.from_error(exc)
        return authorizers.from_answer(answer, method_arn, latency_ms=int((time.monotonic() - started) * 1000))

    async def _message(self, connection_id: str, client: _Client, data: str | bytes) -> None:
        event = events.message_event(connection_id=connection_id, connected_at_ms=client.connected_at_ms,
                                     stage=self._stage, domain_name=self._domain, source_ip=client.source_ip,
                                     user_agent=client.user_agent, body=data)
        log.debug("$default %s %s", connection_id, _describe_frame(data))
        try:
            await self._runtime.invoke("websocket_message", event)
        except Exception:
            # A Lambda that raises: API Gateway logs it and the client hears nothing.
            log.exception("$default handler raised for %s", connection_id)

    # --- Management API ---------------------------------------------------

    async def _management(self, request: web.Request) -> web.StreamResponse:
        if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
            return _aws_error(403, "ForbiddenException", "Missing Authentication Token")
        connection_id = request.match_info["connection_id"]
        client = self._clients.get(connection_id)
        if client is None or client.gone():
            return _aws_error(410, "GoneException", None)
        if request.method == "GET":
            return web.json_response({"connectedAt": _iso(client.connected_at),
                                      "lastActiveAt": _iso(client.last_active),
                                      "identity": {"sourceIp": client.source_ip, "userAgent": client.user_agent}})
        if request.method == "DELETE":
            log.info("@connections DELETE %s", connection_id)
            await client.ws.close(code=1000)
            return web.Response(status=204)
        body = await request.read()
        if self._post_latency:
            await asyncio.sleep(self._post_latency)
        if len(body) > MAX_MESSAGE_BYTES:
            return _aws_error(413, "PayloadTooLargeException", "Message too long")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        async with client.send_lock:
            if client.gone():  # closed while the post was on its way
                return _aws_error(410, "GoneException", None)
            try:
                if text is None:
                    await client.ws.send_bytes(body)
                else:
                    await client.ws.send_str(text)
            except ConnectionError:
                return _aws_error(410, "GoneException", None)
        client.last_active = time.time()
        log.info("@connections POST %s %s", connection_id, _describe_frame(body))
        return web.Response(status=200)

    # --- REST API and web client ---------------------------------------------

    async def _web_file_or_rest_api(self, request: web.Request) -> web.StreamResponse:
        """A file of the built bundle (looked up per request: a rebuild needs no restart), else the REST API."""
        if request.method in ("GET", "HEAD"):
            if request.path == "/" and not (self._web_dir / "index.html").is_file():
                return web.Response(status=503,
                                    text="The web client is not built: run `python -m infra.web_bundle`.\n")
            name = request.path.lstrip("/") or "index.html"
            path = (self._web_dir / name).resolve()
            if path.parent == self._web_dir and path.is_file():
                return web.FileResponse(path, headers=self._web_headers)
        return await self._rest_api(request)

    async def _config_json(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._web_config, headers={"Cache-Control": "no-store"})

    async def _rest_api(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        path = request.path_qs
        loop = asyncio.get_running_loop()
        try:
            response = await loop.run_in_executor(
                None, self._rest.handle_request, request.method, path, headers, body or None)
        except LocalGatewayException as exc:
            return web.Response(status=exc.CODE, headers=exc.headers, body=exc.body)
        except Exception as exc:  # only a route's authorizer lets an exception out of LocalGateway
            decision = authorizers.from_error(exc)
            return _aws_error(decision.status, decision.error_type or "", decision.message)
        out_headers = dict((response.get("headers") or {}).items())
        payload = response.get("body") or b""
        if response.get("isBase64Encoded"):
            payload = base64.b64decode(payload)
        return web.Response(status=response["statusCode"], headers=out_headers,
                            body=payload if isinstance(payload, bytes) else payload.encode())

    async def _close_all(self, _app: web.Application) -> None:
        for client in list(self._clients.values()):
            await client.ws.close(code=1001, message=b"server shutdown")


def _aws_error(status: int, error_type: str, message: str | None) -> web.Response:
    """API Gateway's own error, byte for byte: `{"message":...}` in compact JSON (as chalice's LocalGateway and
    chalicelib.auth.authorizer.UNAUTHORIZED_BODY have it), so a client sees one body whichever refuses."""
    return web.json_response({"message": message}, status=status, headers={"x-amzn-ErrorType": error_type},
                             dumps=_compact_json)


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _describe_frame(data: str | bytes) -> str:
    """A short, safe description of a frame for the console: action or type and id, no content."""
    try:
        frame = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return f"<{len(data)} bytes, not JSON>"
    if not isinstance(frame, dict):
        return f"<{len(data)} bytes, not an object>"
    kind = frame.get("action") or frame.get("type")
    extra = f" {frame['error'].get('code')}" if isinstance(frame.get("error"), dict) else ""
    return f"{str(kind)[:40]} id={str(frame.get('id'))[:64]}{extra} ({len(data)} bytes)"
