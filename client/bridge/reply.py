"""A chat call, and its stream frames (`delta`, `toolUse`, `done`) as the events both APIs answer with.

Stop sequences are the bridge's: the protocol has none, so the text is watched as it streams,
held back only while it could be the start of a stop sequence, and cut where one appears
(the caller then cancels the chat; the `done` that follows gives the usage).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from client.bridge.errors import ApiError
from client.bridge.origins import Origins

# Bedrock's stopReasons for output it could not parse: the call or text the model botched is lost, so the
# caller is told (an upstream error) rather than handed a reply that looks whole and ended as it should.
MALFORMED = frozenset({"malformed_model_output", "malformed_tool_use"})


@dataclass(frozen=True)
class ChatCall:
    """What one HTTP request asks of the backend: the `chat.send` parameters, and the bridge's own part."""
    params: dict[str, Any]
    stream: bool = False
    stop: tuple[str, ...] = ()  # stop sequences, applied by the bridge (Reply)
    include_usage: bool = False  # OpenAI's stream_options.include_usage
    parallel_tool_calls: bool = True  # false: one tool call a reply (Anthropic: disable_parallel_tool_use)
    origins: Origins = field(default_factory=Origins)  # the caller's names of the params' fields, for errors


@dataclass(frozen=True)
class Usage:
    """`done.usage` (v1.1; v1's lacks the cache counts, read as 0). `input_tokens` excludes cached input."""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None

    @classmethod
    def from_frame(cls, usage: dict[str, Any] | None) -> Usage:
        usage = usage or {}
        counts = {name: int(usage.get(key) or 0) for name, key in (
            ("input_tokens", "inputTokens"), ("output_tokens", "outputTokens"),
            ("cache_read_input_tokens", "cacheReadInputTokens"),
            ("cache_write_input_tokens", "cacheWriteInputTokens"))}
        total = int(usage.get("totalTokens") or sum(counts.values()))
        cost = usage.get("costUsd")
        return cls(**counts, total_tokens=total, cost_usd=float(cost) if isinstance(cost, (int, float)) else None)

    @property
    def prompt_tokens(self) -> int:
        """All input the model read, cached or not (OpenAI's `prompt_tokens`)."""
        return self.input_tokens + self.cache_read_input_tokens + self.cache_write_input_tokens


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class ToolCall:
    tool_use_id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class End:
    """The chat's end: the protocol's `stopReason`, or `stop_sequence` when the bridge cut the text."""
    stop_reason: str
    usage: Usage
    stop_sequence: str | None = None


Event = Text | ToolCall | End


class Reply:
    """Feed a chat's frames in order; get its events. `stopped` turns true at a stop sequence.

    With `parallel_tool_calls` false, the reply's first tool call is passed on and any other dropped: the protocol
    cannot ask the model for one call only, and a caller that asked answers only one (the call it is not told of
    is not made, as when the model is held to one)."""

    def __init__(self, stop_sequences: Sequence[str] = (), *, parallel_tool_calls: bool = True) -> None:
        self._stops = tuple(s for s in stop_sequences if s)
        self._parallel_tool_calls = parallel_tool_calls
        self._tool_calls = 0
        self._held = ""  # text that may be the start of a stop sequence
        self.stop_sequence: str | None = None

    @property
    def stopped(self) -> bool:
        return self.stop_sequence is not None

    def feed(self, frame: dict[str, Any]) -> list[Event]:
        """Events for one frame; an `error` frame, or a `done` for malformed output, raises ApiError."""
        kind = frame.get("type")
        if kind == "error":
            raise ApiError.from_protocol(frame.get("error") or {})
        if kind == "done":
            reason = "stop_sequence" if self.stopped else str(frame.get("stopReason") or "end_turn")
            if reason in MALFORMED:
                raise ApiError(502, "UPSTREAM_ERROR", f"the model's output could not be read (Bedrock's stopReason"
                               f" {reason}): send the request again")
            events = self._release()
            return [*events, End(reason, Usage.from_frame(frame.get("usage")), self.stop_sequence)]
        if self.stopped:  # what the model said after the stop sequence, before the cancel took effect
            return []
        if kind == "delta":
            return self._text(str(frame.get("text") or ""))
        if kind == "toolUse":
            self._tool_calls += 1
            if self._tool_calls > 1 and not self._parallel_tool_calls:
                return []
            tool_input = frame.get("input")
            return [*self._release(), ToolCall(str(frame.get("toolUseId")), str(frame.get("name")),
                                               tool_input if isinstance(tool_input, dict) else {})]
        return []  # ack, and anything a later protocol adds

    def _release(self) -> list[Event]:
        held, self._held = self._held, ""
        return [Text(held)] if held and not self.stopped else []

    def _text(self, text: str) -> list[Event]:
        if not self._stops:
            return [Text(text)] if text else []
        buffer = self._held + text
        found = [(buffer.find(stop), stop) for stop in self._stops if stop in buffer]
        if found:
            index, stop = min(found)
            self.stop_sequence, self._held = stop, ""
            return [Text(buffer[:index])] if index else []
        keep = max((n for stop in self._stops for n in range(min(len(stop) - 1, len(buffer)), 0, -1)
                    if buffer.endswith(stop[:n])), default=0)
        self._held = buffer[len(buffer) - keep:] if keep else ""
        emitted = buffer[:len(buffer) - keep]
        return [Text(emitted)] if emitted else []
