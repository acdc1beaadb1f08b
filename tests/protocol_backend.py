"""A scripted backend that speaks protocol v1.1 over a real WebSocket, for the bridge's tests.

It stands where the backend stands (PROTOCOL.md's frames, exactly), so the bridge, driven by
the official OpenAI and Anthropic SDKs, can be tested for what the local stack cannot show on
demand: a socket dropped mid-stream and resumed, an expired token, a refused handshake, an
upload. Its model echoes the last user message's text, like the dev stack's; directives in
that text steer it:

- `[[tool:NAME {json}]]`: a `toolUse` frame (the text before it first), then `done`/`tool_use`; several are
  several `toolUse` frames (parallel calls);
- `[[error:CODE]]` (before any delta) or `[[fail:CODE]]` (after the first delta): an `error` frame;
- `[[ack:MS]]`: the `ack` comes MS ms after the `chat.send` (a cold Lambda); the chat is cancellable meanwhile;
- `[[drop:N]]`: the server closes the socket after the N-th stream frame (the chat runs on and
  is resumable, as v1.1 promises); `[[slow:MS]]`: MS ms between stream frames;
- `[[cache:R,W]]`: `cacheReadInputTokens` R and `cacheWriteInputTokens` W in `done.usage`;
- `[[stop:REASON]]`: `done` with that `stopReason` (one of Bedrock's, passed on by the backend);
- `[[limited:N]]`: the chat's first N `chat.resume`s are refused `RATE_LIMITED` (`retryAfter` 1), as
  the real backend refuses any action past the minute's request limit.

`tokens` lists the tokens accepted at the handshake (None: any); `expired` those whose
frames are answered UNAUTHORIZED and the socket closed, as the real backend does.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

MODELS = [
    {"id": "anthropic.claude-test-v1:0", "name": "Claude Test", "default": True, "maxOutputTokens": 4096,
     "contextTokens": 200000, "supports": {"tools": True, "images": True, "promptCache": True},
     "aliases": ["claude-test"], "price": {"input": 3, "output": 15, "cacheRead": 0.3, "cacheWrite": 3.75}},
    {"id": "amazon.nova-test-v1:0", "name": "Nova Test", "default": False, "maxOutputTokens": 2048,
     "contextTokens": 300000, "supports": {"tools": True, "images": False, "promptCache": False},
     "aliases": [], "price": None},
]
DIRECTIVE = re.compile(r"\[\[(\w+):([^\]]*)\]\]")
CHUNK = 7  # characters per delta


def echo_text(messages: list[dict[str, Any]]) -> str:
    content = messages[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if b.get("type") == "text")


def count_tokens(params: dict[str, Any]) -> int:
    """The fake's rule: one token per 4 bytes of the JSON of what the model reads."""
    read = {k: params.get(k) for k in ("system", "messages", "tools")}
    return max(1, len(json.dumps(read)) // 4)


@dataclass
class Run:
    """A chat, kept after it ends (for `chat.resume`), and the socket its frames go to."""
    request_id: str
    client_id: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    cancelled: bool = False
    limited_resumes: int = 0  # resumes still to refuse RATE_LIMITED
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # a post never overtakes a replay


class ProtocolBackend:
    def __init__(self, *, tokens: set[str] | None = None) -> None:
        self.tokens = tokens
        self.expired: set[str] = set()
        self.runs: dict[str, Run] = {}
        self.uploads: dict[str, bytes | None] = {}
        self.received: list[dict[str, Any]] = []  # every frame, as sent by the client
        self.handshakes: list[str] = []  # the token of every accepted connection
        self._ids = itertools.count(1)
        self.base_url = ""  # set by the test once served

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=16 << 20)
        app.router.add_get("/ws", self._socket)
        app.router.add_put("/upload/{upload_id}", self._upload)
        return app

    async def _upload(self, request: web.Request) -> web.Response:
        upload_id = request.match_info["upload_id"]
        if upload_id not in self.uploads:
            return web.Response(status=403)
        self.uploads[upload_id] = await request.read()
        return web.Response(status=200)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token or (self.tokens is not None and token not in self.tokens) or token in self.expired:
            return web.Response(status=401)
        self.handshakes.append(token)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        tasks: set[asyncio.Task[Any]] = set()
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            frame = json.loads(message.data)
            self.received.append(frame)
            if token in self.expired:
                await ws.send_json({"type": "error", "id": frame.get("id"), "error": {
                    "code": "UNAUTHORIZED", "message": "the token has expired; reconnect with a new token"}})
                await ws.close()
                break
            task = asyncio.ensure_future(self._action(ws, frame))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return ws

    async def _action(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        action, frame_id = frame.get("action"), frame.get("id", "")  # the bridge names every frame

        async def result(data: dict[str, Any]) -> None:
            await ws.send_json({"type": "result", "id": frame_id, "data": data})

        if action == "ping":
            await ws.send_json({"type": "pong", "id": frame_id})
        elif action == "models.list":
            await result({"models": MODELS})
        elif action == "chat.countTokens":
            await result({"inputTokens": count_tokens(frame)})
        elif action == "chat.upload":
            upload_id = f"u{next(self._ids)}"
            self.uploads[upload_id] = None
            await result({"uploadId": upload_id, "url": f"{self.base_url}/upload/{upload_id}",
                          "headers": {"Content-Type": "application/json"}, "expiresAt": "2099-01-01T00:00:00Z"})
        elif action == "chat.send":
            params = frame
            if "uploadId" in frame:
                params = {**json.loads(self.uploads.pop(frame["uploadId"]) or b"{}"), "id": frame_id}
            await self._chat(ws, frame_id, params)
        elif action == "chat.cancel":
            run = self._find(frame.get("requestId"))
            if run is None or run.finished.is_set():
                await ws.send_json({"type": "error", "id": frame_id, "error": {"code": "NOT_FOUND",
                                                                              "message": "no such running request"}})
            else:
                run.cancelled = True
                await result({"cancelled": True})
        elif action == "chat.resume":
            await self._resume(ws, frame_id, frame)
        else:
            await ws.send_json({"type": "error", "id": frame_id, "error": {
                "code": "BAD_REQUEST", "message": f"unknown action {action!r}"}})

    def _find(self, request_id: Any) -> Run | None:
        return self.runs.get(request_id) or next((r for r in self.runs.values() if r.client_id == request_id), None)

    async def _chat(self, ws: web.WebSocketResponse, frame_id: str, params: dict[str, Any]) -> None:
        text = echo_text(params["messages"])
        directives = dict(DIRECTIVE.findall(text))
        if "error" in directives:
            code = directives["error"]
            error = {"code": code, "message": f"scripted {code}"}
            if code in ("RATE_LIMITED", "UPSTREAM_THROTTLED"):
                error["retryAfter"] = 17
            elif code == "BUDGET_EXCEEDED":
                error["retryAfter"] = 1800  # the hour's budget: the rest of the hour
            await ws.send_json({"type": "error", "id": frame_id, "error": error})
            return
        run = Run(request_id=f"req-{next(self._ids)}", client_id=frame_id, ws=ws,
                  limited_resumes=int(directives.get("limited", "0")))
        self.runs[run.request_id] = run
        await asyncio.sleep(int(directives.get("ack", "0")) / 1000)
        model = params.get("model") or MODELS[0]["id"]
        await ws.send_json({"type": "ack", "id": frame_id, "requestId": run.request_id, "sessionId": None,
                            "model": "anthropic.claude-test-v1:0" if model == "claude-test" else model,
                            "maxTokens": params.get("maxTokens", 1024), "limits": {}})
        tools = list(re.finditer(r"\[\[tool:(\w+) (\{.*?\})\]\]", text))
        tool = tools[0] if tools else None
        reply = text[:tool.start()] if tool else text
        pieces: list[dict[str, Any]] = [{"type": "delta", "text": reply[i:i + CHUNK]}
                                        for i in range(0, len(reply), CHUNK)]
        for n, call in enumerate(tools):  # the first call's id is the request's, the next ones' numbered after it
            pieces.append({"type": "toolUse", "toolUseId": f"tooluse_{run.request_id}" + (f"_{n}" if n else ""),
                           "name": call[1], "input": json.loads(call[2])})
        delay = int(directives.get("slow", "0")) / 1000
        drop_after = int(directives["drop"]) if "drop" in directives else None
        stop_reason = directives.get("stop") or ("tool_use" if tool else "end_turn")
        for seq, piece in enumerate(pieces):
            if run.cancelled:
                stop_reason = "cancelled"
                break
            if seq == 1 and "fail" in directives:
                await self._post(run, {"type": "error", "id": frame_id, "error": {
                    "code": directives["fail"], "message": "scripted failure mid-stream"}})
                run.finished.set()
                return
            await self._post(run, {**piece, "id": frame_id, "seq": seq})
            if drop_after is not None and seq + 1 == drop_after and run.ws is not None:
                await run.ws.close()
            await asyncio.sleep(delay)
        read, written = (int(n) for n in directives.get("cache", "0,0").split(","))
        input_tokens, output_tokens = count_tokens(params), max(1, len(reply) // 4)
        await self._post(run, {"type": "done", "id": frame_id, "stopReason": stop_reason, "limits": {}, "usage": {
            "inputTokens": input_tokens, "outputTokens": output_tokens, "cacheReadInputTokens": read,
            "cacheWriteInputTokens": written, "totalTokens": input_tokens + output_tokens + read + written}})
        run.finished.set()

    async def _post(self, run: Run, frame: dict[str, Any]) -> None:
        """Keep the frame for a resume, and send it where the chat's stream goes now (if anywhere)."""
        async with run.lock:
            run.frames.append(frame)
            if run.ws is not None and not run.ws.closed:
                try:
                    await run.ws.send_json(frame)
                except ConnectionError:
                    run.ws = None
            else:
                run.ws = None

    async def _resume(self, ws: web.WebSocketResponse, frame_id: str, frame: dict[str, Any]) -> None:
        run = self.runs.get(str(frame.get("requestId")))
        if run is None:
            await ws.send_json({"type": "error", "id": frame_id, "error": {"code": "NOT_FOUND",
                                                                          "message": "no such request"}})
            return
        if run.limited_resumes:
            run.limited_resumes -= 1
            await ws.send_json({"type": "error", "id": frame_id, "error": {
                "code": "RATE_LIMITED", "message": "scripted request limit", "retryAfter": 1}})
            return
        after = frame.get("afterSeq", -1)
        async with run.lock:
            status = "done" if run.finished.is_set() else "running"
            await ws.send_json({"type": "result", "id": frame_id, "data": {
                "requestId": run.request_id, "status": status, "lastSeq": len(run.frames) - 1}})
            for kept in run.frames:
                if kept.get("type") in ("done", "error") or kept.get("seq", -1) > after:
                    await ws.send_json(kept)
            run.ws = ws  # the frames posted from now on
