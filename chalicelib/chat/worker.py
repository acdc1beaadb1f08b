"""The bedrock_worker: streams one chat's reply, to whichever connection has it, and records how it ended.

A worker first claims its chat (queued -> streaming): a retried invocation of the same event, or
one whose start the handler gave up on (queued -> error), streams nothing, and a chat cancelled
before its claim never reaches the model (acked, settled to nothing, ended `cancelled`). Then three
threads: a reader pulls the model's events into a queue (it never waits on a post), this thread
consumes them into the DeltaStream and reads the chat's record every CANCEL_POLL_SECONDS whatever
the model does (a cancel; resumes, each answered in order, which move the stream to the connection
that asked last), and the DeltaStream's sender posts frames: the `ack` first, while the model is
already being called, then the stream frames in order. The chat does not stop when its connection
goes away: it runs to its end or its time limit, its frames kept for whoever resumes it (polled
every RESUME_POLL_SECONDS while nobody listens).

Whatever happens (done, error, cancel, exception, time limit), one `finally` (`_finish`) settles
the token reservation to the usage (the model's metadata, or, when the stream broke before it,
the input estimate and the output read from the model), keeps the stream frames for CHAT_REPLAY_SECONDS
(chalicelib/chat/replay.py), records the outcome with the final frame (the one write that decides
whether a resume is answered by this worker or replayed by the handler: the resumes recorded
before it are followed here), appends the exchange to the session, and then sends the one final
frame: `done` or `error`.

What goes into a session: a finished or cancelled chat always appends its prompt and reply (a
cancelled reply marked `cancelled`). A chat that broke after some text was produced (upstream
error, time limit) appends the partial reply, also marked `cancelled`: the user saw it, or can
resume it, so the model's next turn should too. A chat that failed before any text appends
nothing, so retrying the prompt leaves no unanswered copy behind.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalicelib import protocol
from chalicelib.aws.management_api import Sender
from chalicelib.chat.bedrock import BedrockChat, MessageStop, Metadata, ModelRequest, TextDelta, ToolUse
from chalicelib.chat.inputs import ContextSource, HistorySource, UploadSource, load_input
from chalicelib.chat.job import ChatJob
from chalicelib.chat.replay import FrameLog
from chalicelib.chat.request import ChatRequest
from chalicelib.chat.requests import CANCELLED, CLAIMED, TAKEN, RequestStore, ResumeRequest, Usage
from chalicelib.chat.streaming import DeltaStream, Move
from chalicelib.errors import AppError, Internal, NotFound, PayloadTooLarge, Timeout
from chalicelib.limits import Charge, TokenBudget, fallback_usage
from chalicelib.limits.pricing import micros_to_usd
from chalicelib.observability import bind, metric_names, with_current_context
from chalicelib.observability.metrics import MetricsWriter, count_error, get_metrics
from chalicelib.observability.tracing import annotate, subsegment

logger = logging.getLogger(__name__)

CANCEL_POLL_SECONDS = 0.2  # the cancel flag is seen within this (plus one read), never polled per delta
RESUME_POLL_SECONDS = 0.05  # while no connection listens: a resume is followed within this (plus one read)
TIME_LIMIT_MARGIN_MS = 3000  # stop this long before Lambda would kill the worker, to still say so
_END = object()
CHAT_ACTION = "chat.send"  # the action this worker serves: its logs' and metrics' `action`


@dataclass
class Outcome:
    status: str = "error"  # done | cancelled | error | timeout, or duplicate (nothing to do)
    stop_reason: str | None = None
    error: AppError | None = None
    usage: Usage | None = None  # from the model's metadata event
    reply: list[str] = field(default_factory=list)  # the text handed to the stream, for the fallback and the session
    tool_uses: list[ToolUse] = field(default_factory=list)  # the tool calls handed to the stream
    unsent: list[str] = field(default_factory=list)  # output read from the model that no frame could carry
    prompt: str | None = None  # the chat's prompt as the model got it (an upload's, once read)
    model_called: bool = False  # the input was loaded and sent to the model
    opened: bool = False  # Bedrock accepted a call: its stream opened
    refused: bool = False  # the chat ended with Bedrock refusing every call (no stream opened): nothing was read
    throttled: int = 0  # throttling answers from Bedrock (each one a retry, or the last refusal)
    resumes: int = 0  # the record's resumes followed so far (each answered, in order)

    @property
    def model_read(self) -> bool:
        """Whether the model read the input (and Bedrock charges for it): the request was sent and not refused.
        A cancel or a time limit while the call is in flight counts as read: Bedrock may well have read it."""
        return self.model_called and not self.refused

    @property
    def reply_text(self) -> str:
        return "".join(self.reply)

    @property
    def generated_text(self) -> str:
        """Everything read from the model: the text and tool calls handed out, and a tool call too large to be
        (Bedrock bills it all the same)."""
        return self.reply_text + "".join(protocol.encode(use.input) for use in self.tool_uses) + "".join(self.unsent)


class ChatWorker:
    def __init__(self, *, requests: RequestStore, bedrock: BedrockChat, sender_for: Callable[[str], Sender],
                 flush_bytes: int, flush_ms: int, budget: TokenBudget, sessions: HistorySource,
                 context: ContextSource, frames: FrameLog, replay_seconds: int, uploads: UploadSource | None = None,
                 metrics: MetricsWriter | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        self._requests = requests
        self._bedrock = bedrock
        self._sender_for = sender_for  # the Management API sender for an endpoint
        self._flush_bytes = flush_bytes  # STREAM_FLUSH_BYTES
        self._flush_ms = flush_ms  # STREAM_FLUSH_MS
        self._budget = budget
        self._sessions = sessions
        self._context = context
        self._frames = frames
        self._replay_seconds = replay_seconds  # CHAT_REPLAY_SECONDS
        self._uploads = uploads
        self._metrics = metrics or get_metrics()
        self._clock = clock
        self._wall_clock = wall_clock  # which limit windows are current

    def run(self, job: ChatJob, *, remaining_ms: Callable[[], int] | None = None) -> Outcome:
        # Bound before any thread starts (the reader's and the DeltaStream's sender carry it on).
        with bind(connectionId=job.connection_id, sub=job.user_sub, action=CHAT_ACTION, id=job.client_id,
                  requestId=job.request_id):
            return self._run(job, remaining_ms)

    def _run(self, job: ChatJob, remaining_ms: Callable[[], int] | None) -> Outcome:
        outcome = Outcome()
        # Claimed before the ack and the model: a duplicate invocation (Lambda delivers asynchronous
        # events at least once) must not pay for, nor leave unrecorded, a second model call, and a
        # chat the handler gave up on (its worker seemed not to start) is not streamed behind its back.
        try:
            claim = self._requests.claim(job.request_id)
        except Exception:
            logger.exception("claiming the chat failed", extra={"requestId": job.request_id})
            claim, outcome.error = CLAIMED, Internal()  # it may be ours: end it as ours, without an ack
        if claim == TAKEN:
            logger.warning("chat already taken", extra={"requestId": job.request_id})
            outcome.status = "duplicate"
            return outcome
        if claim == CANCELLED:  # cancelled before the claim: acked, never sent to the model, ended cancelled
            outcome.status, outcome.stop_reason = "cancelled", "cancelled"
        stream = DeltaStream(sender=self._sender_for(job.endpoint), connection_id=job.connection_id,
                             request_id=job.client_id, flush_bytes=self._flush_bytes, flush_ms=self._flush_ms,
                             clock=self._clock, first_frame=None if outcome.error else ack_frame(job))
        reader: threading.Thread | None = None
        try:
            if outcome.error is None and claim == CLAIMED:
                with subsegment("bedrock.stream", model=job.chat.model):
                    try:
                        reader = self._stream_reply(job, stream, outcome, remaining_ms)
                    finally:
                        annotate(outcome=outcome.status)
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
        chat = self._content(job)
        outcome.prompt = chat.prompt
        converse_input = load_input(chat, job.plan, user_sub=job.user_sub, sessions=self._sessions,
                                    context=self._context)
        request = chat.model_request(max_tokens=job.reservation.max_tokens, converse_input=converse_input)
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        reader = threading.Thread(target=with_current_context(self._read_model), args=(request, events, stop, outcome),
                                  name=f"model-{job.request_id[:8]}", daemon=True)
        outcome.model_called = True
        reader.start()
        polled = self._clock()
        try:
            while True:
                now = self._clock()
                if remaining_ms is not None and remaining_ms() < TIME_LIMIT_MARGIN_MS:
                    raise Timeout("the reply ran past the time limit")
                next_poll = polled + (CANCEL_POLL_SECONDS if stream.connected else RESUME_POLL_SECONDS)
                if now >= next_poll:
                    watch = self._requests.watch(job.request_id)
                    if watch.cancel_requested:
                        outcome.status, outcome.stop_reason = "cancelled", "cancelled"
                        return reader
                    if watch.resume_count > outcome.resumes:
                        for move in self._follow(job, outcome, self._requests.resumes(job.request_id)):
                            stream.move(move)
                    polled = next_poll = now
                    continue
                if stream.failed.is_set():
                    outcome.status, outcome.error = "error", Internal("the reply could not be delivered")
                    return reader
                try:
                    item = events.get(timeout=max(0.0, next_poll - now))
                except queue.Empty:
                    continue
                if item is _END:
                    outcome.status, outcome.stop_reason = "done", outcome.stop_reason or "end_turn"
                    return reader
                if isinstance(item, AppError):
                    outcome.refused = not outcome.opened  # Bedrock answered every call with an error
                    raise item
                if isinstance(item, TextDelta):
                    stream.write(item.text)
                    outcome.reply.append(item.text)
                elif isinstance(item, ToolUse):
                    try:
                        _check_frame_size(job, item)
                    except PayloadTooLarge:
                        outcome.unsent.append(protocol.encode(item.input))  # generated, so charged
                        raise
                    stream.write_tool_use(item)
                    outcome.tool_uses.append(item)
                elif isinstance(item, MessageStop):
                    outcome.stop_reason = item.stop_reason
                elif isinstance(item, Metadata):
                    outcome.usage = item.usage
        finally:
            stop.set()

    def _follow(self, job: ChatJob, outcome: Outcome, resumes: list[ResumeRequest]) -> list[Move]:
        """The moves of the resumes not followed yet, in the order they were asked."""
        new = resumes[outcome.resumes:]
        outcome.resumes = max(outcome.resumes, len(resumes))
        return [Move(connection_id=resume.connection_id, sender=self._sender_for(resume.endpoint),
                     after_seq=resume.after_seq, resume_id=resume.resume_id, chat_id=job.request_id)
                for resume in new]

    def _content(self, job: ChatJob) -> ChatRequest:
        """The chat with its content: from the event, or read (then deleted) from its upload."""
        upload = job.chat.upload
        if upload is None:
            return job.chat
        if self._uploads is None:
            raise Internal("this worker cannot read uploads")
        try:
            return job.chat.with_content(self._uploads.load(job.user_sub, upload))
        finally:
            try:  # used once: whatever came of reading it
                self._uploads.discard(job.user_sub, upload.upload_id)
            except Exception:
                logger.exception("deleting the upload failed (its lifecycle rule will)")

    def _read_model(self, request: ModelRequest, events: queue.Queue, stop: threading.Event,
                    outcome: Outcome) -> None:
        def throttled() -> None:
            outcome.throttled += 1

        def opened() -> None:
            outcome.opened = True

        replies = self._bedrock.stream(request, on_throttled=throttled, on_opened=opened)
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
        """Settle, keep the frames, record, append to the session, then send the final frame: every outcome
        ends here."""
        frames = stream.seal()
        reply = outcome.reply_text
        reported = outcome.usage
        if reported is None:  # no metadata: the input the model read, and what it generated (nothing is free)
            reported = Usage(*fallback_usage(job.reservation, outcome.generated_text, model_read=outcome.model_read),
                             estimated=True)
        charge = job.reservation.charge(reported.input_tokens, reported.output_tokens,
                                        cache_read=reported.cache_read_input_tokens,
                                        cache_write=reported.cache_write_input_tokens)
        usage = Usage(charge.input_tokens, charge.output_tokens, estimated=reported.estimated,
                      cache_read_input_tokens=charge.cache_read_input_tokens,
                      cache_write_input_tokens=charge.cache_write_input_tokens)
        limits = self._settle(job, charge)
        error_code = outcome.error.code if outcome.error else None

        def final_frame() -> dict[str, Any]:
            if outcome.error is not None:
                return protocol.error_frame(outcome.error, job.client_id)
            return protocol.done(job.client_id, stop_reason=outcome.stop_reason, usage=charge.usage_wire(),
                                 limits=limits)

        final = final_frame()
        moves: list[Move] = []
        replay_until = int(self._wall_clock()) + self._replay_seconds
        parts = self._keep_frames(job, frames, replay_until)

        def record(*, unless_cancelled: bool) -> dict[str, Any] | None:
            return self._requests.finish(job.request_id, status=outcome.status, stop_reason=outcome.stop_reason,
                                         error_code=error_code, usage=usage, unless_cancelled=unless_cancelled,
                                         final_frame=final, last_seq=len(frames) - 1, frame_parts=parts,
                                         replay_until=replay_until)

        try:
            written = record(unless_cancelled=outcome.status == "done" and outcome.error is None)
            if written is None:
                # A cancel was accepted after the model's last token: its answer promised a cancelled end.
                outcome.status, outcome.stop_reason = "cancelled", "cancelled"
                final = final_frame()
                written = record(unless_cancelled=False)
            # The resumes recorded before the end are this worker's to answer; any later one is replayed by the handler.
            moves = self._follow(job, outcome, ResumeRequest.all_from_item(written or {}))
        except Exception:
            logger.exception("recording the outcome failed", extra={"requestId": job.request_id})
        self._append_exchange(job, outcome, reply)
        logger.info("chat finished", extra={"requestId": job.request_id, "status": outcome.status,
                                            "outcome": _log_outcome(outcome),
                                            "latencyMs": int((time.time() - job.received_at) * 1000),
                                            "stopReason": outcome.stop_reason, "errorCode": error_code,
                                            "inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens,
                                            "cacheReadInputTokens": usage.cache_read_input_tokens,
                                            "cacheWriteInputTokens": usage.cache_write_input_tokens,
                                            "costMicros": charge.cost_micros, "toolUses": len(outcome.tool_uses),
                                            "usageEstimated": usage.estimated, "frames": len(frames),
                                            "framesKept": parts is not None, "resumes": outcome.resumes})
        if charge.uncovered_input_tokens or charge.uncovered_output_tokens:
            # The count or the bound was below what Bedrock reports: the user is charged what was reserved,
            # the rest is ours. Should never happen (docs/OPERATIONS.md, "Guarantees").
            logger.warning("usage beyond the reservation", extra={
                "requestId": job.request_id, "model": job.chat.model, "reservedInput": job.reservation.input_tokens,
                "uncoveredInputTokens": charge.uncovered_input_tokens,
                "uncoveredOutputTokens": charge.uncovered_output_tokens})
        sent_final = stream.finish(final, moves=moves)
        self._emit_metrics(job, stream, outcome, reported, charge, sent_final)

    def _keep_frames(self, job: ChatJob, frames: list[dict[str, Any]], until: int) -> int | None:
        """The frames into the FrameLog for chat.resume; the number of parts, or None if they could not be kept."""
        try:
            return self._frames.keep(job.request_id, job.user_sub, frames, until=until)
        except Exception:
            # The chat is still served to its connection; only a resume after its end will say NOT_FOUND.
            logger.exception("keeping the stream frames failed", extra={"requestId": job.request_id})
            return None

    def _settle(self, job: ChatJob, charge: Charge) -> dict[str, Any]:
        """Replace the reservation by the charge; the `limits` the `done` frame carries."""
        reservation = job.reservation
        try:
            settlement = self._budget.settle(reservation, charge, job.chat.model)
            return settlement.limits.to_wire()
        except Exception:
            # The reservation stays counted until its hour ends: the user is charged the worst case, never less.
            logger.exception("settling the token reservation failed", extra={"requestId": job.request_id})
            return reservation.limits.at(self._wall_clock()).to_wire()

    def _append_exchange(self, job: ChatJob, outcome: Outcome, reply: str) -> None:
        """The prompt and the reply into the session (see the module docstring for which outcomes)."""
        if job.chat.session_id is None or not outcome.model_called or outcome.prompt is None:
            return
        finished = outcome.status == "done" and outcome.error is None
        if not finished and outcome.status != "cancelled" and not reply:
            return
        try:
            self._sessions.append_exchange(job.user_sub, job.chat.session_id, job.request_id, outcome.prompt,
                                           reply, not finished)
        except NotFound:
            # Deleted mid-chat (also while this very append ran: it then removed what it wrote). The chat itself
            # has been served; nothing of it is kept.
            logger.info("session deleted mid-chat: the exchange is not kept", extra={"requestId": job.request_id})
        except Exception:
            logger.exception("appending the exchange to the session failed", extra={"requestId": job.request_id})

    def _emit_metrics(self, job: ChatJob, stream: DeltaStream, outcome: Outcome, usage: Usage, charge: Charge,
                      sent_final: bool) -> None:
        """`usage` as reported (Bedrock's, or the fallback): what on-call compares with Bedrock's own metrics."""
        model = {metric_names.MODEL: job.chat.model}
        now = time.time()
        try:
            self._metrics.emit(metric_names.CHAT_LATENCY, round((now - job.received_at) * 1000, 1), dimensions=model)
            if stream.first_delta_at is not None:
                self._metrics.emit(metric_names.TIME_TO_FIRST_TOKEN,
                                   round((stream.first_delta_at - job.received_at) * 1000, 1), dimensions=model)
            self._metrics.emit(metric_names.INPUT_TOKENS, usage.input_tokens, dimensions=model)
            self._metrics.emit(metric_names.OUTPUT_TOKENS, usage.output_tokens, dimensions=model)
            if charge.cost_micros is not None:
                self._metrics.emit(metric_names.CHAT_COST, micros_to_usd(charge.cost_micros), dimensions=model)
            uncovered = charge.uncovered_input_tokens + charge.uncovered_output_tokens
            if uncovered:
                self._metrics.emit(metric_names.UNCOVERED_TOKENS, uncovered, dimensions=model)
            action = {metric_names.ACTION: CHAT_ACTION}
            self._metrics.emit(metric_names.FRAMES_SENT, stream.frames_sent + int(sent_final), dimensions=action)
            for _ in range(outcome.throttled):
                self._metrics.emit(metric_names.UPSTREAM_THROTTLED, 1, dimensions=action)
            if outcome.error is not None:  # counted whether or not the frame still reached the client
                count_error(self._metrics, outcome.error.code)
        except Exception:
            logger.exception("emitting chat metrics failed", extra={"requestId": job.request_id})


def ack_frame(job: ChatJob) -> dict[str, Any]:
    """The chat's `ack`: what the handler admitted (the reservation as of admission)."""
    reservation = job.reservation
    return protocol.ack(job.client_id, chat_id=job.request_id, session_id=job.chat.session_id, model=job.chat.model,
                        max_tokens=reservation.max_tokens, limits=reservation.limits.to_wire())


def _check_frame_size(job: ChatJob, tool_use: ToolUse) -> None:
    """A toolUse frame must fit what API Gateway posts to a connection; else the chat ends saying so."""
    frame = protocol.tool_use(job.client_id, seq=0, tool_use_id=tool_use.tool_use_id, name=tool_use.name,
                              input=tool_use.input)
    size = protocol.encoded_size(frame)
    if size > protocol.MAX_SERVER_FRAME_BYTES:
        raise PayloadTooLarge(f"the model's call of tool {tool_use.name!r} is {size} bytes, more than a frame "
                              f"carries ({protocol.MAX_SERVER_FRAME_BYTES}); ask for a smaller maxTokens")


def _log_outcome(outcome: Outcome) -> str:
    """The "chat finished" line's `outcome`, in the other handlers' terms: `ok`, the error frame's code
    or `cancelled`."""
    if outcome.error is not None:
        return outcome.error.code
    return "ok" if outcome.status == "done" else outcome.status
