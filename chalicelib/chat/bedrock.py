"""The Bedrock boundary: one ConverseStream call, as a stream of plain events; and CountTokens.

botocore's errors are translated here, once, into the app's errors, and so are
urllib3's: while the reply streams, botocore reads the socket through urllib3,
whose read timeouts and broken connections are not wrapped in botocore errors. A tool call
is handed out whole, once Bedrock has streamed all of its input (`ToolUse`). Throttling
(on the call, or inside the stream as an EventStreamError) and transient
failures are retried with jittered backoff, but only before the model generated
anything: text (or a tool call) already passed on cannot be taken back, and output
generated but not handed out yet (the first pieces of a tool call's input) is billed
by Bedrock: a retry would have it billed again, the reservation covering it once.
"""
from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

from chalicelib.aws.errors import error_code
from chalicelib.chat.requests import Usage
from chalicelib.errors import AppError, UpstreamError, UpstreamThrottled

logger = logging.getLogger(__name__)

THROTTLE_CODES = frozenset({"ThrottlingException", "throttlingException", "TooManyRequestsException"})
TRANSIENT_CODES = frozenset({"ServiceUnavailableException", "serviceUnavailableException",
                             "InternalServerException", "internalServerException", "ModelNotReadyException"})
BACKOFF_BASE_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 2.0
# Bedrock quotas are per minute; a few seconds is the earliest a retry is likely to pass.
THROTTLE_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class ModelRequest:
    model_id: str
    prompt: str
    max_tokens: int
    system: str | None = None
    temperature: float | None = None
    # The whole conversation (converse.build_converse_input's `messages`: history, context
    # documents, then the new input); None sends the prompt alone.
    messages: tuple[dict[str, Any], ...] | None = None
    system_blocks: tuple[dict[str, Any], ...] | None = None  # `system` as built (with its cache point); else `system`
    tool_config: dict[str, Any] | None = None  # Converse's toolConfig

    def converse_arguments(self) -> dict[str, Any]:
        inference: dict[str, Any] = {"maxTokens": self.max_tokens}
        if self.temperature is not None:
            inference["temperature"] = self.temperature
        messages = list(self.messages) if self.messages is not None else [
            {"role": "user", "content": [{"text": self.prompt}]}]
        arguments: dict[str, Any] = {"modelId": self.model_id, "messages": messages, "inferenceConfig": inference}
        if self.system_blocks:
            arguments["system"] = list(self.system_blocks)
        elif self.system:
            arguments["system"] = [{"text": self.system}]
        if self.tool_config:
            arguments["toolConfig"] = self.tool_config
        return arguments


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolUse:
    """One complete tool call of the model: its input assembled from Bedrock's pieces and parsed."""

    tool_use_id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class MessageStop:
    stop_reason: str


@dataclass(frozen=True)
class Metadata:
    usage: Usage


ModelEvent = TextDelta | ToolUse | MessageStop | Metadata


class BedrockChat:
    """Streams one model reply; raises UpstreamThrottled or UpstreamError, never a botocore error."""

    def __init__(self, client: Any, *, max_attempts: int, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        self._client = client
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._jitter = jitter

    def stream(self, request: ModelRequest, *, on_throttled: Callable[[], None] | None = None,
               on_opened: Callable[[], None] | None = None) -> Generator[ModelEvent, None, None]:
        """The reply's events. Closing the iterator closes the HTTP stream (stop reading the model).

        `on_throttled` is called for every throttling answer (retried or not), for the metric; `on_opened`
        when Bedrock accepted a call (its stream opened: from then on the model reads the input, and
        Bedrock charges for it however the stream ends).
        """
        attempt = 0
        while True:
            attempt += 1
            generated = False  # the model produced output on this call: no retry from here
            response = None
            try:
                response = self._client.converse_stream(**request.converse_arguments())
                if on_opened is not None:
                    on_opened()
                tool_uses = _ToolUses()
                broken: AppError | None = None  # a tool call the model botched: raised after the usage
                for raw in response["stream"]:
                    generated = generated or _is_output(raw)
                    event = tool_uses.take(raw) or _translate_event(raw)
                    if isinstance(event, MessageStop):
                        broken = tool_uses.broken(event.stop_reason)
                    if event is not None and (broken is None or isinstance(event, Metadata)):
                        yield event  # after a botched call, only the usage: the output is billed all the same
                if broken is not None:
                    raise broken
                return
            except (ClientError, BotoCoreError, Urllib3Error) as exc:
                error = translate_error(exc)
                retryable = _is_retryable(exc)
                if on_throttled is not None and _code(exc) in THROTTLE_CODES:
                    on_throttled()
                if generated or not retryable or attempt >= self._max_attempts:
                    logger.warning("bedrock call failed", extra={"model": request.model_id, "attempt": attempt,
                                                                 "error": _code(exc), "afterText": generated})
                    raise error from None
                delay = self._backoff(attempt)
                logger.info("bedrock call retried", extra={"model": request.model_id, "attempt": attempt,
                                                           "error": _code(exc), "delay": round(delay, 3)})
                self._sleep(delay)
            finally:
                if response is not None:
                    response["stream"].close()

    def _backoff(self, attempt: int) -> float:
        # "Full jitter": a random delay up to an exponentially growing cap.
        return self._jitter() * min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** attempt)


_COUNTED = ("messages", "system", "toolConfig")  # what CountTokens' `converse` input takes of a Converse request


class BedrockTokenCounter:
    """CountTokens: Bedrock's count of the input tokens a Converse request would be charged (one call, no charge).

    Called with the foundation model id (CountTokens takes no inference profile). The client's timeouts
    and retries bound the call (BEDROCK_COUNT_TOKENS_TIMEOUT, AWS_MAX_ATTEMPTS); a failure raises
    UpstreamThrottled or UpstreamError, never a botocore error.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def count(self, foundation_model_id: str, converse_input: Mapping[str, Any]) -> int:
        request = {name: value for name, value in converse_input.items() if name in _COUNTED}
        try:
            response = self._client.count_tokens(modelId=foundation_model_id, input={"converse": request})
        except (ClientError, BotoCoreError, Urllib3Error) as exc:
            logger.warning("bedrock token count failed", extra={"model": foundation_model_id, "error": _code(exc)})
            raise translate_error(exc) from None
        return int(response["inputTokens"])


class _ToolUses:
    """Bedrock streams a tool call as a contentBlockStart (its id and name), contentBlockDeltas (pieces of its
    input's JSON) and a contentBlockStop; this gathers them per content block into one ToolUse."""

    def __init__(self) -> None:
        self._open: dict[int, tuple[str, str, list[str]]] = {}
        self._broken: str | None = None  # a call whose input did not parse: cut short by maxTokens, or a fault

    def take(self, raw: dict[str, Any]) -> ToolUse | None:
        """The tool call this event completes; None otherwise (and for every event not about a tool call)."""
        if "contentBlockStart" in raw:
            event = raw["contentBlockStart"]
            start = (event.get("start") or {}).get("toolUse")
            if start:
                self._open[event.get("contentBlockIndex", 0)] = (start["toolUseId"], start["name"], [])
        elif "contentBlockDelta" in raw:
            event = raw["contentBlockDelta"]
            piece = (event.get("delta") or {}).get("toolUse")
            index = event.get("contentBlockIndex", 0)
            if piece is not None and index in self._open:
                self._open[index][2].append(piece.get("input") or "")
        elif "contentBlockStop" in raw:
            opened = self._open.pop(raw["contentBlockStop"].get("contentBlockIndex", 0), None)
            if opened is not None:
                tool_use_id, name, pieces = opened
                value = _tool_input("".join(pieces))
                if value is not None:
                    return ToolUse(tool_use_id, name, value)
                self._broken = name
        return None

    def broken(self, stop_reason: str) -> UpstreamError | None:
        """At the message's stop: a call cut short by maxTokens is dropped (the chat ends with max_tokens);
        any other unparsable call is the model's fault, the error returned (to raise once the stream's usage
        metadata has been handed on)."""
        if self._broken is not None and stop_reason != "max_tokens":
            logger.warning("the model's tool input is not a JSON object", extra={"tool": self._broken})
            return UpstreamError(f"the model called tool {self._broken!r} with an input that is not a JSON object")
        return None


def _tool_input(text: str) -> dict[str, Any] | None:
    if not text.strip():
        return {}  # a call without arguments streams no input at all
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _is_output(raw: dict[str, Any]) -> bool:
    """Whether a stream event carries output the model generated (text, a piece of a tool call, reasoning)."""
    if "contentBlockDelta" in raw:
        return any((raw["contentBlockDelta"].get("delta") or {}).values())  # an empty text delta is nothing
    return "contentBlockStart" in raw and bool((raw["contentBlockStart"].get("start") or {}).get("toolUse"))


def _translate_event(raw: dict[str, Any]) -> ModelEvent | None:
    if "contentBlockDelta" in raw:
        text = raw["contentBlockDelta"].get("delta", {}).get("text")
        return TextDelta(text) if text else None
    if "messageStop" in raw:
        return MessageStop(raw["messageStop"].get("stopReason") or "end_turn")
    if "metadata" in raw:
        usage = raw["metadata"].get("usage") or {}
        return Metadata(Usage(int(usage.get("inputTokens", 0)), int(usage.get("outputTokens", 0)),
                              cache_read_input_tokens=int(usage.get("cacheReadInputTokens", 0)),
                              cache_write_input_tokens=int(usage.get("cacheWriteInputTokens", 0))))
    return None  # messageStart, contentBlockStart/Stop of text, reasoning content: no reply text


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return error_code(exc) or "ClientError"
    return type(exc).__name__


def _is_retryable(exc: Exception) -> bool:
    return _code(exc) in THROTTLE_CODES or _code(exc) in TRANSIENT_CODES


def translate_error(exc: Exception) -> AppError:
    """The one place a Bedrock failure becomes a protocol error. Messages say nothing of the prompt."""
    code = _code(exc)
    if code in THROTTLE_CODES:
        return UpstreamThrottled("the model is busy; try again shortly", retry_after=THROTTLE_RETRY_AFTER_SECONDS)
    if isinstance(exc, (ReadTimeoutError, Urllib3ReadTimeout)) or code in ("ModelTimeoutException",):
        return UpstreamError("the model did not answer in time")
    if code in ("ValidationException", "validationException"):
        return UpstreamError("the model rejected the request")
    if code in ("AccessDeniedException", "ResourceNotFoundException"):
        return UpstreamError("the model is not available")
    return UpstreamError("the model failed")
