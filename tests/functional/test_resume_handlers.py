"""chat.resume through the Chalice message handler, against moto: a running chat's resume handed to its
worker through the record, an ended chat replayed from its kept frames, and every refusal moving nothing."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.functional.test_chat_handlers import requests_table, user_sub
from tests.handler_calls import connect, login, message


@pytest.fixture
def chats(app_env, boto):
    """The request store and the frame log on the test's tables."""
    from chalicelib.chat.replay import FrameLog
    from chalicelib.chat.requests import RequestStore

    table = requests_table(app_env, boto)
    return RequestStore(table, ttl_seconds=600), FrameLog(table)


@pytest.fixture
def users(app_env, boto, sender):
    """Two connected users: (connection id, sub) of each (after `sender`, which the handlers are built with)."""
    suffix = uuid.uuid4().hex[:8]
    owner, other = f"own-{suffix}=", f"oth-{suffix}="
    connect(owner, headers={"Authorization": f"Bearer {login(boto, app_env, 0)}"})
    connect(other, headers={"Authorization": f"Bearer {login(boto, app_env, 1)}"})
    return (owner, user_sub(app_env, boto, owner)), (other, user_sub(app_env, boto, other))


def new_chat(chats, sub, *, connection="gone-conn=", client_id="chat-1", status="streaming"):
    store, _ = chats
    request_id = uuid.uuid4().hex
    store.create(request_id=request_id, kind="chat", user_sub=sub, connection_id=connection, client_id=client_id,
                 model="m")
    if status == "streaming":
        assert store.claim(request_id)
    return request_id


def deltas(texts, client_id="chat-1"):
    return [{"type": "delta", "id": client_id, "seq": seq, "text": text} for seq, text in enumerate(texts)]


DONE = {"type": "done", "id": "chat-1", "stopReason": "end_turn",
        "usage": {"inputTokens": 1, "outputTokens": 3, "totalTokens": 4}, "limits": {}}


def end_chat(chats, request_id, sub, frames, *, final=DONE, replay_until=None):
    store, frame_log = chats
    until = int(time.time()) + 3600 if replay_until is None else replay_until
    parts = frame_log.keep(request_id, sub, frames, until=until)
    store.finish(request_id, status="done", stop_reason="end_turn", final_frame=final, last_seq=len(frames) - 1,
                 frame_parts=parts, replay_until=until)


def resume(connection, request_id, after_seq, resume_id="res-1", sender=None):
    params = {"action": "chat.resume", "id": resume_id, "requestId": request_id}
    if after_seq is not ...:
        params["afterSeq"] = after_seq
    message(connection, json.dumps(params))
    return sender.frames.get(connection, []) if sender is not None else None


def test_a_running_chat_is_handed_to_its_worker_through_its_record(chats, users, sender):
    (owner, sub), _ = users
    request_id = new_chat(chats, sub)
    assert resume(owner, request_id, 4, sender=sender) == []  # the worker answers, not the handler
    assert chats[0].watch(request_id).resume_count == 1
    (first,) = chats[0].resumes(request_id)
    assert (first.connection_id, first.after_seq, first.resume_id) == (owner, 4, "res-1")
    assert first.endpoint == "http://127.0.0.1:9/test"  # the connection's, as $connect stored it
    resume(owner, request_id, 7, resume_id="res-2", sender=sender)  # a chat may be resumed several times
    assert chats[0].watch(request_id).resume_count == 2
    # Every resume is kept, in order, for the worker to answer each: none replaces another.
    assert [(r.after_seq, r.resume_id) for r in chats[0].resumes(request_id)] == [(4, "res-1"), (7, "res-2")]


def test_a_chat_takes_at_most_max_resumes_then_quota_exceeded_and_nothing_more_is_kept(chats, users, sender):
    from chalicelib.chat.requests import MAX_RESUMES

    (owner, sub), _ = users
    request_id = new_chat(chats, sub)
    for n in range(MAX_RESUMES):
        assert chats[0].request_resume(request_id=request_id, user_sub=sub, connection_id=owner, endpoint="e",
                                       after_seq=-1, resume_id=f"r{n}")
    frames = resume(owner, request_id, -1, resume_id="one-too-many", sender=sender)
    assert frames[-1]["id"] == "one-too-many" and frames[-1]["error"]["code"] == "QUOTA_EXCEEDED"
    assert len(chats[0].resumes(request_id)) == MAX_RESUMES == chats[0].watch(request_id).resume_count


@pytest.mark.parametrize("who", ["another user's", "unknown", "a malformed id"])
def test_another_users_or_an_unknown_chat_is_not_found_and_nothing_moves(chats, users, sender, who):
    (_, sub), (other, _) = users
    request_id = new_chat(chats, sub)
    name = {"another user's": request_id, "unknown": uuid.uuid4().hex, "a malformed id": "no such/id"}[who]
    frames = resume(other, name, -1, sender=sender)
    assert frames[-1]["type"] == "error" and frames[-1]["id"] == "res-1"
    assert frames[-1]["error"]["code"] == ("BAD_REQUEST" if who == "a malformed id" else "NOT_FOUND")
    assert chats[0].watch(request_id).resume_count == 0


@pytest.mark.parametrize("after_seq", ["3", 1.5, True, None, -2, ..., 10**12])
def test_an_after_seq_that_is_not_an_integer_from_minus_one_is_bad_request(chats, users, sender, after_seq):
    (owner, sub), _ = users
    request_id = new_chat(chats, sub)
    frames = resume(owner, request_id, after_seq, sender=sender)
    assert frames[-1]["type"] == "error" and frames[-1]["error"]["code"] == "BAD_REQUEST"
    assert "afterSeq" in frames[-1]["error"]["message"]
    assert chats[0].watch(request_id).resume_count == 0


def test_an_ended_chat_is_replayed_from_the_frame_after_the_clients_seq(chats, users, sender):
    (owner, sub), _ = users
    request_id = new_chat(chats, sub)
    frames = deltas(["hé", "llo", " 😀"])
    end_chat(chats, request_id, sub, frames)
    result, *replayed = resume(owner, request_id, 0, sender=sender)
    assert result == {"type": "result", "id": "res-1",
                      "data": {"requestId": request_id, "status": "done", "lastSeq": 2}}
    assert replayed == [*frames[1:], DONE]
    # Again, all of it (a chat may be replayed as often as its client needs).
    _, *everything = resume(owner, request_id, -1, resume_id="res-2", sender=sender)[-5:]
    assert everything == [*frames, DONE]


@pytest.mark.parametrize("final, status", [
    ({**DONE, "stopReason": "cancelled"}, "cancelled"),
    ({"type": "error", "id": "chat-1", "error": {"code": "UPSTREAM_ERROR", "message": "x"}}, "error"),
])
def test_the_replays_status_says_how_the_chat_ended(chats, users, sender, final, status):
    (owner, sub), _ = users
    request_id = new_chat(chats, sub)
    end_chat(chats, request_id, sub, [], final=final)
    assert resume(owner, request_id, -1, sender=sender) == [
        {"type": "result", "id": "res-1", "data": {"requestId": request_id, "status": status, "lastSeq": -1}}, final]


def test_an_after_seq_beyond_an_ended_chats_last_frame_is_bad_request(chats, users, sender):
    (owner, sub), _ = users
    request_id = new_chat(chats, sub)
    end_chat(chats, request_id, sub, deltas(["a", "b"]))
    [refusal] = resume(owner, request_id, 2, sender=sender)
    assert refusal["error"]["code"] == "BAD_REQUEST" and "last frame (1)" in refusal["error"]["message"]


@pytest.mark.parametrize("case", ["expired", "frames lost", "never started"])
def test_an_ended_chat_whose_frames_are_not_kept_is_not_found(chats, users, sender, boto, app_env, case):
    (owner, sub), _ = users
    request_id = new_chat(chats, sub, status="queued" if case == "never started" else "streaming")
    if case == "expired":
        end_chat(chats, request_id, sub, deltas(["a"]), replay_until=int(time.time()) - 1)
    elif case == "frames lost":
        end_chat(chats, request_id, sub, deltas(["a"]))
        requests_table(app_env, boto).delete_item(Key={"requestId": f"frames#{request_id}#0"})
    else:
        assert chats[0].fail_unclaimed(request_id, error_code="INTERNAL")
    [refusal] = resume(owner, request_id, -1, sender=sender)
    assert refusal["error"]["code"] == "NOT_FOUND" and "no longer kept" in refusal["error"]["message"]


def test_the_handlers_claim_and_the_workers_cannot_both_win(chats, users):
    from chalicelib.chat.requests import CLAIMED, TAKEN

    (_, sub), _ = users
    store, _ = chats
    first, second = new_chat(chats, sub, status="queued"), new_chat(chats, sub, status="queued")
    assert store.claim(first) == CLAIMED and not store.fail_unclaimed(first, error_code="INTERNAL")
    assert store.fail_unclaimed(second, error_code="INTERNAL") and store.claim(second) == TAKEN
    assert store.get(first)["status"] == "streaming" and store.get(second)["status"] == "error"


def test_a_resume_recorded_before_the_end_comes_back_with_the_record_of_the_end(chats, users):
    (owner, sub), _ = users
    store, _ = chats
    request_id = new_chat(chats, sub)
    assert store.request_resume(request_id=request_id, user_sub=sub, connection_id=owner, endpoint="e", after_seq=-1,
                                resume_id="r")
    record = store.finish(request_id, status="done", final_frame=DONE, last_seq=-1, frame_parts=0,
                          replay_until=int(time.time()) + 60)
    assert record["resumeCount"] == 1 and record["resumes"][0]["connectionId"] == owner
    # Once ended, the record takes no more resumes: the handler replays instead.
    assert not store.request_resume(request_id=request_id, user_sub=sub, connection_id=owner, endpoint="e",
                                    after_seq=-1, resume_id="r2")


def test_a_large_reply_is_kept_in_several_parts(chats, users, sender):
    import os

    (owner, sub), _ = users
    request_id = new_chat(chats, sub)
    texts = [os.urandom(12_000).hex() for _ in range(40)]  # 960 KB that does not compress much
    end_chat(chats, request_id, sub, deltas(texts))
    assert chats[0].get(request_id)["frameParts"] >= 2
    _, *replayed = resume(owner, request_id, 37, sender=sender)
    assert [f.get("text") for f in replayed[:-1]] == texts[38:] and replayed[-1] == DONE
