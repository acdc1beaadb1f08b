"""`session.delete` against every writer into a session, through the Chalice handlers and the chat worker, against
moto: nothing written into a session while (or after) it is deleted is left behind, a write into it is NOT_FOUND,
a delete that failed half-way leaves the session NOT_FOUND and is finished by the next one, and nothing of a live
session is lost. Each race is forced at its exact point by wrapping the store call the writer makes there (the
delete runs inside the wrapper, between the writer's check and its write): no sleeps, no threads."""
from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from chalicelib import process
from chalicelib.aws import clients
from chalicelib.aws.objects import ObjectStore, session_root
from chalicelib.chat.bedrock import MessageStop, Metadata, TextDelta
from chalicelib.chat.job import ChatJob
from chalicelib.chat.requests import Usage
from chalicelib.config import get_settings
from chalicelib.context.quota import RECOUNT_GAP_SECONDS
from chalicelib.errors import Internal
from chalicelib.root import Root, get_clock
from chalicelib.sessions.store import SessionStore
from tests.conftest import reset_app_caches
from tests.handler_calls import connect, message, new_user

CONN = "conn-races="


@pytest.fixture
def user(app_env, boto, sender, clock) -> str:
    """A user of this test's own (the storage quota is per user), signed in on CONN: their sub."""
    token = new_user(boto, app_env)
    connect(CONN, headers={"Authorization": f"Bearer {token}"})
    return jwt.decode(token, options={"verify_signature": False})["sub"]  # Cognito verified it at connect


def send(sender, action: str, **params: Any) -> dict[str, Any]:
    """The one frame the app answered this request with."""
    before = len(sender.frames.get(CONN, []))
    message(CONN, json.dumps({"action": action, "id": "r1", **params}))
    (frame,) = sender.frames[CONN][before:]
    return frame


def code(frame: dict[str, Any]) -> str | None:
    return frame["error"]["code"] if frame["type"] == "error" else None


def new_session(sender) -> str:
    return send(sender, "session.create", title="doomed")["data"]["session"]["sessionId"]


@pytest.fixture
def configure(monkeypatch, clock) -> Callable[..., None]:
    """Set the app's variables for the test: its caches are rebuilt with them, on the same clock."""
    def set_env(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_app_caches()
        process.install(get_clock, lambda: clock.now)
    return set_env


def root() -> Root:
    """A root of its own (another Lambda's), on the app's clock (the `clock` fixture's)."""
    return Root(get_settings(), clock=get_clock())


def delete_session(user_sub: str, session_id: str) -> None:
    """session.delete as the action runs it (SessionActions.delete)."""
    root().sessions.delete(user_sub, session_id)


def left_of(user_sub: str, session_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Everything stored under the session: its DynamoDB items and its S3 keys."""
    items = clients.table(get_settings().sessions_table).query(
        KeyConditionExpression="pk = :p AND begins_with(sk, :s)", ConsistentRead=True,
        ExpressionAttributeValues={":p": f"USER#{user_sub}", ":s": f"SESSION#{session_id}"})["Items"]
    keys = [o.key for o in root().objects.walk(session_root(user_sub, session_id))]
    return items, keys


def once(monkeypatch, cls: type, name: str, when: Callable[..., bool], before: bool,
         action: Callable[[], None]) -> list[int]:
    """Wrap `cls.name` so that `action` runs once, before or after the first call for which `when(*args)` holds.
    The returned list counts the times it ran."""
    real = getattr(cls, name)
    ran: list[int] = []

    def wrapper(self, *args, **kwargs):
        fire = not ran and when(*args, **kwargs)
        if fire and before:
            action()
            ran.append(1)  # only once it ran through: a delete that failed must not pass for one that ran
        result = real(self, *args, **kwargs)
        if fire and not before:
            action()
            ran.append(1)
        return result

    monkeypatch.setattr(cls, name, wrapper)
    return ran


# --- context.put and context.uploadUrl ----------------------------------------


def test_a_context_put_whose_session_is_deleted_between_its_check_and_its_write_is_not_found_and_leaves_nothing(
        configure, user, sender, monkeypatch):
    configure(CONTEXT_QUOTA_FILES="1")
    session_id = new_session(sender)
    ran = once(monkeypatch, ObjectStore, "put", lambda key, *a, **k: f"/sessions/{session_id}/" in key, True,
               lambda: delete_session(user, session_id))
    frame = send(sender, "context.put", path="notes.md", content="late", sessionId=session_id)
    assert ran and code(frame) == "NOT_FOUND"
    assert left_of(user, session_id) == ([], [])
    # Its reservation was dropped: the user's one file of quota is free for their own file at once.
    assert send(sender, "context.put", path="mine.md", content="kept")["type"] == "result"


def test_an_upload_url_whose_session_is_deleted_before_it_is_handed_out_is_not_found(user, sender, monkeypatch):
    session_id = new_session(sender)
    ran = once(monkeypatch, ObjectStore, "presign_put", lambda key, **k: f"/sessions/{session_id}/" in key, True,
               lambda: delete_session(user, session_id))
    frame = send(sender, "context.uploadUrl", path="big.bin", size=5, sessionId=session_id)
    assert ran and code(frame) == "NOT_FOUND" and "url" not in json.dumps(frame)


def test_an_upload_landing_after_its_session_was_deleted_is_neither_counted_nor_kept(
        configure, user, sender, clock, app_env, boto):
    configure(CONTEXT_QUOTA_FILES="3")
    live, doomed = new_session(sender), new_session(sender)
    assert send(sender, "context.put", path="mine.md", content="a")["type"] == "result"
    assert send(sender, "context.put", path="kept.md", content="b", sessionId=live)["type"] == "result"
    grant = send(sender, "context.uploadUrl", path="late.bin", size=5, sessionId=doomed)["data"]
    # An offloaded message's object in each (in the deleted one: a writer that died before it could undo its write).
    for session_id in (live, doomed):
        boto("s3").put_object(Bucket=app_env.names["CONTEXT_BUCKET"], Body=b"x",
                              Key=f"{session_root(user, session_id)}messages/1700000000000-1-0123abcd")
    assert send(sender, "session.delete", sessionId=doomed)["data"] == {"deleted": True}
    upload = urllib.request.Request(grant["url"], data=b"12345", method="PUT", headers=grant["headers"])
    with urllib.request.urlopen(upload, timeout=10) as response:  # the URL was handed out before the delete
        assert response.status == 200
    assert left_of(user, doomed)[1] != []  # landed under the deleted session
    clock.now += RECOUNT_GAP_SECONDS + 1
    # 3 files of quota: mine.md, kept.md and the upload were counted. The refusal's recount counts only the two
    # live files, removes what the deleted session left, and the write fits.
    frame = send(sender, "context.put", path="more.md", content="c")
    assert frame["type"] == "result", frame
    assert left_of(user, doomed) == ([], [])
    assert send(sender, "context.get", path="kept.md", sessionId=live)["data"]["content"] == "b"
    assert len(left_of(user, live)[1]) == 2  # the live session's file and message object are untouched
    assert send(sender, "context.put", path="over.md", content="d")["error"]["code"] == "QUOTA_EXCEEDED"


# --- the chat worker --------------------------------------------------------------


class LongReply:
    """Stands in for BedrockChat: a reply long enough to be offloaded to S3."""

    def __init__(self, text: str) -> None:
        self.text = text

    def stream(self, request, on_throttled=None, on_opened=None):
        yield TextDelta(self.text)
        yield MessageStop("end_turn")
        yield Metadata(Usage(10, 10))


@pytest.mark.parametrize("point", ["after its check", "after the prompt", "after the reply's content"])
def test_a_chat_whose_session_is_deleted_while_it_is_appended_keeps_nothing_and_still_ends_done(
        configure, user, sender, started, monkeypatch, point):
    configure(MESSAGE_INLINE_MAX_BYTES="1024")
    session_id = new_session(sender)
    message(CONN, json.dumps({"action": "chat.send", "id": "c1", "prompt": "hello", "sessionId": session_id}))
    assert len(started) == 1, sender.frames[CONN][-1]
    monkeypatch.setattr(Root, "bedrock", LongReply("r" * 5000))

    def doom() -> None:
        delete_session(user, session_id)

    if point == "after its check":
        ran = once(monkeypatch, SessionStore, "touch", lambda *a, **k: True, False, doom)
    elif point == "after the prompt":
        ran = once(monkeypatch, SessionStore, "_put_message", lambda *a, role, **k: role == "user", False, doom)
    else:
        ran = once(monkeypatch, ObjectStore, "put", lambda key, *a, **k: "/messages/" in key, False, doom)
    outcome = root().chat_worker.run(ChatJob.from_event(started[0][1]))
    assert ran and outcome.status == "done" and sender.frames[CONN][-1]["type"] == "done"
    assert left_of(user, session_id) == ([], [])


def test_a_ttl_move_racing_the_delete_brings_no_item_back(user, sender, monkeypatch, clock):
    # A session last active two days ago: its next activity moves the TTL of every item (SessionStore._extend).
    earlier = Root(get_settings(), clock=lambda: clock.now - 2 * 86400).sessions
    session_id = earlier.create(user, title="old").session_id
    earlier.append_exchange(user, session_id, "req-1", "question", "answer", False)
    real_items = SessionStore._items
    ran: list[int] = []

    def listed_then_deleted(self, user_sub, prefix, **kwargs):
        listed = list(real_items(self, user_sub, prefix, **kwargs))
        if not ran and prefix == f"SESSION#{session_id}":  # _extend's listing of every item of the session
            delete_session(user, session_id)
            ran.append(1)
        return iter(listed)

    monkeypatch.setattr(SessionStore, "_items", listed_then_deleted)
    frame = send(sender, "session.update", sessionId=session_id, title="renamed")
    assert ran and frame["type"] == "result"  # renamed before the delete began
    assert left_of(user, session_id) == ([], [])


# --- a delete that fails half-way -----------------------------------------------------


def test_a_delete_that_failed_half_way_leaves_the_session_not_found_and_the_next_one_finishes_it(
        user, sender, monkeypatch):
    session_id = new_session(sender)
    root().sessions.append_exchange(user, session_id, "req-1", "question", "answer", False)
    assert send(sender, "context.put", path="notes.md", content="x", sessionId=session_id)["type"] == "result"
    real = ObjectStore.delete_prefix

    def fails_after_the_objects(self, prefix):
        real(self, prefix)
        raise Internal()

    monkeypatch.setattr(ObjectStore, "delete_prefix", fails_after_the_objects)
    assert code(send(sender, "session.delete", sessionId=session_id)) == "INTERNAL"
    monkeypatch.setattr(ObjectStore, "delete_prefix", real)
    # Its objects are gone but its messages are not: nothing may read or write it any more.
    for action, params in (("session.get", {}), ("session.update", {"title": "t"}),
                           ("context.put", {"path": "n.md", "content": "x"}), ("context.list", {}),
                           ("chat.countTokens", {"prompt": "hi"})):
        assert code(send(sender, action, sessionId=session_id, **params)) == "NOT_FOUND", action
    listed = send(sender, "session.list", limit=100)["data"]["sessions"]
    assert session_id not in {s["sessionId"] for s in listed}
    assert send(sender, "session.delete", sessionId=session_id)["data"] == {"deleted": True}
    assert left_of(user, session_id) == ([], [])
    assert code(send(sender, "session.delete", sessionId=session_id)) == "NOT_FOUND"


# --- nothing of a live session is lost --------------------------------------------------------


def test_a_file_deleted_while_the_sessions_objects_are_refreshed_does_not_fail_the_write(user, sender, monkeypatch,
                                                                                       clock):
    earlier = Root(get_settings(), clock=lambda: clock.now - 2 * 86400)
    session_id = earlier.sessions.create(user, title="old").session_id
    earlier.context.put(user, "gone.md", "x", session_id=session_id)
    key = f"{session_root(user, session_id)}context/gone.md"
    real_walk = ObjectStore.walk
    deleted: list[int] = []

    def walk_then_delete(self, prefix):
        listed = list(real_walk(self, prefix))
        if prefix == session_root(user, session_id) and not deleted:
            self.delete(key)  # a context.delete between the refresh's listing and its copy
            deleted.append(1)
        return iter(listed)

    monkeypatch.setattr(ObjectStore, "walk", walk_then_delete)
    root().sessions.append_exchange(user, session_id, "req-2", "question", "answer", False)
    assert deleted
    messages = send(sender, "session.get", sessionId=session_id)["data"]["messages"]
    assert [m["content"] for m in messages] == ["question", "answer"]


def test_a_session_revived_by_activity_begun_before_its_idle_expiry_keeps_its_files_through_a_recount(
        user, monkeypatch, clock):
    # A session idle for its whole TTL but a second. A context.put into it reads its clock now (its touch is
    # conditional on `updatedAt > now - TTL`, with that `now`), and its update lands two seconds later: after
    # another Lambda's recount of the user's storage read the session idle-expired by a second.
    ttl = get_settings().session_ttl_days * 86400
    start = clock.now
    session_id = root().sessions.create(user, title="idle").session_id
    root().context.put(user, "kept.md", "x", session_id=session_id)
    writer = Root(get_settings(), clock=lambda: start + ttl - 1)
    recounter = Root(get_settings(), clock=lambda: start + ttl + 1)  # its count is a day old: it recounts

    def recount() -> None:
        recounter.context.put(user, "mine.md", "y", session_id=None)

    ran = once(monkeypatch, SessionStore, "_update", lambda *a, **k: True, True, recount)
    writer.context.put(user, "new.md", "z", session_id=session_id)
    assert ran
    # The activity landed: the session is live, and every file of it is there.
    assert writer.context.get(user, "kept.md", session_id=session_id)["content"] == "x"
    assert sorted(key.rsplit("/", 1)[1] for key in left_of(user, session_id)[1]) == ["kept.md", "new.md"]
