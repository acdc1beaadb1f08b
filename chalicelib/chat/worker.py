"""The bedrock_worker: streams one chat's reply to its connection and records how it ended.

Three threads per chat: a reader pulls the model's events into a queue (it
never waits on a post), this thread consumes them into the DeltaStream and
polls the cancel flag every CANCEL_POLL_SECONDS whatever the model does, and
the DeltaStream's sender posts frames. Whatever happens, one `finally` records
the outcome and the usage (from the model's metadata, or estimated from the
text it produced) and then sends the one final frame: `done` or `error`.
A worker first claims its chat (queued -> streaming), so a retried invocation
of the same event streams nothing twice.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from chalicelib import protocol
from chalicelib.bedrock import BedrockChat, Metadata, MessageStop, ModelRequest, TextDelta
from chalicelib.chat.limits_placeholder import current_limits
from chalicelib.chat.request import ChatRequest
from chalicelib.config import Settings
from chalicelib.connections import Sender
from chalicelib.errors import AppError, Internal, Timeout
from chalicelib.request_store import RequestStore, Usage
from chalicelib.streaming import DeltaStream

logger = logging.getLogger(__name__)

CANCEL_POLL_SECONDS = 0.2  # the cancel flag is seen within this (plus one read), never polled per delta
TIME_LIMIT_MARGIN_MS = 3000  # stop this long before Lambda would kill the worker, to still say so
_END = object()


@dataclass(frozen=True)
class ChatJob:
    """The work item the message handler hands over (see chat.actions.send)."""

    request_id: str
    client_id: str
    connection_id: str
    endpoint: str
    user_sub: str
    chat: ChatRequest

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> "ChatJob":
        return cls(request_id=event["requestId"], client_id=event["clientId"], connection_id=event["connectionId"],
                   endpoint=event["endpoint"], user_sub=event["userSub"], chat=ChatRequest.from_payload(event["chat"]))


@dataclass
class Outcome:
    status: str = "error"  # done | cancelled | error | gone | timeout, or duplicate (nothing to do)
    stop_reason: str | None = None
    error: AppError | None = None
    usage: Usage | None = None  # from the model's metadata event
    text_bytes: int = 0  # what the model produced, for an estimate when metadata never came


class ChatWorker:
    def __init__(self, *, requests: RequestStore, bedrock: BedrockChat, sender: Sender, settings: Settings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._requests = requests
        self._bedrock = bedrock
        self._sender = sender
        self._settings = settings
        self._clock = clock

    def run(self, job: ChatJob, *, remaining_ms: Callable[[], int] | None = None) -> Outcome:
        stream = DeltaStream(sender=self._sender, connection_id=job.connection_id, request_id=job.client_id,
                             flush_bytes=self._settings.stream_flush_bytes, flush_ms=self._settings.stream_flush_ms,
                             clock=self._clock)
        outcome = Outcome()
        reader: threading.Thread | None = None
        try:
            reader = self._stream_reply(job, stream, outcome, remaining_ms)
        except AppError as error:
            outcome.status, outcome.error = ("timeout" if isinstance(error, Timeout) else "error"), error
        except Exception:
            logger.exception("chat worker failed", extra={"requestId": job.request_id})
            outcome.status, outcome.error = "error", Internal()
        finally:
            self._finish(job, stream, outcome)
        if reader is not None:
            reader.join(1.0)  # the reader stops at the model's next event; don't hold the container for it
        return outcome

    # --- reading the model ----------------------------------------------------

    def _stream_reply(self, job: ChatJob, stream: DeltaStream, outcome: Outcome,
                      remaining_ms: Callable[[], int] | None) -> threading.Thread:
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        reader = threading.Thread(target=self._read_model, args=(job.chat.model_request(), events, stop),
                                  name=f"model-{job.request_id[:8]}", daemon=True)
        reader.start()  # the model is called first: recording the status must not delay its first token
        next_poll = self._clock() + CANCEL_POLL_SECONDS
        try:
            if not self._requests.claim(job.request_id):
                outcome.status = "duplicate"
                return reader
            while True:
                now = self._clock()
                if remaining_ms is not None and remaining_ms() < TIME_LIMIT_MARGIN_MS:
                    raise Timeout("the reply ran past the time limit")
                if now >= next_poll:
                    if self._requests.cancel_requested(job.request_id):
                        outcome.status, outcome.stop_reason = "cancelled", "cancelled"
                        return reader
                    next_poll = now + CANCEL_POLL_SECONDS
                if stream.gone.is_set():
                    if stream.failed:
                        outcome.status, outcome.error = "error", Internal()
                    else:
                        outcome.status = "gone"
                    return reader
                try:
                    item = events.get(timeout=max(0.0, next_poll - now))
                except queue.Empty:
                    continue
                if item is _END:
                    outcome.status, outcome.stop_reason = "done", outcome.stop_reason or "end_turn"
                    return reader
                if isinstance(item, AppError):
                    raise item
                if isinstance(item, TextDelta):
                    stream.write(item.text)
                    outcome.text_bytes += len(item.text.encode("utf-8"))
                elif isinstance(item, MessageStop):
                    outcome.stop_reason = item.stop_reason
                elif isinstance(item, Metadata):
                    outcome.usage = item.usage
        finally:
            stop.set()

    def _read_model(self, request: ModelRequest, events: queue.Queue, stop: threading.Event) -> None:
        replies = self._bedrock.stream(request)
        try:
            for event in replies:
                events.put(event)
                if stop.is_set():
                    return
            events.put(_END)
        except AppError as error:
            events.put(error)
        except Exception:
            logger.exception("reading the model failed")
            events.put(Internal())
        finally:
            replies.close()  # closes the HTTP stream: the model is no longer read

    # --- the one end ------------------------------------------------------------

    def _finish(self, job: ChatJob, stream: DeltaStream, outcome: Outcome) -> None:
        """Record the outcome and usage (token settlement belongs here), then send the final frame."""
        if outcome.status == "duplicate":
            # A retried invocation of a chat another worker took: that worker records and answers.
            logger.warning("chat already taken by a worker", extra={"requestId": job.request_id})
            stream.close()
            return
        usage = outcome.usage or Usage(job.chat.estimated_input_tokens(),
                                       (outcome.text_bytes + 3) // 4, estimated=True)
        error_code = outcome.error.code if outcome.error else ("GONE" if outcome.status == "gone" else None)
        try:
            self._requests.finish(job.request_id, status=outcome.status, stop_reason=outcome.stop_reason,
                                  error_code=error_code, usage=usage)
        except Exception:
            logger.exception("recording the outcome failed", extra={"requestId": job.request_id})
        logger.info("chat finished", extra={"requestId": job.request_id, "status": outcome.status,
                                            "stopReason": outcome.stop_reason, "errorCode": error_code,
                                            "inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens,
                                            "usageEstimated": usage.estimated, "frames": stream.frames_sent})
        if stream.gone.is_set():
            return  # nothing can reach the client any more (the sender thread has ended)
        if outcome.error is not None:
            final = protocol.error_frame(outcome.error, job.client_id)
        else:
            final = {"type": "done", "id": job.client_id, "stopReason": outcome.stop_reason,
                     "usage": usage.as_protocol(), "limits": current_limits(user_sub=job.user_sub, now=time.time())}
        stream.finish(final)


def run_chat(event: dict[str, Any], *, services: Any, remaining_ms: Callable[[], int] | None = None) -> str:
    """The bedrock_worker Lambda's body: returns the chat's final status."""
    job = ChatJob.from_event(event)
    worker = ChatWorker(requests=services.requests, bedrock=services.bedrock,
                        sender=services.sender(job.endpoint), settings=services.settings)
    return worker.run(job, remaining_ms=remaining_ms).status

