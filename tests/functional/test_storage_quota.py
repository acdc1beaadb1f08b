"""Each user's storage quota (issue 13, section 6): bytes and files, QUOTA_EXCEEDED, counted atomically,
presigned uploads counted when their URL is issued, space freed by deletes and expiry. Against moto."""
from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid

import pytest

from chalicelib.config import get_settings
from chalicelib.context.quota import (
    LANDED_SKEW_SECONDS,
    MAX_PENDING,
    PENDING_SLACK_SECONDS,
    RECOUNT_GAP_SECONDS,
    _pending_id,
    is_context_key,
)
from chalicelib.errors import QuotaExceeded
from chalicelib.root import Root
from tests.conftest import reset_app_caches
from tests.fakes import Clock
from tests.handler_calls import connect, message, new_user


@pytest.fixture
def quota(app_env, monkeypatch):
    """Set the quota (files, bytes) for the test; the app's caches are rebuilt with it."""
    def set_quota(files: int = 1000, total_bytes: int = 100 * 1024 * 1024) -> None:
        monkeypatch.setenv("CONTEXT_QUOTA_FILES", str(files))
        monkeypatch.setenv("CONTEXT_QUOTA_BYTES", str(total_bytes))
        reset_app_caches()
    return set_quota


@pytest.fixture
def clock():
    """This module's roots are built with it (Root(..., clock=clock)): the quota's own time, moved by hand."""
    return Clock(time.time())


@pytest.fixture
def store(quota, clock):
    quota(files=3, total_bytes=100)
    return Root(get_settings(), clock=clock).context


@pytest.fixture
def sub():
    return str(uuid.uuid4())  # a fresh user per test: the quota is per user


def test_the_files_past_a_users_quota_are_refused_with_quota_exceeded_and_nothing_is_written(
        app_env, boto, quota, sender):
    quota(files=3)
    connect("quota=", headers={"Authorization": f"Bearer {new_user(boto, app_env)}"})

    def send(frame_id: str, action: str, **params) -> dict:
        message("quota=", json.dumps({"action": action, "id": frame_id, **params}))
        return next(f for f in sender.frames["quota="] if f.get("id") == frame_id)

    for n in range(3):
        assert send(f"p{n}", "context.put", path=f"f{n}.txt", content="x")["type"] == "result"
    refused = send("p3", "context.put", path="f3.txt", content="x")
    assert refused["error"]["code"] == "QUOTA_EXCEEDED" and "retryAfter" not in refused["error"]
    assert "3 of 3 files" in refused["error"]["message"]
    assert send("g3", "context.get", path="f3.txt")["error"]["code"] == "NOT_FOUND"  # nothing written
    # An upload URL is a file too: refused when it is issued, not when it is used.
    assert send("u3", "context.uploadUrl", path="f3.txt", size=1)["error"]["code"] == "QUOTA_EXCEEDED"
    # A session's files count with the user's own.
    session_id = send("s", "session.create", title="s")["data"]["session"]["sessionId"]
    assert send("ps", "context.put", path="s.txt", content="x", sessionId=session_id)["error"]["code"] == \
        "QUOTA_EXCEEDED"
    # Overwriting a file adds no file; deleting one frees its place for the next file.
    assert send("o", "context.put", path="f0.txt", content="new")["type"] == "result"
    assert send("d", "context.delete", path="f1.txt")["type"] == "result"
    assert send("p4", "context.put", path="f4.txt", content="x")["type"] == "result"


def test_the_bytes_past_a_users_quota_are_refused_and_an_overwrite_counts_what_it_adds(store, sub):
    store.put(sub, "a.txt", "a" * 60, session_id=None)
    with pytest.raises(QuotaExceeded, match="60 of 100 bytes"):
        store.put(sub, "b.txt", "b" * 50, session_id=None)
    store.put(sub, "a.txt", "a" * 90, session_id=None)  # 60 -> 90 adds 30
    store.put(sub, "b.txt", "b" * 10, session_id=None)  # exactly the quota
    with pytest.raises(QuotaExceeded):
        store.put(sub, "c.txt", "c", session_id=None)
    with pytest.raises(QuotaExceeded, match="larger than the storage quota"):
        store.upload_url(sub, "huge.bin", 101, session_id=None, content_type=None)


def test_an_upload_url_counts_when_issued_and_an_unused_one_stops_counting_after_its_life(store, sub, clock):
    for n in range(3):
        store.upload_url(sub, f"up{n}.txt", 5, session_id=None, content_type=None)  # never used
    with pytest.raises(QuotaExceeded):
        store.put(sub, "late.txt", "x", session_id=None)
    # The URLs are dead (their minute and the slack for an upload still landing): a recount drops them.
    clock.now += get_settings().presigned_put_seconds + PENDING_SLACK_SECONDS + 1
    store.put(sub, "late.txt", "x", session_id=None)


def test_a_landed_upload_is_counted_once_and_a_recount_while_it_is_on_its_way_keeps_it(store, sub, clock):
    grant = store.upload_url(sub, "up.txt", 5, session_id=None, content_type=None)
    store.put(sub, "a.txt", "a", session_id=None)
    clock.now += RECOUNT_GAP_SECONDS + 1
    # The upload has not landed: a refusal's recount must keep counting it (3 files: up, a, b).
    store.put(sub, "b.txt", "b", session_id=None)
    with pytest.raises(QuotaExceeded, match="3 of 3 files"):
        store.put(sub, "c.txt", "c", session_id=None)
    upload = urllib.request.Request(grant["url"], data=b"12345", method="PUT", headers=grant["headers"])
    with urllib.request.urlopen(upload, timeout=10) as response:
        assert response.status == 200
    store.delete(sub, "a.txt", session_id=None)
    clock.now += RECOUNT_GAP_SECONDS + 1
    # Landed and listed: counted once, so deleting a.txt made room for exactly one file.
    store.put(sub, "c.txt", "c", session_id=None)
    with pytest.raises(QuotaExceeded, match="3 of 3 files"):
        store.put(sub, "d.txt", "d", session_id=None)


def test_a_file_the_lifecycle_rule_removed_frees_its_space_at_the_next_recount(store, sub, clock, boto, app_env):
    for name in ("a", "b", "c"):
        store.put(sub, f"{name}.txt", name, session_id=None)
    boto("s3").delete_object(Bucket=app_env.names["CONTEXT_BUCKET"], Key=f"users/{sub}/context/b.txt")  # expired
    with pytest.raises(QuotaExceeded):  # counted a moment ago: not recounted on every refusal
        store.put(sub, "d.txt", "d", session_id=None)
    clock.now += RECOUNT_GAP_SECONDS + 1
    store.put(sub, "d.txt", "d", session_id=None)


def test_concurrent_writes_never_pass_the_quota_together(quota, sub):
    quota(files=5)
    results: list[str] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        context = Root(get_settings()).context  # a root per thread, as Lambda containers have
        try:
            context.put(sub, f"race/{n}.txt", str(n), session_id=None)
            outcome = "ok"
        except QuotaExceeded:
            outcome = "refused"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["ok"] * 5 + ["refused"] * 7


def test_puts_leave_nothing_waiting_and_upload_urls_wait_at_most_max_pending(quota, clock, sub):
    quota(files=MAX_PENDING + 10)
    context = Root(get_settings(), clock=clock).context

    def waiting() -> int:
        return len(_pending(context, sub))

    for n in range(5):
        context.put(sub, f"many/{n}.txt", "x", session_id=None)
    assert waiting() == 0  # a put is forgotten once written
    for n in range(MAX_PENDING - 1):
        context.upload_url(sub, f"up/{n}.txt", 1, session_id=None, content_type=None)
    context.upload_url(sub, "up/last.txt", 1, session_id=None, content_type=None)
    assert waiting() == MAX_PENDING
    clock.now += RECOUNT_GAP_SECONDS + 1
    with pytest.raises(QuotaExceeded, match=f"{MAX_PENDING} upload URLs or writes are live"):
        context.upload_url(sub, "up/more.txt", 1, session_id=None, content_type=None)
    clock.now += get_settings().presigned_put_seconds + PENDING_SLACK_SECONDS + 1  # the URLs are dead
    context.upload_url(sub, "up/more.txt", 1, session_id=None, content_type=None)
    assert waiting() == 1


@pytest.mark.parametrize("relative, counted", [
    ("context/a.txt", True), ("context/sessions/x/context/y", True),
    ("sessions/0123/context/notes.md", True), ("sessions/0123/messages/1700000000000-1-abcd", False),
    ("sessions/0123/context", False), ("other/a.txt", False),
])
def test_only_context_files_count(relative, counted):
    assert is_context_key(relative) is counted


def _pending(context, sub: str) -> dict:
    """The user's pending writes as the quota's item holds them."""
    item = context._quota._dynamodb.get_item(TableName=get_settings().usage_table, Key={
        "pk": {"S": f"USER#{sub}"}, "sk": {"S": "STORAGE"}})["Item"]
    return item["pending"]["M"]


def _land(grant: dict, body: bytes) -> None:
    upload = urllib.request.Request(grant["url"], data=body, method="PUT", headers=grant["headers"])
    with urllib.request.urlopen(upload, timeout=10) as response:
        assert response.status == 200


def test_a_landed_upload_deleted_while_its_url_lives_counts_even_after_a_recount_saw_it(store, sub, clock):
    """A URL can put its file back as long as it lives: a recount that saw the upload landed must not forget it,
    or delete + recount + land again stores twice the quota (the old code forgot it)."""
    grant = store.upload_url(sub, "up.txt", 60, session_id=None, content_type=None)
    _land(grant, b"u" * 60)
    clock.now += RECOUNT_GAP_SECONDS + 1
    with pytest.raises(QuotaExceeded, match="60 of 100 bytes"):  # this refusal recounts: up.txt is listed
        store.put(sub, "b.txt", "b" * 90, session_id=None)
    store.delete(sub, "up.txt", session_id=None)
    with pytest.raises(QuotaExceeded, match="60 of 100 bytes"):  # the live URL could land up.txt again
        store.put(sub, "b.txt", "b" * 90, session_id=None)
    _land(grant, b"u" * 60)
    clock.now += get_settings().presigned_put_seconds + PENDING_SLACK_SECONDS + 1  # the URL is dead
    store.put(sub, "b.txt", "b" * 40, session_id=None)  # up.txt (60, landed again and listed) + 40
    with pytest.raises(QuotaExceeded, match="100 of 100 bytes"):
        store.put(sub, "c.txt", "c", session_id=None)


@pytest.mark.parametrize("urls", [[60], [80, 10]], ids=["overwrite-that-does-not-grow", "two-urls-of-one-path"])
def test_every_live_url_of_a_path_counts_what_its_upload_may_store(store, sub, clock, urls):
    """An overwrite URL that adds nothing now puts the whole file back after a delete, and the larger of two URLs
    of one path may land: each counts until it dies (the old code counted neither)."""
    store.put(sub, "a.txt", "a" * urls[0], session_id=None)
    grants = [store.upload_url(sub, "a.txt", size, session_id=None, content_type=None) for size in urls]
    store.delete(sub, "a.txt", session_id=None)
    with pytest.raises(QuotaExceeded, match=f"{urls[0]} of 100 bytes"):
        store.put(sub, "b.txt", "b" * (101 - urls[0]), session_id=None)
    _land(grants[0], b"a" * urls[0])
    store.put(sub, "b.txt", "b" * (100 - urls[0]), session_id=None)  # what the URLs leave fits
    clock.now += get_settings().presigned_put_seconds + PENDING_SLACK_SECONDS + 1
    with pytest.raises(QuotaExceeded, match="100 of 100 bytes"):
        store.put(sub, "c.txt", "c", session_id=None)


def test_a_put_that_finds_its_file_deleted_on_its_way_counts_its_whole_size(store, sub, monkeypatch):
    """An overwrite reserves what it grows by, but a delete landing between its HEAD and its write makes it a new
    file: a recount in between must count the whole put, or another write fits where it does not (the old code
    let both in: 190 bytes stored under a quota of 100)."""
    store.put(sub, "a.txt", "a" * 90, session_id=None)
    objects, key = store._objects, f"users/{sub}/context/a.txt"
    head, put = objects.head, objects.put
    refused: list[QuotaExceeded] = []

    def head_then_deleted(name):
        found = head(name)
        if name == key:  # a context.delete of another Lambda lands now
            objects.delete(key)
            store._quota.released(sub)
        return found

    def put_after_another_write(name, data, **kwargs):
        if name == key:  # another write, and its recount, come before this one lands
            try:
                store.put(sub, "b.txt", "b" * 90, session_id=None)
            except QuotaExceeded as error:
                refused.append(error)
        return put(name, data, **kwargs)

    monkeypatch.setattr(objects, "head", head_then_deleted)
    monkeypatch.setattr(objects, "put", put_after_another_write)
    store.put(sub, "a.txt", "a" * 100, session_id=None)
    assert refused and "100 of 100 bytes" in str(refused[0])


def test_a_full_map_of_landed_uploads_frees_up_once_their_urls_expire_and_the_refusal_says_when(
        quota, clock, sub, boto, app_env, monkeypatch):
    """MAX_PENDING uploads that landed blocked every write until their URLs were dead (6 minutes), and each refusal
    recounted (the old code). A recount drops an expired URL whose path is listed at its length or more; a full
    map's refusal says when the earliest may free up, and recounts no more often than RECOUNT_GAP_SECONDS."""
    quota(files=MAX_PENDING + 10)
    context = Root(get_settings(), clock=clock).context
    s3, root = boto("s3"), f"users/{sub}/context/"
    for n in range(MAX_PENDING):
        context.upload_url(sub, f"up/{n}.txt", 2, session_id=None, content_type=None)
    for n in range(2, MAX_PENDING):  # landed; up/0.txt never does, and up/1.txt holds less than its URL binds
        s3.put_object(Bucket=app_env.names["CONTEXT_BUCKET"], Key=f"{root}up/{n}.txt", Body=b"xx")
    s3.put_object(Bucket=app_env.names["CONTEXT_BUCKET"], Key=f"{root}up/1.txt", Body=b"x")
    walks: list[str] = []
    walk = context._quota._objects.walk

    def counted_walk(prefix):
        walks.append(prefix)
        return walk(prefix)

    monkeypatch.setattr(context._quota._objects, "walk", counted_walk)

    refusals = []
    for _ in range(3):
        with pytest.raises(QuotaExceeded, match=f"{MAX_PENDING} upload URLs or writes are live") as refused:
            context.upload_url(sub, "up/more.txt", 1, session_id=None, content_type=None)
        refusals.append(refused.value)
    # Only the cap refuses a write that adds nothing (an overwrite no larger than its file), and it says when.
    with pytest.raises(QuotaExceeded, match="upload URLs or writes are live"):
        context.put(sub, "up/5.txt", "x", session_id=None)
    assert walks == []  # counted a moment ago, and nothing could be dropped: no recount
    put_seconds = get_settings().presigned_put_seconds
    retry_after = refusals[0].retry_after
    assert retry_after is not None
    assert put_seconds < retry_after <= put_seconds + LANDED_SKEW_SECONDS + 2  # not the 6 minutes of a dead URL
    assert {error.retry_after for error in refusals} == {retry_after}

    clock.now += RECOUNT_GAP_SECONDS + 1  # a recount may run again, but frees nothing before the URLs expire
    for _ in range(3):
        with pytest.raises(QuotaExceeded) as refused:
            context.upload_url(sub, "up/more.txt", 1, session_id=None, content_type=None)
    assert len(walks) == 1 and refused.value.retry_after == retry_after - RECOUNT_GAP_SECONDS - 1

    clock.now += retry_after - RECOUNT_GAP_SECONDS - 1  # the URLs have expired: the landed ones are dropped
    context.upload_url(sub, "up/more.txt", 1, session_id=None, content_type=None)
    assert len(walks) == 2
    assert set(_pending(context, sub)) == {  # up/0.txt and up/1.txt may still land (again) and store more
        _pending_id(f"{root}up/0.txt", 2), _pending_id(f"{root}up/1.txt", 2), _pending_id(f"{root}up/more.txt", 1)}


def test_an_overwrite_that_adds_nothing_is_recorded_but_never_refused_for_space(quota, clock, sub):
    """A user over a lowered quota may still rewrite or shrink a file in place (the old code refused it: the
    quota's conditions on bytes and files applied to a write that adds nothing); anything that grows is refused."""
    quota(files=2, total_bytes=100)
    Root(get_settings(), clock=clock).context.put(sub, "a.txt", "a" * 90, session_id=None)
    Root(get_settings(), clock=clock).context.put(sub, "b.txt", "b" * 5, session_id=None)
    quota(files=1, total_bytes=50)  # lowered: 95 bytes and 2 files are in use
    context = Root(get_settings(), clock=clock).context
    context.put(sub, "a.txt", "c" * 90, session_id=None)  # rewritten in place
    context.put(sub, "a.txt", "d" * 40, session_id=None)  # shrunk
    grant = context.upload_url(sub, "b.txt", 5, session_id=None, content_type=None)  # an upload that adds nothing
    assert set(_pending(context, sub)) == {_pending_id(f"users/{sub}/context/b.txt", 5)}  # recorded all the same
    _land(grant, b"e" * 5)
    assert context.get(sub, "a.txt", session_id=None)["content"] == "d" * 40
    with pytest.raises(QuotaExceeded, match="95 of 50 bytes and 2 of 1 files"):
        context.put(sub, "a.txt", "f" * 41, session_id=None)  # grows
    with pytest.raises(QuotaExceeded, match="larger than the storage quota"):
        context.upload_url(sub, "b.txt", 51, session_id=None, content_type=None)
