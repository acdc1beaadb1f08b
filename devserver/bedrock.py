"""The Bedrock Runtime emulator: Converse, ConverseStream and CountTokens with an echo model.

ConverseStream answers in real AWS event-stream encoding, so boto3's own parser
reads it. The reply is the text of the last user message's text blocks, one
delta per token of the emulator's tokenizer (devserver/tokenizer.py), which also
counts the usage and CountTokens' answer: a tokenizer's rule, so a byte estimate
is visibly wrong against it; `maxTokens` is honoured (stop reason `max_tokens`).
Requests are checked, counted and cached as devserver/bedrock_model.py says (tools,
images, tool results, cache points). Directives in the prompt inject faults and
pacing, and call tools:

  [[throttle]]               every call answers ThrottlingException (HTTP 429)
  [[throttle-once]]          only the first call for this prompt does
  [[stream-throttle]]        the stream opens, then a throttlingException event
  [[stream-throttle-once]]   only the first call for this prompt does that
  [[midstream-error]]        some deltas, then a modelStreamErrorException event
  [[slow:N]]                 N ms between deltas
  [[dump]]                   the reply is the request received, as JSON (every block)
  [[tool:NAME {json}]]       after the text before it, a call of tool NAME with that input;
                             the reply stops with `tool_use` (a toolChoice of `tool` or `any`
                             makes such a call, with no text, with or without this directive)
  [[count-throttle]]         CountTokens answers ThrottlingException (Converse is unaffected)

CountTokens (POST /model/<foundation model id>/count-tokens, `input.converse`) checks the
request as Converse does, refuses an inference profile id and a model whose table entry
says it cannot be counted, and answers the count Converse would report as its input.

DEV_MODEL_TOKENS_PER_SECOND paces every reply. The emulator accepts any model
id: the app enforces its allow-list. GET /_emulator/streams/<sha256 of the
prompt> reports a stream's timings, for benchmarks; GET /_emulator/calls (with
`?key=<sha256 of the prompt>` for one prompt's) lists the calls received, oldest
first: operation (Converse, ConverseStream, CountTokens), model, key and time, so
a test can see that a model was never called.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from chalicelib.models import builtin, foundation_id
from devserver import bedrock_model as model
from devserver import eventstream
from devserver.tokenizer import split_tokens

log = logging.getLogger("devserver.bedrock")

_DIRECTIVE = re.compile(r"\[\[(throttle|throttle-once|stream-throttle|stream-throttle-once|midstream-error|dump|"
                        r"count-throttle|slow:(\d{1,6}))\]\]")
_ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
DEFAULT_MAX_TOKENS = 4096
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # room for the largest upload (CHAT_UPLOAD_MAX_BYTES at most 32 MiB), in JSON
KEPT_TIMINGS = 512
KEPT_CALLS = 4096


@dataclass
class StreamTiming:
    """When a stream's request arrived and its tokens went out (epoch seconds), for benchmarks."""

    received_at: float
    first_token_at: float | None = None
    last_token_at: float | None = None
    tokens: int = 0
    aborted: bool = False  # the caller closed the stream before its end


@dataclass(frozen=True)
class Call:
    """One call the emulator received (GET /_emulator/calls)."""

    operation: str  # Converse, ConverseStream or CountTokens
    model_id: str
    key: str  # sha256 of the prompt (the last user message's text)
    at: float  # epoch seconds


@dataclass(frozen=True)
class Reply:
    tokens: list[str]
    stop_reason: str
    usage: model.Usage  # the input's counts
    directives: frozenset[str]
    delay: float  # seconds between deltas
    key: str  # sha256 of the prompt
    tool_calls: tuple[model.ToolCall, ...] = ()

    @property
    def input_tokens(self) -> int:
        return self.usage.input_tokens

    @property
    def output_tokens(self) -> int:
        return len(self.tokens) + sum(call.tokens for call in self.tool_calls)


class BedrockEmulator:
    def __init__(self, *, tokens_per_second: float = 0.0) -> None:
        self._token_delay = 1.0 / tokens_per_second if tokens_per_second > 0 else 0.0
        self._seen_once: set[tuple[str, str]] = set()
        self._cache = model.PromptCache()
        self.timings: OrderedDict[str, StreamTiming] = OrderedDict()
        self.calls: deque[Call] = deque(maxlen=KEPT_CALLS)

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/model/{model_id}/converse", self._converse)
        app.router.add_post("/model/{model_id}/converse-stream", self._converse_stream)
        app.router.add_post("/model/{model_id}/count-tokens", self._count_tokens)
        app.router.add_get("/_emulator/streams/{key}", self._timing)
        app.router.add_get("/_emulator/calls", self._calls)
        return app

    # --- the model ------------------------------------------------------------

    def reply(self, model_id: str, request: dict[str, Any]) -> Reply:
        reading = _read_request(model_id, request)
        prompt = _prompt(request)
        found = {m.group(1) for m in _DIRECTIVE.finditer(prompt)}
        slow = next((int(m.group(2)) for m in _DIRECTIVE.finditer(prompt) if m.group(2)), None)
        inference = request.get("inferenceConfig") or {}
        text, calls = model.tool_calls(prompt, model.tool_names_of(request))
        forced = model.forced_calls(request, calls)
        if forced is not None:  # toolChoice `tool` or `any`: that call, and no text
            text, calls = "", forced
        if "dump" in found:
            text = model.dump(model_id, request)
        tokens = split_tokens(text)
        max_tokens = int(inference.get("maxTokens") or DEFAULT_MAX_TOKENS)
        room = max_tokens - len(tokens)
        made, cut = model.make_calls(calls, room) if calls and room > 0 else ([], bool(calls))
        stop_reason = "max_tokens" if room < 0 or cut else "tool_use" if made else "end_turn"
        return Reply(tokens=tokens[:max_tokens], stop_reason=stop_reason,
                     usage=self._cache.usage(reading, min_tokens=model.min_cache_tokens(model_id)),
                     directives=frozenset(found), delay=slow / 1000.0 if slow is not None else self._token_delay,
                     key=_key(prompt), tool_calls=tuple(made))

    def count(self, model_id: str, request: dict[str, Any]) -> int:
        """CountTokens: the input tokens a Converse request of these messages, system and tools would be charged
        (cache points change how they are billed, not how many they are)."""
        spec = builtin(model_id)
        if model_id != foundation_id(model_id):
            raise _Failure(400, "ValidationException", "CountTokens takes a foundation model id, not an inference "
                                                       "profile or ARN.")
        if spec is not None and not spec.count_tokens:
            raise _Failure(400, "ValidationException", "The provided model doesn't support counting tokens.")
        return _read_request(model_id, request).tokens

    def _fault(self, reply: Reply, name: str) -> bool:
        """Whether fault `name` applies to this call: always, or once per prompt with `-once`."""
        if name in reply.directives:
            return True
        once = f"{name}-once"
        if once in reply.directives and (once, reply.key) not in self._seen_once:
            self._seen_once.add((once, reply.key))
            return True
        return False

    # --- HTTP -----------------------------------------------------------------

    async def _body(self, request: web.Request, operation: str) -> dict[str, Any]:
        """The request's JSON body, once its signature is there; the call is logged."""
        if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
            raise _Failure(403, "AccessDeniedException", "Missing Authentication Token")
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            raise _Failure(400, "ValidationException", "the body is not JSON") from None
        body = body if isinstance(body, dict) else {}
        converse = (body.get("input") or {}).get("converse") if operation == "CountTokens" else body
        self.calls.append(Call(operation, request.match_info["model_id"],
                               _key(_prompt(converse if isinstance(converse, dict) else {})), time.time()))
        return body

    async def _read(self, request: web.Request, operation: str) -> tuple[str, Reply]:
        body = await self._body(request, operation)
        model_id = request.match_info["model_id"]
        reply = self.reply(model_id, body)
        if self._fault(reply, "throttle"):
            raise _Failure(429, "ThrottlingException", "Too many requests, please wait before trying again.")
        return model_id, reply

    async def _converse(self, request: web.Request) -> web.StreamResponse:
        try:
            _model, reply = await self._read(request, "Converse")
        except _Failure as failure:
            return failure.response()
        if "midstream-error" in reply.directives:
            return _Failure(424, "ModelErrorException", "The model failed.").response()
        await asyncio.sleep(reply.delay * len(reply.tokens))
        output = reply.output_tokens
        content: list[dict[str, Any]] = [{"text": "".join(reply.tokens)}] if reply.tokens else []
        content += [{"toolUse": {"toolUseId": call.tool_use_id, "name": call.name,
                                 "input": json.loads("".join(call.pieces))}}
                    for call in reply.tool_calls if reply.stop_reason == "tool_use"]
        return web.json_response({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": reply.stop_reason,
            "usage": reply.usage.wire(output),
            "metrics": {"latencyMs": int(reply.delay * output * 1000)},
        }, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def _converse_stream(self, request: web.Request) -> web.StreamResponse:
        received = time.time()
        try:
            _model, reply = await self._read(request, "ConverseStream")
        except _Failure as failure:
            return failure.response()
        timing = self._remember(reply.key, StreamTiming(received_at=received))
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/vnd.amazon.eventstream",
                                                           "x-amzn-RequestId": str(uuid.uuid4())})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await self._stream(response, reply, timing)
            await response.write_eof()
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            timing.aborted = True
            log.info("converse-stream closed by the caller after %d tokens", timing.tokens)
        return response

    async def _stream(self, response: web.StreamResponse, reply: Reply, timing: StreamTiming) -> None:
        await response.write(eventstream.event("messageStart", {"role": "assistant"}))
        if self._fault(reply, "stream-throttle"):
            await response.write(eventstream.exception("throttlingException", "Too many requests."))
            return
        break_after = max(1, len(reply.tokens) // 2) if "midstream-error" in reply.directives else None
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index, token in enumerate(reply.tokens):
            if reply.delay:
                await asyncio.sleep(max(0.0, started + (index + 1) * reply.delay - loop.time()))
            await response.write(eventstream.event("contentBlockDelta",
                                                   {"contentBlockIndex": 0, "delta": {"text": token}}))
            timing.tokens += 1
            timing.last_token_at = time.time()
            timing.first_token_at = timing.first_token_at or timing.last_token_at
            if timing.tokens == break_after:
                await response.write(eventstream.exception("modelStreamErrorException", "The model failed."))
                return
        index = 0
        if reply.tokens or not reply.tool_calls:
            await response.write(eventstream.event("contentBlockStop", {"contentBlockIndex": 0}))
            index = 1
        for call in reply.tool_calls:  # as Bedrock streams a tool call: its start, its input in pieces, its stop
            await response.write(eventstream.event("contentBlockStart", {
                "contentBlockIndex": index, "start": {"toolUse": {"toolUseId": call.tool_use_id, "name": call.name}}}))
            for piece in call.pieces:
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                await response.write(eventstream.event("contentBlockDelta", {
                    "contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}))
            await response.write(eventstream.event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        await response.write(eventstream.event("messageStop", {"stopReason": reply.stop_reason}))
        await response.write(eventstream.event("metadata", {
            "usage": reply.usage.wire(reply.output_tokens),
            "metrics": {"latencyMs": int((loop.time() - started) * 1000)}}))

    def _remember(self, key: str, timing: StreamTiming) -> StreamTiming:
        self.timings[key] = timing
        self.timings.move_to_end(key)
        while len(self.timings) > KEPT_TIMINGS:
            self.timings.popitem(last=False)
        return timing

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._body(request, "CountTokens")
            converse = (body.get("input") or {}).get("converse") if isinstance(body.get("input"), dict) else None
            if not isinstance(converse, dict):
                raise _Failure(400, "ValidationException", "input.converse is required (this emulator counts Converse "
                                                           "requests only)")
            if "count-throttle" in {m.group(1) for m in _DIRECTIVE.finditer(_prompt(converse))}:
                raise _Failure(429, "ThrottlingException", "Too many requests, please wait before trying again.")
            tokens = self.count(request.match_info["model_id"], converse)
        except _Failure as failure:
            return failure.response()
        return web.json_response({"inputTokens": tokens}, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def _calls(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key")
        return web.json_response([asdict(call) for call in self.calls if key is None or call.key == key])

    async def _timing(self, request: web.Request) -> web.StreamResponse:
        timing = self.timings.get(request.match_info["key"])
        if timing is None:
            return web.json_response({"message": "no such stream"}, status=404)
        return web.json_response(asdict(timing))


def _read_request(model_id: str, request: dict[str, Any]) -> model.Reading:
    try:
        return model.read_request(model_id, request)
    except model.Invalid as invalid:
        raise _Failure(400, "ValidationException", str(invalid)) from None


def _prompt(request: dict[str, Any]) -> str:
    """The text of the last user message: what the model echoes, and what the emulator's logs are keyed by."""
    messages = request.get("messages")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"] if isinstance(messages, list) \
        else []
    return "".join(model.texts(users[-1].get("content"))) if users else ""


def _key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class _Failure(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message

    def response(self) -> web.Response:
        return web.json_response({"message": self.message}, status=self.status,
                                 headers={"x-amzn-ErrorType": self.error_type + _ERROR_TYPE_SUFFIX})
