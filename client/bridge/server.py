"""The bridge's HTTP server (aiohttp, with aiohttp-sse for the streams).

Every request passes `guard` first: its Host header must name the loopback interface with
the bridge's port (403 otherwise: a web page cannot reach the bridge by DNS rebinding), and it
must carry the local key (401 otherwise). Errors take the shape of the API the path belongs to.
A caller that goes away mid-answer cancels its chat (aiohttp cancels the handler: see
`handler_cancellation` in `serve`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from client.bridge import anthropic_api, openai_api
from client.bridge.backend import Backend, Chat
from client.bridge.errors import ApiError, anthropic_body, invalid, openai_body
from client.bridge.localkey import matches
from client.bridge.reply import ChatCall, Event, Reply

logger = logging.getLogger("llm_ide.bridge")

BACKEND = web.AppKey("backend", Backend)
KEY = web.AppKey("key", str)
HOSTS = web.AppKey("hosts", frozenset)
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
MAX_BODY_BYTES = 64 << 20  # a conversation with images; the backend's own limit is smaller


def _is_anthropic(request: web.Request) -> bool:
    return request.path.startswith("/v1/messages")


def error_response(request: web.Request, error: ApiError) -> web.Response:
    body = anthropic_body(error) if _is_anthropic(request) else openai_body(error)
    return web.json_response(body, status=error.status, headers=error.headers())


def _host_allowed(request: web.Request) -> bool:
    host = request.headers.get("Host", "")
    name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return sockname is not None and port == str(sockname[1]) and name.lower() in request.app[HOSTS]


def _presented_key(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return request.headers.get("x-api-key")


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> web.StreamResponse:
    if not _host_allowed(request):
        return error_response(request, ApiError(403, "FORBIDDEN", "the Host header must name the loopback interface"
                                                " and this port (127.0.0.1, localhost or [::1])"))
    if not matches(request.app[KEY], _presented_key(request)):
        return error_response(request, ApiError(401, "UNAUTHORIZED", "a local key is required: send the key that"
                                                " `llm-ide serve --print-key` prints, as `Authorization: Bearer <key>`"
                                                " or `x-api-key: <key>`"))
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(request, error)
    except web.HTTPException as exc:  # no such path, or the wrong method: in the API's own shape
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status, "BAD_REQUEST")
        return error_response(request, ApiError(exc.status, code, f"{request.method} {request.path}: {exc.reason}"))
    except Exception as exc:  # a fault of the bridge's own: the SDKs' InternalServerError, the details in the log
        return error_response(request, _fault(request, exc))


def _fault(request: web.Request, exc: Exception) -> ApiError:
    """An error of the bridge's own (a bug), logged with its traceback, as a 500 that tells where to look."""
    if isinstance(exc, ApiError):
        return exc
    logger.error("%s %s failed", request.method, request.path, exc_info=exc)
    return ApiError(500, "INTERNAL", "the bridge failed to answer this request; its log (the `llm-ide serve`"
                    " terminal) says why")


async def _json(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError as exc:
        raise invalid("body", f"the request body is not valid JSON ({exc})") from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"the request body is over {MAX_BODY_BYTES} bytes") from None


async def _events(chat: Chat, reply: Reply) -> AsyncIterator[Event]:
    """The chat's events; at a stop sequence the chat is cancelled and only its `done` is still read."""
    cancelled = False
    async for frame in chat.frames():
        for event in reply.feed(frame):
            yield event
        if reply.stopped and not cancelled:
            cancelled = True
            await chat.cancel()


async def _begun(chat: Chat, reply: Reply) -> AsyncIterator[Event]:
    """The chat's events once its first one has come: a chat that fails before any output raises here,
    before the stream's response begins, and is answered with its HTTP status (a 429 with Retry-After
    that the SDKs wait for and retry), as OpenAI and Anthropic answer a refused stream."""
    events = _events(chat, reply)
    first = await anext(events, None)

    async def begun() -> AsyncIterator[Event]:
        if first is not None:
            yield first
        async for event in events:
            yield event
    return begun()


async def _answer(request: web.Request, call: ChatCall,
                  respond: Callable[[Chat, Reply], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        chat = await request.app[BACKEND].start_chat(call.params)
    except ApiError as error:  # refused before the ack: in the caller's names of the fields
        raise call.origins.rename(error) from None
    try:
        return await respond(chat, Reply(call.stop, parallel_tool_calls=call.parallel_tool_calls))
    except (asyncio.CancelledError, ConnectionResetError):
        await asyncio.shield(chat.abandon())  # the caller went away: so does its chat
        raise
    finally:
        if not chat.ended:  # an error while answering: nobody reads the rest
            await asyncio.shield(chat.abandon())


# --- OpenAI ------------------------------------------------------------------------------------

async def openai_models(request: web.Request) -> web.Response:
    listed = await request.app[BACKEND].request("models.list")
    return web.json_response(openai_api.models(listed.get("models") or [], int(time.time())))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    call = openai_api.chat_call(await _json(request))

    async def complete(chat: Chat, reply: Reply) -> web.StreamResponse:
        completion = openai_api.Completion(str(chat.request_id), str(chat.ack.get("model")))
        async for event in _events(chat, reply):
            completion.add(event)
        return web.json_response(completion.body())

    async def stream(chat: Chat, reply: Reply) -> web.StreamResponse:
        chunks = openai_api.ChunkStream(str(chat.request_id), str(chat.ack.get("model")),
                                        include_usage=call.include_usage)
        events = await _begun(chat, reply)
        async with sse_response(request, allow_all_methods=True) as response:
            await response.send(json.dumps(chunks.start()))
            try:
                async for event in events:
                    for chunk in chunks.chunks(event):
                        await response.send(json.dumps(chunk, ensure_ascii=False))
                await response.send("[DONE]")
            except ConnectionResetError:  # the caller went away: nobody to tell
                raise
            except Exception as exc:  # after the stream began: its end, in OpenAI's streaming shape
                await response.send(json.dumps(openai_body(_fault(request, exc)), ensure_ascii=False))
        return response

    return await _answer(request, call, stream if call.stream else complete)


# --- Anthropic ---------------------------------------------------------------------------------

async def messages(request: web.Request) -> web.StreamResponse:
    call = anthropic_api.chat_call(await _json(request))

    async def complete(chat: Chat, reply: Reply) -> web.StreamResponse:
        message = anthropic_api.Message(str(chat.request_id), str(chat.ack.get("model")))
        async for event in _events(chat, reply):
            message.add(event)
        return web.json_response(message.body())

    async def stream(chat: Chat, reply: Reply) -> web.StreamResponse:
        stream_events = anthropic_api.EventStream(str(chat.request_id), str(chat.ack.get("model")))
        events = await _begun(chat, reply)
        async with sse_response(request, allow_all_methods=True) as response:
            for name, data in stream_events.start():
                await response.send(json.dumps(data), event=name)
            try:
                async for event in events:
                    for name, data in stream_events.events(event):
                        await response.send(json.dumps(data, ensure_ascii=False), event=name)
            except ConnectionResetError:  # the caller went away: nobody to tell
                raise
            except Exception as exc:  # after the stream began: its end, in Anthropic's streaming shape
                await response.send(json.dumps(anthropic_body(_fault(request, exc)), ensure_ascii=False),
                                    event="error")
        return response

    return await _answer(request, call, stream if call.stream else complete)


async def count_tokens(request: web.Request) -> web.Response:
    call = anthropic_api.count_call(await _json(request))
    backend = request.app[BACKEND]
    try:
        counted = await backend.request("chat.countTokens", **call.params)
    except ApiError as error:
        if error.code == "BAD_REQUEST" and error.message.startswith("unknown action"):
            raise ApiError(501, "NOT_IMPLEMENTED", f"the backend at {backend.url} cannot count tokens"
                           " (it has no chat.countTokens action)") from None
        raise call.origins.rename(error) from None
    return web.json_response({"input_tokens": int(counted.get("inputTokens", 0))})


def make_app(backend: Backend, key: str, *, hosts: frozenset[str] = LOOPBACK_NAMES) -> web.Application:
    """The bridge's routes behind `guard`; `hosts` are the names a Host header may give."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app[BACKEND], app[KEY], app[HOSTS] = backend, key, frozenset(h.lower() for h in hosts)
    app.router.add_get("/v1/models", openai_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)

    async def close_backend(_app: web.Application) -> None:
        await backend.close()
    app.on_cleanup.append(close_backend)
    return app
