"""Resuming a stream, in the DeltaStream: the ack first, a move's result, the replay from memory and the
live rest on one thread, including a move that races the next post, and random drops and resumes.
How the worker follows the chat's record: tests/unit/test_chat_worker.py."""
from __future__ import annotations

import random
import threading
import time

import pytest

from chalicelib.chat.streaming import DeltaStream, Move
from tests.fakes import Network

ACK = {"type": "ack", "id": "r1"}
DONE = {"type": "done", "id": "r1", "stopReason": "end_turn"}


def stream_frames(frames):
    return [f for f in frames if f["type"] in ("delta", "toolUse")]


def last_seq(frames):
    seqs = [f["seq"] for f in stream_frames(frames)]
    return seqs[-1] if seqs else -1


def move(network, connection_id, after_seq, resume_id="res-1"):
    return Move(connection_id=connection_id, sender=network, after_seq=after_seq, resume_id=resume_id,
                chat_id="a" * 32)


def make(network, *, flush_bytes=0, flush_ms=0, first_frame=ACK):
    return DeltaStream(sender=network, connection_id="c1", request_id="r1", flush_bytes=flush_bytes,
                       flush_ms=flush_ms, first_frame=first_frame)


def assert_whole(seen, text):
    """What a client saw across its connections, each kept from afterSeq on: the text, in order, once."""
    frames = stream_frames(seen)
    assert [f["seq"] for f in frames] == list(range(len(frames)))
    assert "".join(f["text"] for f in frames) == text


def resumed_view(network, plan):
    """What the client kept: on each connection of `plan` [(connection, after_seq)], the frames after it."""
    seen = []
    for connection, after in plan:
        frames = network.frames.get(connection, [])
        seen += [f for f in stream_frames(frames) if f["seq"] > after]
    return seen


# --- the stream ------------------------------------------------------------------------------------------

def test_the_ack_is_posted_before_any_delta_even_when_text_comes_at_once():
    network = Network(delay=0.01)
    stream = make(network)
    stream.write("a")
    stream.write("b")
    assert stream.finish(DONE)
    frames = network.frames["c1"]
    assert frames[0] == ACK and frames[-1] == DONE and "".join(f["text"] for f in frames[1:-1]) == "ab"


def test_a_move_after_a_drop_answers_then_replays_after_the_seq_the_client_had_then_goes_on_live():
    network = Network()
    stream = make(network)
    for piece in ("a", "b", "c"):
        stream.write(piece)
    network.wait_for("c1", lambda f: len(stream_frames(f)) == 3)
    network.drop("c1")
    stream.write("d")  # its post finds the connection gone
    assert stream.gone.wait(2)
    stream.write("e")
    seen = last_seq(network.frames["c1"])  # 2: "d" never reached the client
    stream.move(move(network, "c2", after_seq=seen))
    network.wait_for("c2", lambda f: len(f) >= 3)
    stream.write("f")
    assert stream.finish(DONE)
    first, *rest = network.frames["c2"]
    assert first == {"type": "result", "id": "res-1", "data": {"requestId": "a" * 32, "status": "running",
                                                               "lastSeq": first["data"]["lastSeq"]}}
    assert first["data"]["lastSeq"] >= 3
    assert stream_frames(rest)[0]["seq"] == 3 and rest[-1] == DONE
    assert_whole(resumed_view(network, [("c1", -1), ("c2", seen)]), "abcdef")
    assert stream.moves == 1 and not stream.gone.is_set()


def test_while_nobody_listens_frames_are_cut_as_large_as_a_frame_may_be():
    network = Network()
    stream = make(network, flush_bytes=10, flush_ms=0)
    network.drop("c1")
    stream.write("x")  # posting it finds the connection gone
    assert stream.gone.wait(2)
    for _ in range(1000):
        stream.write("0123456789")  # 10 bytes each: a frame each while someone listened
    time.sleep(0.05)
    stream.move(move(network, "c2", after_seq=-1))
    assert stream.finish(DONE) is True
    replayed = stream_frames(network.frames["c2"])
    assert len(replayed) <= 2 and "".join(f["text"] for f in replayed) == "x" + "0123456789" * 1000


@pytest.mark.parametrize("old_connection", ["dropped", "still open"])
def test_a_resume_racing_the_next_post_loses_nothing_and_repeats_nothing(old_connection):
    """A post to the old connection is in flight when the resume comes, and the client resumes with the
    last seq it got there. One thread decides what goes where, so the join is exact: the frame in flight
    is replayed on the new connection, and it reaches the old one too only if that one is still open
    (a client that keeps both sees that seq twice, and keeps it once, by seq)."""
    network = Network()
    stream = make(network)
    stream.write("a")
    network.wait_for("c1", lambda f: len(stream_frames(f)) == 1)
    release = network.held = threading.Event()
    stream.write("b")  # its post waits, in flight
    assert network.in_flight.wait(2)
    if old_connection == "dropped":
        network.drop("c1")
    seen = last_seq(network.frames["c1"])  # 0: what the client has when it resumes
    stream.move(move(network, "c2", after_seq=seen))  # the sender takes it after the post in flight
    stream.write("c")
    release.set()
    network.wait_for("c2", lambda f: len(f) >= 1)
    stream.write("d")
    assert stream.finish(DONE)
    view = resumed_view(network, [("c1", -1), ("c2", seen)])
    if old_connection == "dropped":
        assert [f["seq"] for f in view] == [0, 1, 2, 3]
    else:
        assert [f["seq"] for f in view] == [0, 1, 1, 2, 3]
        view = list({f["seq"]: f for f in view}.values())
    assert_whole(view, "abcd")
    assert [f["seq"] for f in stream_frames(network.frames["c2"])] == [1, 2, 3]  # after seen, in order, once


def test_an_after_seq_beyond_the_last_frame_is_refused_and_nothing_moves():
    network = Network()
    stream = make(network)
    stream.write("a")
    network.wait_for("c1", lambda f: len(stream_frames(f)) == 1)
    stream.move(move(network, "c2", after_seq=5))
    network.wait_for("c2", lambda f: len(f) == 1)
    stream.write("b")
    assert stream.finish(DONE)
    [refusal] = network.frames["c2"]
    assert refusal["type"] == "error" and refusal["id"] == "res-1" and refusal["error"]["code"] == "BAD_REQUEST"
    assert "afterSeq" in refusal["error"]["message"]
    assert "".join(f["text"] for f in stream_frames(network.frames["c1"])) == "ab" and network.frames["c1"][-1] == DONE


def test_moves_not_yet_applied_are_each_answered_in_order_and_the_last_keeps_the_stream():
    network = Network()
    stream = make(network)
    network.drop("c1")
    stream.write("a")
    assert stream.gone.wait(2)
    release = network.held = threading.Event()
    stream.move(move(network, "c2", after_seq=-1, resume_id="res-2"))  # its result's post is held
    assert network.in_flight.wait(2)
    stream.move(move(network, "c3", after_seq=-1, resume_id="res-3"))
    stream.move(move(network, "c4", after_seq=-1, resume_id="res-4"))
    release.set()
    stream.write("b")
    assert stream.finish(DONE)
    assert [f["id"] for f in network.frames["c3"]] == ["res-3"]  # its result, then the stream moved on
    assert network.frames["c4"][0]["id"] == "res-4" and network.frames["c4"][-1] == DONE
    assert "".join(f["text"] for f in stream_frames(network.frames["c4"])) == "ab"


def test_a_move_beyond_the_last_frame_is_refused_and_leaves_the_stream_where_it_was():
    network = Network()
    stream = make(network)
    stream.write("a")
    network.wait_for("c1", lambda frames: len(stream_frames(frames)) == 1)
    network.drop("c1")
    stream.move(move(network, "c2", after_seq=0, resume_id="res-2"))
    stream.move(move(network, "c3", after_seq=5, resume_id="res-3"))
    stream.write("b")
    assert stream.finish(DONE)
    (refusal,) = network.frames["c3"]
    assert refusal["type"] == "error" and refusal["id"] == "res-3" and refusal["error"]["code"] == "BAD_REQUEST"
    assert network.frames["c2"][0]["id"] == "res-2" and network.frames["c2"][-1] == DONE
    assert "".join(f["text"] for f in stream_frames(network.frames["c2"])) == "b"


def test_a_move_taken_as_the_chat_ends_reports_the_chats_end():
    network = Network()
    stream = make(network)
    stream.write("a")
    network.drop("c1")
    stream.seal()
    stream.move(move(network, "c2", after_seq=-1))
    assert stream.finish(DONE)
    result, delta, done = network.frames["c2"]
    assert result["data"]["lastSeq"] == 0 and delta["text"] == "a" and done == DONE


@pytest.mark.parametrize("seed", range(6))
def test_random_drops_and_resumes_give_the_client_the_whole_reply_once(seed):
    """A reply written in 200 pieces while the network drops the current connection at random moments and
    the client resumes from the last seq it saw, several times: its view is the whole reply, in order."""
    rng = random.Random(seed)
    network = Network(delay=0.001)
    stream = make(network, flush_bytes=8, flush_ms=2)
    pieces = [f"{i}é " for i in range(200)]
    plan, current = [("c1", -1)], "c1"

    def write() -> None:
        for piece in pieces:
            stream.write(piece)
            time.sleep(0.001)

    writer = threading.Thread(target=write)
    writer.start()
    for n in range(rng.randint(2, 4)):
        time.sleep(rng.uniform(0.01, 0.08))
        network.drop(current)
        time.sleep(rng.uniform(0, 0.02))
        with network.lock:
            seen = max([f["seq"] for _, after in plan for f in stream_frames(network.frames.get(_, []))
                        if f["seq"] > after] or [-1])
        current = f"c{n + 2}"
        plan.append((current, seen))
        stream.move(move(network, current, after_seq=seen, resume_id=f"res-{n}"))
    writer.join()
    assert stream.finish(DONE)
    view = resumed_view(network, plan)
    assert_whole(view, "".join(pieces))
    assert network.frames[current][-1] == DONE
