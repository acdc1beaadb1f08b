"""The chat worker with fakes at its boundaries: the ack first, outcomes, cancel polling, time limit, a
client that goes away (the chat runs on), and the settlement of the token reservation, the frames kept,
the session's exchange and the metrics for every outcome. Resumes: tests/unit/test_chat_resume.py."""
from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from typing import Any

import pytest

from chalicelib.chat.bedrock import MessageStop, Metadata, TextDelta, ToolUse
from chalicelib.chat.inputs import InputPlan
from chalicelib.chat.job import ChatJob
from chalicelib.chat.request import ChatRequest
from chalicelib.chat.requests import CANCELLED, CLAIMED, TAKEN, ResumeRequest, Usage, Watch
from chalicelib.chat.worker import ChatWorker
from chalicelib.config import load_settings
from chalicelib.errors import ConnectionGone, NotFound, UpstreamError, UpstreamThrottled
from chalicelib.limits import LimitsSnapshot, Reservation, Settlement
from tests.fakes import FakeMetrics, Network, RecordingSender

SETTINGS = load_settings({"COGNITO_USER_POOL_ID": "eu-west-1_AbC123", "COGNITO_APP_CLIENT_IDS": "c"})
NOW = time.time()  # the windows of the snapshot are the current ones
SNAPSHOT = LimitsSnapshot(requests_limit=100, requests_used=1, minute_start=int(NOW // 60 * 60), tokens_limit=10000,
                          tokens_used=103, hour_start=int(NOW // 3600 * 3600), taken_at=NOW)
RESERVATION = Reservation(user_sub="sub-1", request_id="r" * 32, hour_start=int(NOW // 3600 * 3600),
                          input_tokens=3, max_tokens=100, limits=SNAPSHOT)
JOB = ChatJob(request_id="r" * 32, client_id="chat-1", connection_id="conn", endpoint="http://x", user_sub="sub-1",
              chat=ChatRequest(prompt="hello world", model="m", max_tokens=100), reservation=RESERVATION,
              plan=InputPlan(history_tokens=0, context_tokens=0, input_tokens=3), received_at=time.time())
SESSION_JOB = dataclasses.replace(JOB, chat=dataclasses.replace(JOB.chat, session_id="a" * 32))


@pytest.fixture(autouse=True)
def settings_env(monkeypatch):
    """The worker's tracing reads the settings (tracing off here, as in the local stack)."""
    from chalicelib import process

    for name, value in (("COGNITO_USER_POOL_ID", "eu-west-1_AbC123"), ("COGNITO_APP_CLIENT_IDS", "c")):
        monkeypatch.setenv(name, value)
    process.reset()
    yield
    process.reset()


class FakeBudget:
    def __init__(self, *, fail=False) -> None:
        self.settled: list[tuple] = []
        self.fail = fail

    def settle(self, reservation, charge, model, *, now=None):
        self.settled.append((reservation.request_id, charge.input_tokens, charge.output_tokens, model))
        self.cache = (charge.cache_read_input_tokens, charge.cache_write_input_tokens)
        if self.fail:
            raise RuntimeError("DynamoDB is down")
        return Settlement(charge=charge, already_settled=False,
                          limits=reservation.limits.with_tokens_changed(charge.budget_tokens - reservation.reserved))


class FakeSessions:
    def __init__(self, *, history=(), gone=False) -> None:
        self.history = list(history)
        self.loaded_with: list[tuple[int, int | None]] = []
        self.appended: list[tuple] = []
        self.gone = gone

    def history_for(self, user_sub, session_id, token_limit, message_limit=None):
        self.loaded_with.append((token_limit, message_limit))
        return self.history

    def append_exchange(self, user_sub, session_id, request_id, prompt, reply, cancelled):
        if self.gone:
            raise NotFound("no such session")
        self.appended.append((user_sub, session_id, request_id, prompt, reply, cancelled))


class FakeRequests:
    def __init__(self) -> None:
        self.polls: list[float] = []
        self.cancel = threading.Event()
        self.statuses: list[str] = []
        self.finished: Any = None  # the keyword arguments of the last finish()
        self.cancelled_before_claim = False  # the cancel flag, if set, was set while the chat was queued
        self.resumes_asked: list[ResumeRequest] = []  # as request_resume appends them

    def claim(self, request_id, now=None):
        self.statuses.append("streaming")
        if len(self.statuses) > 1:
            return TAKEN  # a second invocation finds it taken
        return CANCELLED if self.cancel.is_set() and self.cancelled_before_claim else CLAIMED

    def watch(self, request_id):
        self.polls.append(time.monotonic())
        return Watch(cancel_requested=self.cancel.is_set(), resume_count=len(self.resumes_asked))

    def resumes(self, request_id):
        return list(self.resumes_asked)

    def finish(self, request_id, *, unless_cancelled=False, **outcome):
        if unless_cancelled and self.cancel.is_set():
            return None
        self.finished = outcome
        return {"resumeCount": len(self.resumes_asked),
                "resumes": [{"connectionId": r.connection_id, "endpoint": r.endpoint, "afterSeq": r.after_seq,
                             "id": r.resume_id} for r in self.resumes_asked]}


class FakeFrameLog:
    def __init__(self, *, fail=False) -> None:
        self.kept: dict[str, list[dict]] = {}
        self.fail = fail

    def keep(self, request_id, user_sub, frames, *, until):
        if self.fail:
            raise RuntimeError("DynamoDB is down")
        self.kept[request_id] = list(frames)
        self.until = until
        return 1 if frames else 0


class FakeBedrock:
    """A model whose stream opens (unless `opened` is False: Bedrock refused the call), then yields `events`
    and raises `error`."""

    def __init__(self, events, *, delay=0.0, error=None, opened=True):
        self.events, self.delay, self.error, self.opened = events, delay, error, opened
        self.closed = threading.Event()

    def stream(self, request, on_throttled=None, on_opened=None):
        self.request = request
        if self.opened:
            on_opened()
        try:
            for event in self.events:
                time.sleep(self.delay)
                yield event
            if self.error:
                raise self.error
        finally:
            self.closed.set()


def make_worker(bedrock, *, requests=None, sender=None, budget=None, sessions=None, metrics=None, frame_log=None,
                wall_clock=time.time, **settings):
    stream = dataclasses.replace(SETTINGS, **settings)
    # The fakes stand in for the worker's collaborators by duck typing.
    fakes: dict[str, Any] = {"budget": budget or FakeBudget(), "sessions": sessions or FakeSessions(),
                             "context": None, "metrics": metrics or FakeMetrics(),
                             "frames": frame_log or FakeFrameLog(), "requests": requests or FakeRequests()}
    return ChatWorker(bedrock=bedrock,
                      sender_for=lambda endpoint: sender or RecordingSender(), flush_bytes=stream.stream_flush_bytes,
                      flush_ms=stream.stream_flush_ms, replay_seconds=stream.chat_replay_seconds,
                      wall_clock=wall_clock, **fakes)


def run(bedrock, *, requests=None, sender=None, remaining_ms=None, job=JOB, **options):
    """(outcome, requests, the frames after the ack): the ack, when anything was posted, came first."""
    requests, sender = requests or FakeRequests(), sender or RecordingSender()
    outcome = make_worker(bedrock, requests=requests, sender=sender, **options).run(job, remaining_ms=remaining_ms)
    frames = sender.frames.get("conn", [])
    if frames:
        assert frames[0]["type"] == "ack" and frames[0]["requestId"] == job.request_id, frames[0]
    return outcome, requests, frames[1:]


def texts(frames):
    return "".join(f["text"] for f in frames if f["type"] == "delta")


def test_a_reply_streams_and_ends_with_done_and_the_models_usage():
    events = [TextDelta(t) for t in ("hel", "lo ", "wor", "ld")] + [MessageStop("end_turn"),
                                                                     Metadata(Usage(3, 4))]
    sender = RecordingSender()
    _outcome, requests, frames = run(FakeBedrock(events), sender=sender)
    assert sender.frames["conn"][0] == {"type": "ack", "id": "chat-1", "requestId": "r" * 32, "sessionId": None,
                                        "model": "m", "maxTokens": 100, "limits": SNAPSHOT.to_wire()}
    assert texts(frames) == "hello world"
    assert frames[-1]["type"] == "done" and frames[-1]["stopReason"] == "end_turn"
    assert frames[-1]["usage"] == {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7,
                                   "cacheReadInputTokens": 0, "cacheWriteInputTokens": 0}
    assert requests.statuses == ["streaming"]
    assert requests.finished["status"] == "done" and requests.finished["usage"] == Usage(3, 4)


def test_the_cancel_flag_is_polled_on_a_timer_not_per_delta():
    events = [TextDelta("x")] * 300 + [MessageStop("end_turn")]
    started = time.monotonic()
    outcome, requests, frames = run(FakeBedrock(events, delay=0.002))
    elapsed = time.monotonic() - started
    assert outcome.status == "done" and texts(frames) == "x" * 300
    assert len(requests.polls) <= elapsed / 0.2 + 1  # not 300
    gaps = [b - a for a, b in itertools.pairwise(requests.polls)]
    assert all(gap >= 0.19 for gap in gaps)


def test_cancel_is_seen_within_250_ms_even_while_the_model_is_silent():
    requests = FakeRequests()
    bedrock = FakeBedrock([TextDelta("first")] + [TextDelta("late")] * 5, delay=1.0)  # a delta a second
    sent_at: dict[str, float] = {}

    class TimedSender(RecordingSender):
        def send(self, connection_id, frame):
            sent_at[frame["type"]] = time.monotonic()
            super().send(connection_id, frame)

    threading.Timer(1.2, requests.cancel.set).start()  # after the first delta
    started = time.monotonic()
    outcome, requests, frames = run(bedrock, requests=requests, sender=TimedSender())
    assert sent_at["done"] - started < 1.2 + 0.25 + 0.1
    assert outcome.status == "cancelled"
    assert frames[-1]["type"] == "done" and frames[-1]["stopReason"] == "cancelled"
    assert texts(frames) == "first"
    assert requests.finished["status"] == "cancelled" and requests.finished["usage"].estimated


def test_an_upstream_error_after_text_follows_the_deltas_and_usage_is_estimated():
    bedrock = FakeBedrock([TextDelta("abcd"), TextDelta("efgh")], error=UpstreamError("the model failed"))
    _outcome, requests, frames = run(bedrock)
    assert texts(frames) == "abcdefgh"
    assert frames[-1] == {"type": "error", "id": "chat-1", "error": {"code": "UPSTREAM_ERROR",
                                                                    "message": "the model failed"}}
    assert sum(f["type"] in ("done", "error") for f in frames) == 1
    usage = requests.finished["usage"]
    assert usage.estimated and usage.output_tokens == 8 and usage.input_tokens == 3  # 8 bytes served; the input
    assert requests.finished["error_code"] == "UPSTREAM_ERROR"


def test_the_worker_stops_before_its_lambda_time_limit_with_timeout():
    outcome, requests, frames = run(FakeBedrock([TextDelta("x")] * 10, delay=0.05), remaining_ms=lambda: 2000)
    assert outcome.status == "timeout" and frames[-1]["error"]["code"] == "TIMEOUT"
    assert requests.finished["status"] == "timeout"


def test_a_post_that_fails_otherwise_stops_the_model_and_the_client_gets_an_error():
    class ThrottledOnce(RecordingSender):
        """API Gateway refuses the second post (LimitExceededException after botocore's retries)."""

        def send(self, connection_id, frame):
            if len(self.frames.get(connection_id, [])) == 1 and not getattr(self, "refused", False):  # after the ack
                self.refused = True
                raise RuntimeError("LimitExceededException")
            super().send(connection_id, frame)

    bedrock = FakeBedrock([TextDelta("x")] * 100, delay=0.01)
    outcome, requests, frames = run(bedrock, sender=ThrottledOnce(), stream_flush_bytes=1)
    assert [f["type"] for f in frames] == ["error"]
    assert frames[-1]["error"] == {"code": "INTERNAL", "message": "the reply could not be delivered"}
    assert outcome.status == "error" and requests.finished["error_code"] == "INTERNAL"
    assert bedrock.closed.wait(1)  # the model is no longer read


def test_a_cancel_accepted_after_the_models_last_token_still_ends_cancelled():
    class LateCancel(FakeRequests):
        """The cancel lands between the worker's last poll and its record of the outcome."""

        def watch(self, request_id):
            return Watch(cancel_requested=False, resume_count=0)

    requests = LateCancel()
    requests.cancel.set()
    outcome, _, frames = run(FakeBedrock([TextDelta("all of it"), MessageStop("end_turn"), Metadata(Usage(3, 3))]),
                             requests=requests)
    assert frames[-1]["type"] == "done" and frames[-1]["stopReason"] == "cancelled"
    assert outcome.status == "cancelled" and requests.finished["status"] == "cancelled"


def test_a_client_that_goes_away_does_not_stop_the_chat_its_frames_are_kept_to_the_end():
    sender, frame_log = RecordingSender(), FakeFrameLog()
    sender.gone.add("conn")
    bedrock = FakeBedrock([TextDelta("x")] * 100 + [MessageStop("end_turn"), Metadata(Usage(3, 100))], delay=0.002)
    outcome, requests, frames = run(bedrock, sender=sender, frame_log=frame_log)
    assert outcome.status == "done" and frames == []  # nothing reached the client, not even the ack
    assert requests.finished["status"] == "done" and requests.finished["usage"] == Usage(3, 100)
    kept = frame_log.kept["r" * 32]
    assert "".join(f["text"] for f in kept) == "x" * 100 and [f["seq"] for f in kept] == list(range(len(kept)))
    assert len(kept) == 1  # nobody listened: one frame as large as a frame may be, not one per flush
    assert requests.finished["last_seq"] == 0 and requests.finished["frame_parts"] == 1
    assert requests.finished["final_frame"]["type"] == "done"
    assert requests.finished["replay_until"] == pytest.approx(time.time() + 3600, abs=5)


def test_a_chat_cancelled_before_its_claim_never_reaches_the_model_and_settles_nothing():
    requests, budget = FakeRequests(), FakeBudget()
    requests.cancel.set()
    requests.cancelled_before_claim = True
    bedrock = FakeBedrock([TextDelta("never")])
    outcome, requests, frames = run(bedrock, requests=requests, budget=budget)
    assert not hasattr(bedrock, "request")  # not sent: nothing read, nothing to charge
    assert outcome.status == "cancelled" and frames == [frames[-1]] and frames[-1]["stopReason"] == "cancelled"
    assert budget.settled == [("r" * 32, 0, 0, "m")]
    assert requests.finished["status"] == "cancelled" and requests.finished["usage"] == Usage(0, 0, estimated=True)


def test_usage_beyond_the_reservation_is_not_charged_but_logged_and_counted():
    metrics = FakeMetrics()
    events = [TextDelta("hi"), MessageStop("max_tokens"),
              Metadata(Usage(40, 120, cache_read_input_tokens=5, cache_write_input_tokens=7))]
    lines = worker_log_lines(bedrock=FakeBedrock(events), metrics=metrics)
    [warning] = [line for line in lines if line["message"] == "usage beyond the reservation"]
    # 3 input reserved (cut from cache reads first, then writes, then plain input), 100 output granted.
    assert (warning["uncoveredInputTokens"], warning["uncoveredOutputTokens"]) == (49, 20)
    [finished] = [line for line in lines if line["message"] == "chat finished"]
    assert (finished["inputTokens"], finished["cacheWriteInputTokens"], finished["cacheReadInputTokens"],
            finished["outputTokens"]) == (3, 0, 0, 100)
    assert ("UncoveredTokens", 69, {"model": "m"}) in metrics.emitted
    assert ("InputTokens", 40, {"model": "m"}) in metrics.emitted  # on-call's metric keeps Bedrock's figure


def test_a_retried_invocation_of_a_taken_chat_sends_and_records_nothing():
    requests = FakeRequests()
    run(FakeBedrock([TextDelta("once"), MessageStop("end_turn")]), requests=requests)
    first = requests.finished
    requests.finished = None
    bedrock = FakeBedrock([TextDelta("twice")] * 50, delay=0.01)
    outcome, requests, frames = run(bedrock, requests=requests)
    assert outcome.status == "duplicate" and frames == [] and requests.finished is None
    assert first["status"] == "done"
    assert not hasattr(bedrock, "request")  # the model was never called: nothing billed twice


# --- settlement, session and metrics: every outcome ends in the one finish path ---------------------------

class Exploding:
    """A model stream that raises something no one expected, after `after` deltas."""

    def __init__(self, after: int) -> None:
        self.after = after

    def stream(self, request, on_throttled=None, on_opened=None):
        on_opened()
        for _ in range(self.after):
            yield TextDelta("abcd")
        raise RuntimeError("a bug in the stream")


def test_a_finished_chat_settles_the_models_usage_and_done_carries_the_settled_limits():
    budget, metrics = FakeBudget(), FakeMetrics()
    events = [TextDelta("hello"), MessageStop("end_turn"), Metadata(Usage(3, 4))]
    _outcome, _requests, frames = run(FakeBedrock(events), budget=budget, metrics=metrics)
    assert budget.settled == [("r" * 32, 3, 4, "m")]
    # Reserved 103, used 7: the done frame's remaining gives back the difference.
    assert frames[-1]["limits"]["tokens"] == {"limit": 10000, "remaining": 10000 - 7,
                                              "resetAt": SNAPSHOT.hour_start + 3600}
    assert frames[-1]["usage"] == {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7,
                                   "cacheReadInputTokens": 0, "cacheWriteInputTokens": 0}
    assert {"ChatLatency", "TimeToFirstToken", "InputTokens", "OutputTokens", "FramesSent"} <= set(metrics.names())
    assert ("FramesSent", 1 + len(frames), {"action": "chat.send"}) in metrics.emitted  # the ack, the deltas, done
    assert ("OutputTokens", 4, {"model": "m"}) in metrics.emitted


@pytest.mark.parametrize("name, bedrock, served, status, read", [
    ("refused by Bedrock", FakeBedrock([], error=UpstreamThrottled("busy", retry_after=5), opened=False), "",
     "error", False),
    ("upstream error before any text", FakeBedrock([], error=UpstreamError("the model failed")), "", "error", True),
    ("upstream error after text", FakeBedrock([TextDelta("abcd")] * 2, error=UpstreamError("x")), "abcd" * 2, "error",
     True),
    ("exception before any text", Exploding(0), "", "error", True),
    ("exception after text", Exploding(3), "abcd" * 3, "error", True),
    ("no metadata", FakeBedrock([TextDelta("abcdefg"), MessageStop("end_turn")]), "abcdefg", "done", True),
    ("no metadata, more than maxTokens", FakeBedrock([TextDelta("é" * 80)]), "é" * 80, "done", True),
])
def test_a_stream_without_metadata_settles_the_input_read_and_what_was_served(name, bedrock, served, status, read):
    budget = FakeBudget()
    outcome, requests, frames = run(bedrock, budget=budget)
    assert outcome.status == status and texts(frames) == served
    # The input the model read, however the chat ended (nothing but Bedrock's refusal makes it free); the
    # output at most a token per byte served, never more than the 100 granted.
    output = min(100, len(served.encode()))
    assert budget.settled == [("r" * 32, 3 if read else 0, output, "m")]
    assert requests.finished["usage"] == Usage(3 if read else 0, output, estimated=True)


def test_cancel_timeout_and_disconnect_settle_the_text_produced():
    requests = FakeRequests()
    requests.cancel.set()
    budget = FakeBudget()
    outcome, _, frames = run(FakeBedrock([TextDelta("abcd")] * 50, delay=0.01), requests=requests, budget=budget)
    assert outcome.status == "cancelled" and budget.settled[0][1:3] == (3, min(100, len(texts(frames))))

    budget = FakeBudget()
    outcome, _, frames = run(FakeBedrock([TextDelta("abcd")] * 20, delay=0.05), remaining_ms=lambda: 2000,
                             budget=budget)
    assert outcome.status == "timeout" and len(budget.settled) == 1

    sender, budget = RecordingSender(), FakeBudget()
    sender.gone.add("conn")  # the client left: the chat runs on, and all it produced counts, posted or not
    outcome, _, _ = run(FakeBedrock([TextDelta("abcd")] * 100, delay=0.001), sender=sender, budget=budget)
    assert outcome.status == "done" and budget.settled == [("r" * 32, 3, 100, "m")]


def test_a_failed_settlement_still_ends_the_chat_with_done():
    budget = FakeBudget(fail=True)
    # The clock stays in the snapshot's hour, so the assertion holds when the suite crosses an hour.
    _outcome, requests, frames = run(FakeBedrock([TextDelta("hi"), Metadata(Usage(1, 1))]), budget=budget,
                                    wall_clock=lambda: NOW)
    assert frames[-1]["type"] == "done" and frames[-1]["usage"]["totalTokens"] == 2
    assert frames[-1]["limits"]["tokens"]["remaining"] == 10000 - 103  # the reservation stays counted
    assert requests.finished["status"] == "done"


def test_a_retried_invocation_settles_nothing():
    requests, budget = FakeRequests(), FakeBudget()
    run(FakeBedrock([TextDelta("once"), MessageStop("end_turn")]), requests=requests, budget=budget)
    run(FakeBedrock([TextDelta("twice")]), requests=requests, budget=budget)
    assert len(budget.settled) == 1


def test_the_model_gets_the_history_and_the_reserved_max_tokens_and_the_exchange_is_appended():
    sessions = FakeSessions(history=[{"role": "user", "content": "before"}, {"role": "assistant", "content": "reply"}])
    job = dataclasses.replace(SESSION_JOB, plan=InputPlan(history_tokens=4, context_tokens=0, input_tokens=60,
                                                          history_messages=2),
                              reservation=dataclasses.replace(RESERVATION, max_tokens=42))
    bedrock = FakeBedrock([TextDelta("hello world"), MessageStop("end_turn")])
    run(bedrock, sessions=sessions, job=job)
    arguments = bedrock.request.converse_arguments()
    assert arguments["inferenceConfig"]["maxTokens"] == 42
    assert [(m["role"], m["content"][0]["text"]) for m in arguments["messages"]] == [
        ("user", "before"), ("assistant", "reply"), ("user", "hello world")]
    assert sessions.loaded_with == [(4, 2)]  # within the tokens and the messages the handler sized
    assert sessions.appended == [("sub-1", "a" * 32, "r" * 32, "hello world", "hello world", False)]


@pytest.mark.parametrize("case", ["cancelled", "error after text", "error before text", "session deleted"])
def test_which_exchanges_are_appended(case):
    sessions, requests = FakeSessions(gone=case == "session deleted"), FakeRequests()
    if case == "cancelled":
        requests.cancel.set()
        bedrock = FakeBedrock([TextDelta("part")] * 30, delay=0.01)
    elif case == "error after text":
        bedrock = FakeBedrock([TextDelta("part")], error=UpstreamError("x"))
    elif case == "error before text":
        bedrock = FakeBedrock([], error=UpstreamError("x"))
    else:
        bedrock = FakeBedrock([TextDelta("all"), MessageStop("end_turn")])
    _outcome, _, frames = run(bedrock, sessions=sessions, requests=requests, job=SESSION_JOB)
    if case == "error before text" or case == "session deleted":
        assert sessions.appended == []
        assert frames[-1]["type"] == ("error" if case == "error before text" else "done")
    else:
        [(_, _, _, prompt, reply, cancelled)] = sessions.appended
        assert prompt == "hello world" and reply == texts(frames) and cancelled is True


def test_a_session_deleted_before_the_worker_loads_it_is_not_found_and_settles_zero():
    class Deleted(FakeSessions):
        def history_for(self, user_sub, session_id, token_limit, message_limit=None):
            raise NotFound("no such session")

    budget, bedrock = FakeBudget(), FakeBedrock([TextDelta("never")])
    job = dataclasses.replace(SESSION_JOB, plan=InputPlan(history_tokens=10, context_tokens=0, input_tokens=13))
    _outcome, _requests, frames = run(bedrock, sessions=Deleted(), budget=budget, job=job)
    assert frames == [{"type": "error", "id": "chat-1", "error": {"code": "NOT_FOUND", "message": "no such session"}}]
    assert budget.settled == [("r" * 32, 0, 0, "m")] and not hasattr(bedrock, "request")


def test_each_throttling_answer_is_counted():
    class Throttled:
        def stream(self, request, on_throttled=None, on_opened=None):
            on_throttled()
            on_throttled()
            yield TextDelta("ok")

    metrics = FakeMetrics()
    run(Throttled(), metrics=metrics)
    assert metrics.emitted.count(("UpstreamThrottled", 1, {"action": "chat.send"})) == 2


# --- what on-call sees: the error metrics and the log lines ----------------------------------------------

class Throttling:
    """A model that kept throttling: two answers counted, then the last refusal."""

    def stream(self, request, on_throttled=None, on_opened=None):
        on_throttled()
        on_throttled()
        yield from ()  # a generator, as the real stream is
        raise UpstreamThrottled("the model is busy", retry_after=5)


@pytest.mark.parametrize("name, bedrock, sessions, code, server_side", [
    ("finished", FakeBedrock([TextDelta("hi"), MessageStop("end_turn")]), None, None, False),
    ("upstream error", FakeBedrock([TextDelta("hi")], error=UpstreamError("x")), None, "UPSTREAM_ERROR", True),
    ("kept throttling", Throttling(), None, "UPSTREAM_THROTTLED", True),
    ("a bug", Exploding(1), None, "INTERNAL", True),
    ("session deleted", FakeBedrock([]), "deleted", "NOT_FOUND", False),
])
def test_a_chat_ended_by_an_error_counts_in_errors_by_code(name, bedrock, sessions, code, server_side):
    class Deleted(FakeSessions):
        def history_for(self, user_sub, session_id, token_limit, message_limit=None):
            raise NotFound("no such session")

    metrics = FakeMetrics()
    job = dataclasses.replace(SESSION_JOB, plan=InputPlan(history_tokens=10, context_tokens=0, input_tokens=13))
    _outcome, _, frames = run(bedrock, metrics=metrics, job=job if sessions else JOB,
                             sessions=Deleted() if sessions else None)
    assert frames[-1]["type"] == ("error" if code else "done")
    assert [(v, d) for n, v, d in metrics.emitted if n == "Errors"] == ([(1, {"code": code})] if code else [])
    assert [d for n, _, d in metrics.emitted if n == "ServerErrors"] == ([{"code": code}] if server_side else [])


def test_a_timeout_counts_as_a_server_error():
    metrics = FakeMetrics()
    run(FakeBedrock([TextDelta("x")] * 10, delay=0.05), remaining_ms=lambda: 2000, metrics=metrics)
    assert ("ServerErrors", 1, {"code": "TIMEOUT"}) in metrics.emitted


def worker_log_lines(**run_options) -> list[dict]:
    import io
    import json
    import logging

    from chalicelib.observability import configure_logging

    configure_logging("INFO", "json")
    handler = next(h for h in logging.getLogger("chalicelib").handlers
                   if isinstance(h, logging.StreamHandler) and getattr(h, "llm_ide", False))
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        run(**run_options)
    finally:
        handler.setStream(previous)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


CONTEXT = {"connectionId": "conn", "sub": "sub-1", "action": "chat.send", "id": "chat-1", "requestId": "r" * 32}


def test_every_worker_line_carries_the_chats_context_and_the_last_its_outcome_and_latency():
    lines = worker_log_lines(bedrock=FakeBedrock([TextDelta("hi"), MessageStop("end_turn")]))
    [finished] = [line for line in lines if line["message"] == "chat finished"]
    assert {k: finished[k] for k in CONTEXT} == CONTEXT
    assert finished["outcome"] == "ok" and isinstance(finished["latencyMs"], int) and finished["latencyMs"] >= 0


@pytest.mark.parametrize("case, message, outcome", [
    ("the model broke", "reading the model failed", "INTERNAL"),  # logged by the reader thread
    ("the client left", "client gone mid-stream", "ok"),  # logged by the DeltaStream's sender thread
])
def test_the_worker_threads_lines_carry_the_chats_context(case, message, outcome):
    sender = RecordingSender()
    bedrock: FakeBedrock | Exploding
    if case == "the client left":
        sender.gone.add("conn")
        bedrock = FakeBedrock([TextDelta("x")] * 20, delay=0.01)
    else:
        bedrock = Exploding(1)
    lines = worker_log_lines(bedrock=bedrock, sender=sender)
    [line] = [line for line in lines if line["message"] == message]
    assert {k: line[k] for k in CONTEXT} == CONTEXT
    [finished] = [line for line in lines if line["message"] == "chat finished"]
    assert finished["outcome"] == outcome


# --- tool calls, cache usage, a body from an upload ------------------------------------


def test_tool_calls_stream_as_tool_use_frames_in_seq_with_the_deltas_and_usage_counts_the_cache():
    call = ToolUse("tooluse_1", "read_file", {"path": "a.py"})
    events = [TextDelta("Let me "), TextDelta("look."), call, MessageStop("tool_use"),
              Metadata(Usage(5, 9, cache_read_input_tokens=2000, cache_write_input_tokens=30))]
    budget = FakeBudget()
    job = dataclasses.replace(JOB, reservation=dataclasses.replace(RESERVATION, input_tokens=2035))
    _outcome, requests, frames = run(FakeBedrock(events), budget=budget, stream_flush_ms=5000, job=job)
    *streamed, done = frames
    *deltas, tool_use = streamed  # the tool call flushed the text held before it (a 5 s interval)
    assert {f["type"] for f in deltas} == {"delta"} and texts(deltas) == "Let me look."
    assert [f["seq"] for f in streamed] == list(range(len(streamed)))
    assert tool_use == {"type": "toolUse", "id": "chat-1", "seq": len(deltas), "toolUseId": "tooluse_1",
                        "name": "read_file", "input": {"path": "a.py"}}
    assert done["stopReason"] == "tool_use"
    assert done["usage"] == {"inputTokens": 5, "outputTokens": 9, "totalTokens": 2044,
                             "cacheReadInputTokens": 2000, "cacheWriteInputTokens": 30}
    assert budget.cache == (2000, 30) and requests.finished["usage"].cache_read_input_tokens == 2000


def test_a_tool_call_too_large_for_a_frame_ends_the_chat_with_payload_too_large():
    huge = ToolUse("tooluse_1", "write_file", {"content": "x" * 140_000})
    _outcome, _requests, frames = run(FakeBedrock([TextDelta("ok "), huge, MessageStop("tool_use")]))
    assert frames[-1]["type"] == "error" and frames[-1]["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "write_file" in frames[-1]["error"]["message"]
    assert [f["type"] for f in frames[:-1]] == ["delta"]


def test_a_tool_call_too_large_to_send_is_charged_as_the_model_generated_it():
    """Bedrock bills the call's output whether or not a frame could carry it (the old code charged only the
    3 bytes of text sent: a user asking for a huge tool input had the platform pay for it)."""
    huge = ToolUse("tooluse_1", "write_file", {"content": "x" * 140_000})
    budget = FakeBudget()
    _outcome, _requests, frames = run(FakeBedrock([TextDelta("ok "), huge, MessageStop("tool_use")]), budget=budget)
    assert frames[-1]["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert budget.settled[0][2] == 100  # the call's 140,000 bytes: all the granted maxTokens


def test_a_stream_broken_after_a_tool_call_counts_its_input_as_served():
    call = ToolUse("tooluse_1", "write_file", {"content": "y" * 400})
    budget = FakeBudget()
    _outcome, _requests, frames = run(FakeBedrock([call], error=UpstreamError("the model failed")), budget=budget)
    assert frames[-1]["error"]["code"] == "UPSTREAM_ERROR"
    assert budget.settled[0][2] == 100  # the call's 400 bytes of input were handed out: all maxTokens


def stream_frames(frames):
    return [f for f in frames if f["type"] in ("delta", "toolUse")]


def resumed_text(network, plan):
    """What a client kept: on each connection of `plan` [(connection, after_seq)], the stream frames after it;
    asserted in order, without gap or repeat."""
    frames = [f for connection, after in plan for f in stream_frames(network.frames.get(connection, []))
              if f["seq"] > after]
    assert [f["seq"] for f in frames] == list(range(len(frames)))
    return "".join(f["text"] for f in frames)


# --- resumes: the worker follows the record ----------------------------------------------------------------------

def resume_request(connection_id, after_seq, resume_id="res-1"):
    return ResumeRequest(connection_id=connection_id, endpoint="http://x", after_seq=after_seq, resume_id=resume_id)


def cut_off_mid_reply(network, requests) -> tuple[threading.Thread, int]:
    """A worker streaming "0 1 ... 59 " whose connection drops after two frames: its thread, the last seq seen."""
    bedrock = FakeBedrock([TextDelta(f"{i} ") for i in range(60)] + [MessageStop("end_turn"),
                                                                     Metadata(Usage(3, 60))], delay=0.01)
    worker = make_worker(bedrock, requests=requests, sender=network)
    thread = threading.Thread(target=worker.run, args=(JOB,))
    thread.start()
    frames = network.wait_for("conn", lambda f: len(stream_frames(f)) >= 2)
    network.drop("conn")
    return thread, stream_frames(frames)[-1]["seq"]


def test_the_worker_moves_its_stream_to_a_resume_it_reads_on_its_timer():
    network, requests = Network(), FakeRequests()
    thread, seen = cut_off_mid_reply(network, requests)
    requests.resumes_asked.append(resume_request("conn-2", seen))
    thread.join(10)
    result, *rest = network.frames["conn-2"]
    assert result["type"] == "result" and result["data"]["status"] == "running"
    assert rest[-1]["type"] == "done" and rest[-1]["usage"]["outputTokens"] == 60
    assert resumed_text(network, [("conn", -1), ("conn-2", seen)]) == "".join(f"{i} " for i in range(60))
    assert requests.finished["status"] == "done"


def test_a_resume_the_worker_learns_only_from_its_record_of_the_end_is_still_answered_by_it():
    class ResumedAtTheEnd(FakeRequests):
        def finish(self, request_id, **outcome):
            self.resumes_asked.append(resume_request("conn-2", -1))  # written just before the worker's last write
            return super().finish(request_id, **outcome)

    network, requests = Network(), ResumedAtTheEnd()
    network.drop("conn")
    make_worker(FakeBedrock([TextDelta("all of it"), MessageStop("end_turn")]), requests=requests,
                sender=network).run(JOB)
    result, delta, done = network.frames["conn-2"]
    assert result["data"] == {"requestId": "r" * 32, "status": "done", "lastSeq": 0}
    assert delta["text"] == "all of it" and done["type"] == "done"


def test_a_resume_already_followed_is_not_answered_twice():
    network, requests = Network(), FakeRequests()
    bedrock = FakeBedrock([TextDelta("x")] * 40 + [MessageStop("end_turn")], delay=0.01)
    worker = make_worker(bedrock, requests=requests, sender=network)
    thread = threading.Thread(target=worker.run, args=(JOB,))
    thread.start()
    network.wait_for("conn", lambda f: len(stream_frames(f)) >= 1)
    requests.resumes_asked.append(resume_request("conn-2", -1))
    thread.join(10)
    assert [f["type"] for f in network.frames["conn-2"]].count("result") == 1  # polled many times, followed once


@pytest.mark.parametrize("bad_first", [True, False])
def test_every_resume_asked_between_two_polls_is_answered_and_the_stream_goes_to_the_last_valid_one(bad_first):
    """Two sockets resume at once, one with an afterSeq beyond the last frame: that one is refused BAD_REQUEST,
    the other gets its result and the whole rest of the stream, whichever the record holds first."""
    network, requests = Network(), FakeRequests()
    thread, seen = cut_off_mid_reply(network, requests)
    asked = [resume_request("conn-bad", 10**6, resume_id="res-bad"), resume_request("conn-2", seen, resume_id="res-2")]
    requests.resumes_asked.extend(asked if bad_first else asked[::-1])  # one write of the record holds both
    thread.join(10)
    (refusal,) = network.frames["conn-bad"]
    assert refusal["type"] == "error" and refusal["id"] == "res-bad" and refusal["error"]["code"] == "BAD_REQUEST"
    result, *rest = network.frames["conn-2"]
    assert result["id"] == "res-2" and result["type"] == "result" and rest[-1]["type"] == "done"
    assert resumed_text(network, [("conn", -1), ("conn-2", seen)]) == "".join(f"{i} " for i in range(60))


def test_of_two_valid_resumes_asked_between_two_polls_each_is_answered_and_the_later_keeps_the_stream():
    network, requests = Network(), FakeRequests()
    thread, _ = cut_off_mid_reply(network, requests)
    requests.resumes_asked.extend([resume_request("conn-2", -1, resume_id="res-2"),
                                   resume_request("conn-3", -1, resume_id="res-3")])
    thread.join(10)
    assert [f["type"] for f in network.frames["conn-2"]] == ["result"]  # answered; the stream moved on at once
    result, *rest = network.frames["conn-3"]
    assert result["id"] == "res-3" and rest[-1]["type"] == "done"
    assert resumed_text(network, [("conn-3", -1)]) == "".join(f"{i} " for i in range(60))


def test_frames_that_could_not_be_kept_leave_the_chat_served_but_not_replayable():
    network, requests = Network(), FakeRequests()
    make_worker(FakeBedrock([TextDelta("hi"), MessageStop("end_turn")]), requests=requests, sender=network,
                frame_log=FakeFrameLog(fail=True)).run(JOB)
    assert network.frames["conn"][-1]["type"] == "done"
    assert requests.finished["frame_parts"] is None and requests.finished["last_seq"] == 0


def test_a_connection_gone_on_the_final_frame_leaves_it_to_a_replay():
    class GoneAtTheEnd(Network):
        def send(self, connection_id, frame):
            if frame["type"] == "done":
                raise ConnectionGone(connection_id)
            super().send(connection_id, frame)

    network, requests = GoneAtTheEnd(), FakeRequests()
    outcome = make_worker(FakeBedrock([TextDelta("hi"), MessageStop("end_turn")]), requests=requests,
                          sender=network).run(JOB)
    assert outcome.status == "done" and requests.finished["final_frame"]["type"] == "done"
