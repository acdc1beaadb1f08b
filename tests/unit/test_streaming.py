"""The delta coalescer: flush rules (fake clock), order and seq under a slow sender, a gone client."""
from __future__ import annotations

import threading
import time

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.chat.streaming import DeltaStream, split_utf8
from chalicelib.errors import ConnectionGone
from tests.fakes import Clock


class SlowSender:
    """Records posted frames; each post takes `delay` seconds; posts from `gone_after` on raise ConnectionGone."""

    def __init__(self, delay: float = 0.0, gone_after: int | None = None) -> None:
        self.delay = delay
        self.gone_after = gone_after
        self.frames: list[dict] = []
        self.posted = threading.Condition()

    def send(self, connection_id: str, frame: dict) -> None:
        if self.gone_after is not None and len(self.frames) >= self.gone_after:
            raise ConnectionGone(connection_id)
        time.sleep(self.delay)
        with self.posted:
            self.frames.append(frame)
            self.posted.notify_all()

    def close(self, connection_id: str) -> None:
        pass

    def wait_for(self, count: int, timeout: float = 2.0) -> list[dict]:
        with self.posted:
            self.posted.wait_for(lambda: len(self.frames) >= count, timeout)
            return list(self.frames)

    def texts(self) -> list[str]:
        return [f["text"] for f in self.frames if f["type"] == "delta"]


def make(sender, clock=None, flush_bytes=100, flush_ms=250):
    return DeltaStream(sender=sender, connection_id="c1", request_id="r1", flush_bytes=flush_bytes,
                       flush_ms=flush_ms, clock=clock or time.monotonic)


DONE = {"type": "done", "id": "r1"}


def test_the_first_text_goes_out_at_once_then_text_waits_for_the_interval():
    clock, sender = Clock(0.0), SlowSender()
    stream = make(sender, clock)
    stream.write("first")
    assert sender.wait_for(1)[0] == {"type": "delta", "id": "r1", "seq": 0, "text": "first"}
    clock.now = 0.1
    stream.write("a")
    clock.now = 0.2
    stream.write("b")
    time.sleep(0.05)
    assert len(sender.frames) == 1  # under flush_bytes and within flush_ms: held
    clock.now = 0.26
    stream.write("c")  # 260 ms after the last frame: due
    assert sender.wait_for(2)[1]["text"] == "abc"
    assert stream.finish(DONE)
    assert sender.frames[-1] == DONE


def test_a_held_buffer_goes_out_when_the_interval_passes_without_more_text():
    clock, sender = Clock(0.0), SlowSender()
    stream = make(sender, clock, flush_ms=50)
    stream.write("first")
    sender.wait_for(1)
    stream.write("stalled")
    time.sleep(0.1)
    assert len(sender.frames) == 1
    clock.now = 0.06  # the model stalls; the sender's own timer flushes
    assert [f["text"] for f in sender.wait_for(2)] == ["first", "stalled"]
    stream.finish(DONE)


def test_the_buffer_goes_out_when_it_reaches_flush_bytes():
    clock, sender = Clock(0.0), SlowSender()
    stream = make(sender, clock, flush_bytes=10)
    stream.write("x")
    sender.wait_for(1)
    stream.write("12345")
    time.sleep(0.05)
    assert len(sender.frames) == 1
    stream.write("67890")  # 10 bytes, no time passed
    assert sender.wait_for(2)[1]["text"] == "1234567890"
    stream.finish(DONE)


def test_finish_sends_the_rest_then_exactly_one_final_frame():
    clock, sender = Clock(0.0), SlowSender()
    stream = make(sender, clock)
    for piece in ("a", "b", "c"):
        stream.write(piece)
    assert stream.finish(DONE)
    assert "".join(sender.texts()) == "abc"
    assert sender.frames[-1] == DONE and sum(f["type"] == "done" for f in sender.frames) == 1


def test_coalescing_off_posts_one_frame_per_delta():
    sender = SlowSender(delay=0.002)
    stream = make(sender, flush_bytes=0)
    pieces = [f"t{i} " for i in range(50)]
    for piece in pieces:
        stream.write(piece)
    assert stream.finish(DONE)
    assert sender.texts() == pieces
    assert [f["seq"] for f in sender.frames[:-1]] == list(range(50))


def test_a_slow_sender_never_blocks_the_writer_and_order_and_seq_hold():
    sender = SlowSender(delay=0.02)
    stream = make(sender, flush_bytes=10_000, flush_ms=0)
    pieces = [f"{i}:ü😀 " for i in range(300)]
    started = time.monotonic()
    for piece in pieces:
        stream.write(piece)
    assert time.monotonic() - started < 0.2  # 300 writes while posts take 20 ms each
    assert stream.finish(DONE)
    deltas = sender.frames[:-1]
    assert "".join(sender.texts()) == "".join(pieces)
    assert [f["seq"] for f in deltas] == list(range(len(deltas)))
    assert len(deltas) < 50  # what piled up during a post went out together


def test_a_gone_client_stops_the_posts_but_not_the_stream():
    sender = SlowSender(gone_after=2)
    stream = make(sender, flush_bytes=0)
    for piece in ("a", "b", "c", "d"):
        stream.write(piece)
    assert stream.gone.wait(2) and not stream.connected
    assert not stream.failed.is_set()
    stream.write("e")
    kept = stream.seal()  # every frame, posted or not, numbered without a gap
    assert "".join(f["text"] for f in kept) == "abcde" and [f["seq"] for f in kept] == list(range(len(kept)))
    assert stream.finish(DONE) is False
    assert sender.texts() == ["a", "b"] and DONE not in sender.frames


def test_another_send_failure_ends_the_deltas_but_the_final_frame_is_still_sent():
    class FailsOnce(SlowSender):
        """The second post fails (API Gateway throttling, a 5xx after botocore's retries); later ones pass."""

        def send(self, connection_id, frame):
            if len(self.frames) == 1 and not getattr(self, "failed_once", False):
                self.failed_once = True
                raise RuntimeError("LimitExceededException")
            super().send(connection_id, frame)

    sender = FailsOnce()
    stream = make(sender, flush_bytes=0)
    stream.write("a")
    stream.write("b")
    assert stream.failed.wait(2) and not stream.gone.is_set()
    stream.write("c")  # text after the failure is not sent: the client's reply is broken, seq must not skip
    error = {"type": "error", "id": "r1", "error": {"code": "INTERNAL", "message": "x"}}
    assert stream.finish(error) is True
    assert sender.frames == [{"type": "delta", "id": "r1", "seq": 0, "text": "a"}, error]


def test_a_final_frame_that_cannot_be_posted_is_reported():
    class Broken(SlowSender):
        def send(self, connection_id, frame):
            raise RuntimeError("management api down")

    stream = make(Broken())
    stream.write("a")
    assert stream.failed.wait(2)
    assert stream.finish(DONE) is False


def test_a_huge_buffer_is_split_into_frames_without_splitting_characters():
    sender = SlowSender()
    stream = make(sender, flush_bytes=10**6)
    text = "😀" * 20_000  # 80,000 bytes
    stream.write(text)
    assert stream.finish(DONE)
    assert "".join(sender.texts()) == text
    assert all(len(t.encode()) <= 32 * 1024 for t in sender.texts()) and len(sender.texts()) >= 3


@given(st.text(min_size=0, max_size=300), st.integers(min_value=4, max_value=40))
def test_split_utf8_keeps_every_character_whole(text, max_bytes):
    pieces = split_utf8(text, max_bytes)
    assert "".join(pieces) == text
    assert all(0 < len(p.encode("utf-8")) <= max_bytes for p in pieces)


def test_a_tool_call_flushes_the_text_before_it_and_takes_the_next_seq():
    from chalicelib.chat.bedrock import ToolUse

    clock, sender = Clock(0.0), SlowSender()
    stream = make(sender, clock, flush_bytes=10_000, flush_ms=60_000)
    stream.write("first")
    sender.wait_for(1)
    stream.write("held ")
    stream.write("text")  # under the byte and time limits: it would wait
    stream.write_tool_use(ToolUse("t1", "ls", {"dir": "."}))
    stream.write("after")
    assert stream.finish(DONE)
    assert [(f["type"], f.get("seq")) for f in sender.frames] == [
        ("delta", 0), ("delta", 1), ("toolUse", 2), ("delta", 3), ("done", None)]
    assert sender.frames[1]["text"] == "held text" and sender.frames[3]["text"] == "after"
    assert sender.frames[2] == {"type": "toolUse", "id": "r1", "seq": 2, "toolUseId": "t1", "name": "ls",
                                "input": {"dir": "."}}
