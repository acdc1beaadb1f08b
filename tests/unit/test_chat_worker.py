"""The chat worker with fakes at its boundaries: outcomes, cancel polling, time limit, a gone client."""
from __future__ import annotations

import dataclasses
import threading
import time

from chalicelib.bedrock import Metadata, MessageStop, TextDelta
from chalicelib.chat.request import ChatRequest
from chalicelib.chat.worker import ChatJob, ChatWorker
from chalicelib.config import load_settings
from chalicelib.errors import UpstreamError
from chalicelib.request_store import Usage
from tests.fakes import RecordingSender

SETTINGS = load_settings({"COGNITO_USER_POOL_ID": "eu-west-1_AbC123", "COGNITO_APP_CLIENT_IDS": "c"})
JOB = ChatJob(request_id="r" * 32, client_id="chat-1", connection_id="conn", endpoint="http://x", user_sub="sub-1",
              chat=ChatRequest(prompt="hello world", model="m", max_tokens=100))


class FakeRequests:
    def __init__(self) -> None:
        self.polls: list[float] = []
        self.cancel = threading.Event()
        self.statuses: list[str] = []
        self.finished: dict | None = None

    def claim(self, request_id, now=None):
        self.statuses.append("streaming")
        return len(self.statuses) == 1  # a second invocation finds it taken

    def cancel_requested(self, request_id):
        self.polls.append(time.monotonic())
        return self.cancel.is_set()

    def finish(self, request_id, **outcome):
        self.finished = outcome


class FakeBedrock:
    def __init__(self, events, *, delay=0.0, error=None):
        self.events, self.delay, self.error = events, delay, error
        self.closed = threading.Event()

    def stream(self, request):
        try:
            for event in self.events:
                time.sleep(self.delay)
                yield event
            if self.error:
                raise self.error
        finally:
            self.closed.set()


def run(bedrock, *, requests=None, sender=None, remaining_ms=None, **settings):
    requests, sender = requests or FakeRequests(), sender or RecordingSender()
    worker = ChatWorker(requests=requests, bedrock=bedrock, sender=sender,
                        settings=dataclasses.replace(SETTINGS, **settings))
    outcome = worker.run(JOB, remaining_ms=remaining_ms)
    return outcome, requests, sender.frames.get("conn", [])


def texts(frames):
    return "".join(f["text"] for f in frames if f["type"] == "delta")


def test_a_reply_streams_and_ends_with_done_and_the_models_usage():
    events = [TextDelta(t) for t in ("hel", "lo ", "wor", "ld")] + [MessageStop("end_turn"),
                                                                     Metadata(Usage(3, 4))]
    outcome, requests, frames = run(FakeBedrock(events))
    assert texts(frames) == "hello world"
    assert frames[-1]["type"] == "done" and frames[-1]["stopReason"] == "end_turn"
    assert frames[-1]["usage"] == {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}
    assert requests.statuses == ["streaming"]
    assert requests.finished["status"] == "done" and requests.finished["usage"] == Usage(3, 4)


def test_the_cancel_flag_is_polled_on_a_timer_not_per_delta():
    events = [TextDelta("x")] * 300 + [MessageStop("end_turn")]
    started = time.monotonic()
    outcome, requests, frames = run(FakeBedrock(events, delay=0.002))
    elapsed = time.monotonic() - started
    assert outcome.status == "done" and texts(frames) == "x" * 300
    assert len(requests.polls) <= elapsed / 0.2 + 1  # not 300
    gaps = [b - a for a, b in zip(requests.polls, requests.polls[1:])]
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
    outcome, requests, frames = run(bedrock)
    assert texts(frames) == "abcdefgh"
    assert frames[-1] == {"type": "error", "id": "chat-1", "error": {"code": "UPSTREAM_ERROR",
                                                                    "message": "the model failed"}}
    assert sum(f["type"] in ("done", "error") for f in frames) == 1
    usage = requests.finished["usage"]
    assert usage.estimated and usage.output_tokens == 2 and usage.input_tokens == 3  # 11 bytes of prompt
    assert requests.finished["error_code"] == "UPSTREAM_ERROR"


def test_the_worker_stops_before_its_lambda_time_limit_with_timeout():
    outcome, requests, frames = run(FakeBedrock([TextDelta("x")] * 10, delay=0.05), remaining_ms=lambda: 2000)
    assert outcome.status == "timeout" and frames[-1]["error"]["code"] == "TIMEOUT"
    assert requests.finished["status"] == "timeout"


def test_a_gone_client_stops_the_model_and_no_final_frame_is_sent():
    sender = RecordingSender()
    sender.gone.add("conn")
    bedrock = FakeBedrock([TextDelta("x")] * 100, delay=0.01)
    started = time.monotonic()
    outcome, requests, frames = run(bedrock, sender=sender)
    assert time.monotonic() - started < 0.6  # not the 1 s the whole reply takes
    assert outcome.status == "gone" and frames == []
    assert requests.finished["status"] == "gone" and requests.finished["error_code"] == "GONE"
    assert bedrock.closed.wait(1)  # the reader closed the model's stream


def test_a_retried_invocation_of_a_taken_chat_sends_and_records_nothing():
    requests = FakeRequests()
    run(FakeBedrock([TextDelta("once"), MessageStop("end_turn")]), requests=requests)
    first = requests.finished
    requests.finished = None
    bedrock = FakeBedrock([TextDelta("twice")] * 50, delay=0.01)
    outcome, requests, frames = run(bedrock, requests=requests)
    assert outcome.status == "duplicate" and frames == [] and requests.finished is None
    assert first["status"] == "done" and bedrock.closed.wait(1)
