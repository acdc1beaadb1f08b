"""`session.update` (rename) through the Chalice handlers, with API Gateway's event shapes, against moto."""
from __future__ import annotations

import json
import time

import pytest

from chalicelib.config import get_settings
from chalicelib.errors import NotFound
from chalicelib.root import Root
from tests.handler_calls import connect, login, message


def send(sender, connection_id, action, **params):
    """The one frame the app sent back for this request."""
    before = len(sender.frames.get(connection_id, []))
    message(connection_id, json.dumps({"action": action, "id": "u1", **params}))
    (frame,) = sender.frames[connection_id][before:]
    assert frame["id"] == "u1"
    return frame


@pytest.fixture
def users(app_env, boto, sender):
    connect("conn-a=", headers={"Authorization": f"Bearer {login(boto, app_env, 0)}"})
    connect("conn-b=", headers={"Authorization": f"Bearer {login(boto, app_env, 1)}"})
    return "conn-a=", "conn-b="


def test_a_rename_is_the_session_with_its_new_title_in_every_later_read(users, sender):
    mine, _ = users
    created = send(sender, mine, "session.create", title="first")["data"]["session"]
    time.sleep(0.005)  # updatedAt has millisecond resolution
    frame = send(sender, mine, "session.update", sessionId=created["sessionId"], title="Renamed: é 🌍")
    assert frame["type"] == "result"
    renamed = frame["data"]["session"]
    assert renamed["title"] == "Renamed: é 🌍" and renamed["sessionId"] == created["sessionId"]
    assert renamed["createdAt"] == created["createdAt"] and renamed["updatedAt"] > created["updatedAt"]
    assert send(sender, mine, "session.get", sessionId=created["sessionId"])["data"]["session"] == renamed
    listed = send(sender, mine, "session.list", limit=100)["data"]["sessions"]
    assert listed[0] == renamed  # a rename is activity: the session is listed first


def test_another_users_or_an_unknown_session_is_not_found_and_unchanged(users, sender):
    mine, theirs = users
    session = send(sender, mine, "session.create", title="mine")["data"]["session"]
    for connection, session_id in ((theirs, session["sessionId"]), (mine, "0" * 32)):
        frame = send(sender, connection, "session.update", sessionId=session_id, title="taken")
        assert frame["type"] == "error" and frame["error"]["code"] == "NOT_FOUND"
    assert send(sender, mine, "session.get", sessionId=session["sessionId"])["data"]["session"] == session
    assert "0" * 32 not in {s["sessionId"] for s in send(sender, mine, "session.list", limit=100)["data"]["sessions"]}


@pytest.mark.parametrize("params, why", [
    ({"title": "no id"}, "sessionId"),
    ({"sessionId": "../x", "title": "bad id"}, "sessionId"),
    ({"sessionId": "S"}, "title"),
    ({"sessionId": "S", "title": ""}, "title"),
    ({"sessionId": "S", "title": "   "}, "blank"),
    ({"sessionId": "S", "title": "line\nbreak"}, "control"),
    ({"sessionId": "S", "title": "x" * 201}, "200"),
    ({"sessionId": "S", "title": 7}, "string"),
])
def test_bad_parameters_are_bad_request_and_change_nothing(users, sender, params, why):
    mine, _ = users
    session = send(sender, mine, "session.create", title="kept")["data"]["session"]
    params = {k: session["sessionId"] if v == "S" else v for k, v in params.items()}
    frame = send(sender, mine, "session.update", **params)
    assert frame["type"] == "error" and frame["error"]["code"] == "BAD_REQUEST"
    assert why in frame["error"]["message"]
    assert send(sender, mine, "session.get", sessionId=session["sessionId"])["data"]["session"] == session


@pytest.mark.parametrize("title, why", [("   ", "blank"), ("\u3000\t", "control"), ("", "empty"),
                                        ("x" * 201, "200"), ("a\x7fb", "control"),
                                        ("next\x85line", "control"), ("csi\x9b31m", "control"),  # C1 controls
                                        ("line\u2028separator", "one line"), ("para\u2029graph", "one line"),
                                        ("\u200b", "blank"), ("\u2060\ufeff ", "blank")])  # only invisible
def test_session_create_refuses_the_titles_session_update_refuses_and_writes_nothing(users, sender, title, why):
    # A title no rename could give is no title a session can be created with either.
    mine, _ = users
    before = send(sender, mine, "session.list", limit=100)["data"]["sessions"]
    frame = send(sender, mine, "session.create", title=title)
    assert frame["type"] == "error" and frame["error"]["code"] == "BAD_REQUEST" and why in frame["error"]["message"]
    assert send(sender, mine, "session.list", limit=100)["data"]["sessions"] == before


@pytest.mark.parametrize("title", ["Café ☕", "👨\u200d👩\u200d👧 family", "می\u200cخواهم", "עברית and English"])
def test_titles_of_any_script_are_kept_as_given(users, sender, title):
    # Joiners inside emoji and words (U+200D, U+200C) are text, not blanks.
    mine, _ = users
    frame = send(sender, mine, "session.create", title=title)
    assert frame["type"] == "result" and frame["data"]["session"]["title"] == title


def test_a_session_idle_past_its_ttl_cannot_be_renamed_back_to_life(app_env):
    now = [time.time()]
    store = Root(get_settings(), clock=lambda: now[0]).sessions
    session = store.create("sub-idle", title="idle")
    now[0] += get_settings().session_ttl_days * 86400 + 60
    with pytest.raises(NotFound):
        store.rename("sub-idle", session.session_id, title="revived")
    now[0] -= get_settings().session_ttl_days * 86400  # back inside its TTL: the title is the old one
    assert store.require_session("sub-idle", session.session_id).title == "idle"
