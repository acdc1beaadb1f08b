"""One chat's stream: its frames cut, numbered, kept and posted in order by one sender thread.

The model reader only appends text (or a whole frame, such as a tool call) to a buffer; it
never waits on a post. The sender thread cuts a `delta` frame when the buffer holds
`flush_bytes` or when `flush_ms` has passed since the last frame (the first text goes out at
once), numbers it (`seq` 0, 1, 2... with no gap), keeps it, and posts the kept frames one after
another. While a post is in flight, text keeps collecting and the next frame carries all of it.
With `flush_bytes == 0` coalescing is off: every model delta is its own frame. A whole frame
(`write_frame`: a tool call of the model, `write_tool_use`) goes out at once, after the text
written before it (flushed whatever the interval), and takes the next `seq`, so deltas and tool
calls share one numbering in the order the model produced them.

The first frame the thread posts is the one it was built with (the chat's `ack`): the `ack`
precedes every stream frame by construction, while the model is already being called.

Every stream frame is kept (`seq` is its index), which is what makes a chat resumable. `move`
hands the stream to another connection (a `chat.resume`): at its next frame boundary the thread
posts the resume's `result`, then the kept frames after the `seq` the client saw, then the rest
as it comes. Several moves are answered in the order they came, each on its own connection; the
stream goes on at the last that could be followed. No frame can be lost, repeated or reordered
in between, because this one thread does every post. A connection that goes away
(ConnectionGone) does not end the stream: frames are still cut and kept, in frames as large as a
frame may be since nobody waits for them, until a move comes; `seal` cuts what is left so that the
worker can keep the stream beyond its own life.

A post that fails for another reason than a closed connection (throttled by API Gateway, a 5xx
after botocore's retries) ends the posting of stream frames, but the final frame is still tried:
the client learns the reply broke instead of waiting.

Text is kept as `str` pieces and cut only between them or at character boundaries, so no UTF-8
character is ever split across frames.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib import protocol
from chalicelib.aws.management_api import Sender
from chalicelib.chat.bedrock import ToolUse
from chalicelib.errors import BadRequest, ConnectionGone
from chalicelib.observability import with_current_context

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT_SECONDS = 60.0

FrameBuilder = Callable[[int], dict[str, Any]]  # a whole stream frame (a tool call), given its seq


@dataclass(frozen=True)
class Move:
    """A `chat.resume` the stream is to follow: to `connection_id`, from the frame after `after_seq`."""

    connection_id: str
    sender: Sender  # reaches connection_id (its Management API endpoint)
    after_seq: int  # the last seq the client has; -1 for all
    resume_id: str  # the chat.resume frame's `id`, which its result echoes
    chat_id: str  # the server's id of the chat (the result's `requestId`)


@dataclass(frozen=True)
class _Target:
    connection_id: str
    sender: Sender


class DeltaStream:
    def __init__(self, *, sender: Sender, connection_id: str, request_id: str, flush_bytes: int,
                 flush_ms: int, clock: Callable[[], float] = time.monotonic, first_frame: dict[str, Any] | None = None,
                 start: bool = True) -> None:
        self._request_id = request_id  # the client's id of the chat: every stream frame echoes it
        self._flush_bytes = flush_bytes
        self._flush_seconds = flush_ms / 1000.0
        self._clock = clock
        self._cv = threading.Condition()
        self._target: _Target | None = _Target(connection_id, sender)  # None: nobody to post to
        self._first = first_frame
        self._pending: list[str | FrameBuilder] = []
        self._pending_bytes = 0
        self._pending_whole = 0  # whole frames among the pending items
        self._last_cut: float | None = None  # None: nothing cut yet, so the first text goes at once
        self._kept: list[dict[str, Any]] = []  # every stream frame, seq == index
        self._next = 0  # the index of the next kept frame to post to the target
        self._moves: collections.deque[Move] = collections.deque()  # resumes to answer, in order
        self._final: dict[str, Any] | None = None
        self._final_sent = False
        self._sealed = False
        self._posted = 0
        self.gone = threading.Event()  # the current connection went away (a move clears it)
        self.failed = threading.Event()  # a post failed otherwise: stop producing, still send the end
        self.first_delta_at: float | None = None  # epoch seconds the first stream frame was posted
        self.moves = 0  # moves applied (resumes answered by this stream)
        # The sender thread logs with the worker's bound fields (request id, sub, connection).
        self._thread = threading.Thread(target=with_current_context(self._run), name=f"sender-{request_id[:16]}",
                                        daemon=True)
        if start:
            self._thread.start()

    # --- the producer's side (the worker) -------------------------------------

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

    def write_frame(self, build: FrameBuilder) -> None:
        """A whole stream frame: the next frame after the text written before it."""
        with self._cv:
            self._pending.append(build)
            self._pending_whole += 1
            self._cv.notify()

    def write_tool_use(self, tool_use: ToolUse) -> None:
        """A tool call of the model: one `toolUse` frame, numbered, kept and replayed as deltas are."""
        self.write_frame(lambda seq: protocol.tool_use(self._request_id, seq=seq, tool_use_id=tool_use.tool_use_id,
                                                       name=tool_use.name, input=tool_use.input))

    def move(self, move: Move) -> None:
        """Follow a `chat.resume`: moves are applied in the order they come, each answered on its own
        connection (its `result`, or BAD_REQUEST for an `afterSeq` beyond the last frame), before any
        further frame is posted; the stream goes on at the last one that could be followed."""
        with self._cv:
            self._moves.append(move)
            self._cv.notify()

    def seal(self) -> list[dict[str, Any]]:
        """No more text: cut what is buffered into frames; every stream frame of the chat, in order."""
        with self._cv:
            self._sealed = True
            self._cut(self._clock())
            self._cv.notify()
            return list(self._kept)

    def finish(self, final_frame: dict[str, Any], *, moves: Sequence[Move] = (),
               timeout: float = DRAIN_TIMEOUT_SECONDS) -> bool:
        """Post what is not posted yet, then the final frame; True once it was posted.

        `moves`: resumes learnt as the chat ended (applied as `move` applies them): their results say how
        the chat ended.
        """
        with self._cv:
            self._final = final_frame
            self._moves.extend(moves)
            self._cv.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("sender did not drain in time")
            return False
        return self._final_sent

    @property
    def connected(self) -> bool:
        """Whether a connection is listening (False after ConnectionGone, until a move)."""
        return self._target is not None

    @property
    def last_seq(self) -> int:
        """The seq of the last frame cut so far (-1: none)."""
        return len(self._kept) - 1

    @property
    def frames_sent(self) -> int:
        """Frames posted so far but the final one: the ack, stream frames (replayed ones too), resume results."""
        return self._posted

    # --- cutting (under the lock) ---------------------------------------------------

    def _due(self, now: float) -> bool:
        if not self._pending:
            return False
        if self._sealed or self._final is not None or self._pending_whole:
            return True  # the end, or a whole frame, flushes the text before it
        if self._target is None:  # nobody waits: cut only a full frame's worth
            return self._pending_bytes >= protocol.MAX_DELTA_TEXT_BYTES
        if self._flush_bytes == 0 or self._last_cut is None:
            return True
        return self._pending_bytes >= self._flush_bytes or now - self._last_cut >= self._flush_seconds

    def _cut(self, now: float) -> None:
        """Number and keep every frame that is due."""
        while self._due(now):
            first = self._pending[0]
            if not isinstance(first, str):
                self._pending.pop(0)
                self._pending_whole -= 1
                self._kept.append(first(len(self._kept)))
                self._last_cut = now
                continue
            if self._flush_bytes == 0 and self._target is not None and not self._sealed:
                count = 1  # coalescing off: one frame per model delta
            else:  # the text up to the next whole frame, if any
                count = next((i for i, item in enumerate(self._pending) if not isinstance(item, str)),
                             len(self._pending))
            text = "".join(self._pending[:count])  # type: ignore[arg-type]
            del self._pending[:count]
            self._pending_bytes -= len(text.encode("utf-8"))
            for piece in split_utf8(text, protocol.MAX_DELTA_TEXT_BYTES):
                self._kept.append(protocol.delta(self._request_id, seq=len(self._kept), text=piece))
            self._last_cut = now

    # --- the sender thread --------------------------------------------------

    def _next_action(self) -> tuple[str, Any]:
        """Wait for the next thing to do: ("first" | "frame" | "final", frame), ("move", Move) or ("end", None)."""
        with self._cv:
            while True:
                now = self._clock()
                if self._first is not None:
                    first, self._first = self._first, None
                    if self._target is not None:
                        return "first", first
                if self._moves:
                    return "move", self._moves.popleft()
                self._cut(now)
                if self._target is not None and not self.failed.is_set() and self._next < len(self._kept):
                    return "frame", self._kept[self._next]
                if self._final is not None and not self._pending:
                    return ("final", self._final) if self._target is not None else ("end", None)
                # Text not yet due: a frame was cut before (else it would be due), so _last_cut is set,
                # and the wait ends when the flush interval since that cut has passed.
                wait = None if not self._pending or self._last_cut is None or self._target is None else \
                    max(0.0, self._last_cut + self._flush_seconds - now)
                self._cv.wait(wait)

    def _run(self) -> None:
        while True:
            kind, item = self._next_action()
            if kind == "end":
                return
            if kind == "move":
                self._apply(item)
                continue
            target = self._target
            assert target is not None
            try:
                target.sender.send(target.connection_id, item)
            except ConnectionGone:
                logger.info("client gone mid-stream", extra={"seq": self._next})
                self._lose(target)
                if kind == "final":
                    return
                continue
            except Exception:
                logger.exception("posting a frame failed", extra={"seq": self._next})
                if kind == "final" or self.failed.is_set():
                    return  # the final frame itself could not go: nothing more to try
                self.failed.set()
                continue
            if kind == "final":
                self._final_sent = True
                return
            self._posted += 1
            if kind == "frame":
                with self._cv:
                    if self._target is target:
                        self._next += 1
                if self.first_delta_at is None:
                    self.first_delta_at = time.time()

    def _lose(self, target: _Target) -> None:
        """The target went away: keep cutting and keeping frames for whoever resumes."""
        with self._cv:
            if self._target is target:
                self._target = None
                self.gone.set()

    def _apply(self, move: Move) -> None:
        """Answer a chat.resume on its connection, and post the rest of the stream there."""
        target = _Target(move.connection_id, move.sender)
        with self._cv:
            last = len(self._kept) - 1
            valid = move.after_seq <= last
            if valid:
                self._target = target
                self._next = move.after_seq + 1
                self.gone.clear()
                status = protocol.chat_status(self._final)
        if not valid:
            error = BadRequest(f"'afterSeq' {move.after_seq} is beyond the chat's last frame ({last})")
            try:
                move.sender.send(move.connection_id, protocol.error_frame(error, move.resume_id))
            except Exception:
                logger.info("the refusal of a resume could not be posted", exc_info=True)
            return
        self.moves += 1
        logger.info("chat resumed", extra={"resumedOn": move.connection_id, "afterSeq": move.after_seq,
                                           "lastSeq": last})
        try:
            move.sender.send(move.connection_id, protocol.resumed(move.resume_id, chat_id=move.chat_id,
                                                                  status=status, last_seq=last))
            self._posted += 1
        except ConnectionGone:
            self._lose(target)
        except Exception:
            logger.exception("posting a resume's result failed")
            self.failed.set()


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
