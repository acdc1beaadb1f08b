"""Coalesced delta frames and whole toolUse frames, posted in order by one sender thread.

The model reader only appends text to a buffer; it never waits on a post. The
sender thread cuts a `delta` frame when the buffer holds `flush_bytes` or when
`flush_ms` has passed since the last frame (the first text goes out at once),
and posts frames one after another, so `seq` is 0, 1, 2... with no gap. While a
post is in flight, text keeps collecting and the next frame carries all of it.
With `flush_bytes == 0` coalescing is off: every model delta is its own frame.

A post that fails for another reason than a closed connection (throttled by
API Gateway, a 5xx after botocore's retries) ends the deltas, but the final
frame is still tried: the client learns the reply broke instead of waiting.

Text is kept as `str` pieces and cut only between them or at character
boundaries, so no UTF-8 character is ever split across frames.

A tool call of the model (`write_tool_use`) is one `toolUse` frame: it goes out at once,
after the text written before it (flushed whatever the interval), and takes the next `seq`,
so deltas and tool calls share one numbering in the order the model produced them.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from chalicelib import protocol
from chalicelib.aws.management_api import Sender
from chalicelib.chat.bedrock import ToolUse
from chalicelib.errors import ConnectionGone
from chalicelib.observability import with_current_context

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT_SECONDS = 60.0


class DeltaStream:
    def __init__(self, *, sender: Sender, connection_id: str, request_id: str, flush_bytes: int,
                 flush_ms: int, clock: Callable[[], float] = time.monotonic, start: bool = True) -> None:
        self._sender = sender
        self._connection_id = connection_id
        self._request_id = request_id
        self._flush_bytes = flush_bytes
        self._flush_seconds = flush_ms / 1000.0
        self._clock = clock
        self._cv = threading.Condition()
        self._pending: list[str | ToolUse] = []
        self._pending_bytes = 0
        self._last_cut: float | None = None  # None: nothing sent yet, so the first text goes at once
        self._final: dict[str, Any] | None = None
        self._final_sent = False
        self._seq = 0
        self.gone = threading.Event()  # the client is unreachable: stop producing
        self.failed = threading.Event()  # a delta's post failed otherwise: stop producing, still send the end
        self.first_delta_at: float | None = None  # epoch seconds the first delta frame was posted
        # The sender thread logs with the worker's bound fields (request id, sub, connection).
        self._thread = threading.Thread(target=with_current_context(self._run), name=f"sender-{request_id[:16]}",
                                        daemon=True)
        if start:
            self._thread.start()

    # --- the producer's side (the model reader) ----------------------------

    def write(self, text: str) -> None:
        if not text:
            return
        with self._cv:
            first = not self._pending
            self._pending.append(text)
            self._pending_bytes += len(text.encode("utf-8"))
            # Wake the sender when a frame is due, or to arm its timer for a buffer that was empty.
            if first or self._due(self._clock()):
                self._cv.notify()

    def write_tool_use(self, tool_use: ToolUse) -> None:
        """A tool call of the model: the next frame after the text before it."""
        with self._cv:
            self._pending.append(tool_use)
            self._cv.notify()

    def finish(self, final_frame: dict[str, Any], *, timeout: float = DRAIN_TIMEOUT_SECONDS) -> bool:
        """Send what is buffered, then the final frame; True once it was posted."""
        with self._cv:
            self._final = final_frame
            self._cv.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("sender did not drain in time")
            return False
        return self._final_sent

    def close(self) -> None:
        """Stop the sender without a final frame (nothing was, or may be, sent)."""
        with self._cv:
            self._pending.clear()
            self._pending_bytes = 0
            self.gone.set()
            self._cv.notify()
        self._thread.join(DRAIN_TIMEOUT_SECONDS)

    @property
    def frames_sent(self) -> int:
        return self._seq

    # --- the sender thread --------------------------------------------------

    def _due(self, now: float) -> bool:
        if not self._pending:
            return False
        if self._flush_bytes == 0 or self._last_cut is None or self._final is not None:
            return True
        if any(isinstance(item, ToolUse) for item in self._pending):  # a tool call flushes the text before it
            return True
        return self._pending_bytes >= self._flush_bytes or now - self._last_cut >= self._flush_seconds

    def _next_batch(self) -> tuple[str | ToolUse | None, dict[str, Any] | None]:
        """Wait for the next thing to post: a text batch or a tool call, or the final frame once the buffer
        is empty."""
        with self._cv:
            while True:
                now = self._clock()
                if self.failed.is_set():  # no more deltas: seq must not skip, and the reply is broken anyway
                    self._pending.clear()
                    self._pending_bytes = 0
                if self._due(now):
                    first = self._pending[0]
                    if isinstance(first, ToolUse):
                        self._pending.pop(0)
                        return first, None
                    if self._flush_bytes == 0:
                        text = self._pending.pop(0)  # coalescing off: one frame per model delta
                    else:  # the text up to the next tool call, if any
                        cut = next((i for i, item in enumerate(self._pending) if isinstance(item, ToolUse)),
                                   len(self._pending))
                        text = "".join(self._pending[:cut])  # type: ignore[arg-type]
                        del self._pending[:cut]
                    assert isinstance(text, str)
                    self._pending_bytes -= len(text.encode("utf-8"))
                    self._last_cut = now
                    return text, None
                if self._final is not None:
                    return None, self._final
                if self.gone.is_set():
                    return None, None
                # Pending text that was not due: a frame was cut before (else the text would be due), so
                # _last_cut is set, and the wait ends when the flush interval since that cut has passed.
                wait = None if not self._pending or self._last_cut is None else \
                    max(0.0, self._last_cut + self._flush_seconds - now)
                self._cv.wait(wait)

    def _run(self) -> None:
        while True:
            item, final = self._next_batch()
            if item is None and final is None:
                return  # closed
            try:
                if final is not None:
                    self._post(final)
                    self._final_sent = True
                    return
                if isinstance(item, ToolUse):
                    frames = [protocol.tool_use(self._request_id, seq=self._seq, tool_use_id=item.tool_use_id,
                                                name=item.name, input=item.input)]
                else:
                    frames = [protocol.delta(self._request_id, seq=self._seq + n, text=piece)
                              for n, piece in enumerate(split_utf8(item or "", protocol.MAX_DELTA_TEXT_BYTES))]
                for frame in frames:
                    self._post(frame)
                    if self._seq == 0:
                        self.first_delta_at = time.time()
                    self._seq += 1
            except ConnectionGone:
                logger.info("client gone mid-stream", extra={"seq": self._seq})
                self.gone.set()
                return
            except Exception:
                logger.exception("posting a frame failed", extra={"seq": self._seq})
                if final is not None or self.failed.is_set():
                    return  # the final frame itself could not go: nothing more to try
                self.failed.set()

    def _post(self, frame: dict[str, Any]) -> None:
        self._sender.send(self._connection_id, frame)


def split_utf8(text: str, max_bytes: int) -> list[str]:
    """`text` in pieces of at most `max_bytes` UTF-8 bytes, cut only between characters."""
    if len(text.encode("utf-8")) <= max_bytes:
        return [text] if text else []
    pieces, start, size = [], 0, 0
    for index, char in enumerate(text):
        width = len(char.encode("utf-8"))
        if size + width > max_bytes:
            pieces.append(text[start:index])
            start, size = index, 0
        size += width
    pieces.append(text[start:])
    return pieces
