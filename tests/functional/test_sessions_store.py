"""SessionStore and ContextStore against moto: offload, TTL, history, the chat interface."""
from __future__ import annotations

import json
import time
import urllib.request
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.aws import clients, objects
from chalicelib.config import get_settings
from chalicelib.dispatch.connections import Connection
from chalicelib.dispatch.contract import ActionContext
from chalicelib.dispatch.table import ActionTable
from chalicelib.errors import BadRequest, NotFound, PayloadTooLarge
from chalicelib.protocol import ClientFrame, Params
from chalicelib.root import Root
from infra import resources
from tests.conftest import reset_app_caches
from tests.fakes import Clock, RecordingSender


@pytest.fixture
def services(app_env):
    return Root(get_settings())


@pytest.fixture
def sub():
    return str(uuid.uuid4())  # a fresh user per test: no test sees another's data


def call(services, sub, action, **params):
    connection = Connection(connection_id="c=", user_sub=sub, username="u", groups=(), token_expires_at=2 ** 40,
                            connected_at="", endpoint="")
    frame = ClientFrame(action=action, id="r1", params=Params(params))
    entry = ActionTable(services).lookup(action)
    assert entry is not None, action
    answer = entry.action(ActionContext(connection=connection, frame=frame, sender=RecordingSender(), now=time.time()))
    assert answer is not None
    return answer["data"]


def items_of(services, sub, session_id):
    table = clients.table(services.settings.sessions_table)
    return table.query(KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
                       ExpressionAttributeValues={":p": f"USER#{sub}", ":s": f"SESSION#{session_id}"})["Items"]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_a_300_kb_message_is_offloaded_encrypted_and_returned_whole(services, sub, boto):
    session = services.sessions.create(sub, title="big")
    reply = ("0123456789abcdef\n" * 18000)[:300_000]
    services.sessions.append_exchange(sub, session.session_id, "req-1", "make it big", reply, False)

    stored = {i["role"]: i for i in items_of(services, sub, session.session_id) if "role" in i}
    assert stored["user"]["content"] == "make it big" and "contentKey" not in stored["user"]
    assert "content" not in stored["assistant"] and stored["assistant"]["size"] == 300_000
    key = stored["assistant"]["contentKey"]
    assert key.startswith(f"users/{sub}/sessions/{session.session_id}/messages/")
    s3 = boto("s3")
    head = s3.head_object(Bucket=services.settings.context_bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    tags = s3.get_object_tagging(Bucket=services.settings.context_bucket, Key=key)["TagSet"]
    assert tags == [{"Key": objects.SESSION_EXPIRY_TAG[0], "Value": objects.SESSION_EXPIRY_TAG[1]}]

    data = call(services, sub, "session.get", sessionId=session.session_id)
    big = data["messages"][1]
    assert big["content"] is None and big["size"] == 300_000
    assert fetch(big["contentUrl"]).decode("utf-8") == reply
    assert len(json.dumps(data).encode()) < 128 * 1024  # it fits one WebSocket frame
    history = services.sessions.history_for(sub, session.session_id, 100_000)
    assert history == [{"role": "user", "content": "make it big"}, {"role": "assistant", "content": reply}]


def test_escaping_counts_towards_the_inline_limit(services, sub):
    session = services.sessions.create(sub, title="controls")
    nasty = "\x01" * 20_000  # 20 KB of text, 120 KB as JSON
    services.sessions.append_exchange(sub, session.session_id, "r", "p", nasty, False)
    reply = next(i for i in items_of(services, sub, session.session_id) if i.get("role") == "assistant")
    assert "contentKey" in reply
    assert services.sessions.history_for(sub, session.session_id, 10**6)[1]["content"] == nasty


def test_every_item_has_the_session_ttl_and_activity_moves_it_forward(app_env, sub):
    clock = Clock(time.time())
    services = Root(get_settings(), clock=clock)
    store = services.sessions
    ttl_seconds = get_settings().session_ttl_days * 86400
    session = store.create(sub, title="ttl")
    store.append_exchange(sub, session.session_id, "r1", "hello", "x" * 200_000, False)
    items = items_of(services, sub, session.session_id)
    assert len(items) == 3
    first = {int(i["ttl"]) for i in items}
    assert len(first) == 1 and first.pop() >= clock.now + ttl_seconds

    clock.now += 2 * 86400 + 5  # two days later: less than the TTL is left, so every item moves
    store.append_exchange(sub, session.session_id, "r2", "again", "ok", True)
    items = items_of(services, sub, session.session_id)
    ttls = {int(i["ttl"]) for i in items}
    assert len(items) == 5 and len(ttls) == 1 and ttls.pop() >= clock.now + ttl_seconds
    assert next(i for i in items if i.get("requestId") == "r2" and i["role"] == "assistant")["cancelled"] is True


def test_a_session_idle_past_its_ttl_is_gone_before_dynamodb_sweeps_it(app_env, sub):
    clock = Clock(time.time())
    store = Root(get_settings(), clock=clock).sessions
    ttl_seconds = get_settings().session_ttl_days * 86400
    idle, active = store.create(sub, title="idle"), store.create(sub, title="active")
    clock.now += ttl_seconds - 60
    store.touch(sub, active.session_id)  # activity just inside the TTL keeps a session
    clock.now += 120  # the idle one is now past its TTL; its items are still in the table
    assert store.require_session(sub, active.session_id).title == "active"
    with pytest.raises(NotFound):
        store.require_session(sub, idle.session_id)
    assert [s.session_id for s in store.page(sub, limit=10, cursor=None)[0]] == [active.session_id]
    with pytest.raises(NotFound):  # new activity does not revive it
        store.append_exchange(sub, idle.session_id, "r", "hello", "again", False)
    assert store.require_session(sub, active.session_id)


def test_history_for_order_limit_and_alternation(services, sub):
    store = services.sessions
    session = store.create(sub, title="h")
    for n in range(5):
        store.append_exchange(sub, session.session_id, f"r{n}", f"question {n} " + "q" * 30,
                              f"answer {n} " + "a" * 30, False)
        time.sleep(0.002)
    store.append_exchange(sub, session.session_id, "r5", "cancelled early", "", True)
    everything = store.history_for(sub, session.session_id, 10_000)
    assert [t["role"] for t in everything] == ["user", "assistant"] * 5
    assert [t["content"].split()[1] for t in everything[::2]] == ["0", "1", "2", "3", "4"]
    assert everything[-2]["content"].startswith("question 4")
    recent = store.history_for(sub, session.session_id, 50)  # ~11 tokens per message
    assert [t["content"][:10] for t in recent] == ["question 3", "answer 3 a", "question 4", "answer 4 a"]
    assert store.history_for(sub, session.session_id, 0) == []


def test_chat_interface_refuses_other_users_sessions(services, sub):
    session = services.sessions.create(sub, title="mine")
    other = str(uuid.uuid4())
    with pytest.raises(NotFound):
        services.sessions.require_session(other, session.session_id)
    with pytest.raises(NotFound):
        services.sessions.history_for(other, session.session_id, 1000)
    with pytest.raises(NotFound):
        services.sessions.append_exchange(other, session.session_id, "r", "p", "x", False)
    with pytest.raises(NotFound):
        services.context.context_documents(other, session.session_id, ["a.txt"], 1000)
    assert items_of(services, other, session.session_id) == []


def test_context_documents_limits_lookup_order_and_errors(services, sub):
    context = services.context
    session = services.sessions.create(sub, title="ctx")
    context.put(sub, "a.txt", "user-level a", session_id=None)
    context.put(sub, "a.txt", "session a", session_id=session.session_id)
    context.put(sub, "b.txt", "b" * 400, session_id=None)
    docs = context.context_documents(sub, session.session_id, ["a.txt", "b.txt", "a.txt"], 1000)
    assert docs == [("a.txt", "session a"), ("b.txt", "b" * 400)]
    assert context.context_documents(sub, None, ["a.txt"], 1000) == [("a.txt", "user-level a")]
    with pytest.raises(PayloadTooLarge):
        context.context_documents(sub, None, ["a.txt", "b.txt"], 100)
    with pytest.raises(NotFound):
        context.context_documents(sub, None, ["missing.txt"], 1000)
    with pytest.raises(BadRequest):
        context.context_documents(sub, None, ["../b.txt"], 1000)
    services.objects.put(f"users/{sub}/context/bin.dat", b"\xff\xfe\x00", content_type="x/y", tagging=None)
    with pytest.raises(BadRequest):
        context.context_documents(sub, None, ["bin.dat"], 1000)
    got = call(services, sub, "context.get", path="bin.dat")
    assert got["content"] is None and got["reason"] == "not-utf8" and fetch(got["url"]) == b"\xff\xfe\x00"


def test_kms_encryption_when_a_key_is_configured(app_env, monkeypatch, sub, boto):
    """Put, copy (a session's objects re-written) and presigned PUT: SSE-KMS with the configured key."""
    key_arn = boto("kms").create_key()["KeyMetadata"]["Arn"]  # what infra/sync_config.py writes
    monkeypatch.setenv("CONTEXT_KMS_KEY_ID", key_arn)
    reset_app_caches()
    services = Root(get_settings())
    s3, bucket = boto("s3"), services.settings.context_bucket

    def encryption(key: str) -> tuple[str, str | None]:
        head = s3.head_object(Bucket=bucket, Key=key)
        return head["ServerSideEncryption"], head.get("SSEKMSKeyId")

    services.context.put(sub, "secret.txt", "classified", session_id=None)
    assert encryption(f"users/{sub}/context/secret.txt") == ("aws:kms", key_arn)

    session = services.sessions.create(sub, title="kms")
    root = objects.session_root(sub, session.session_id)
    services.context.put(sub, "notes.txt", "session notes", session_id=session.session_id)
    key = f"{root}context/notes.txt"
    # As written before the stage had its key: SSE-S3. Re-writing it in place moves it to the key.
    s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                   MetadataDirective="COPY", TaggingDirective="COPY", ServerSideEncryption="AES256")
    assert encryption(key) == ("AES256", None)
    assert services.objects.refresh(root) == 1
    assert encryption(key) == ("aws:kms", key_arn)
    assert s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"] == [
        {"Key": objects.SESSION_EXPIRY_TAG[0], "Value": objects.SESSION_EXPIRY_TAG[1]}]

    grant = services.context.upload_url(sub, "up.txt", 3, session_id=None, content_type=None)
    assert grant["headers"]["x-amz-server-side-encryption"] == "aws:kms"
    assert grant["headers"]["x-amz-server-side-encryption-aws-kms-key-id"] == key_arn
    signed = parse_qs(urlsplit(grant["url"]).query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id"} <= set(signed)
    upload = urllib.request.Request(grant["url"], data=b"abc", method="PUT", headers=grant["headers"])
    with urllib.request.urlopen(upload, timeout=10) as response:
        assert response.status == 200
    assert encryption(f"users/{sub}/context/up.txt") == ("aws:kms", key_arn)


def test_sse_s3_when_no_key_is_configured(services, sub, boto):
    """The local stack's case: every write still says how it is encrypted."""
    assert services.settings.context_kms_key_id is None
    services.context.put(sub, "plain.txt", "plain", session_id=None)
    head = boto("s3").head_object(Bucket=services.settings.context_bucket, Key=f"users/{sub}/context/plain.txt")
    assert head["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in head
    grant = services.context.upload_url(sub, "up.txt", 3, session_id=None, content_type=None)
    assert grant["headers"]["x-amz-server-side-encryption"] == "AES256"
    assert "x-amz-server-side-encryption-aws-kms-key-id" not in grant["headers"]


def test_the_expiry_tags_match_the_bucket_rules_and_moto_has_the_rules(app_env, boto):
    rules = {rule.id: rule for rule in resources.bucket("context").expiry_rules}
    session, files = resources.SESSION_EXPIRY_RULE, resources.CONTEXT_FILE_EXPIRY_RULE
    assert set(rules) == {session.id, files.id}
    assert (session.tag_key, session.tag_value) == objects.SESSION_EXPIRY_TAG
    assert (files.tag_key, files.tag_value) == objects.CONTEXT_FILE_EXPIRY_TAG
    # Each rule's days are the app's own setting, whose default is the rule's.
    settings = get_settings()
    assert (settings.session_ttl_days, settings.context_file_ttl_days) == (session.default_days, files.default_days)
    config = boto("s3").get_bucket_lifecycle_configuration(Bucket=app_env.names["CONTEXT_BUCKET"])
    moto_rules = {rule["ID"]: rule for rule in config["Rules"]}
    assert set(moto_rules) == set(rules)
    for rule in rules.values():
        assert moto_rules[rule.id]["Filter"]["Tag"] == {"Key": rule.tag_key, "Value": rule.tag_value}
        assert moto_rules[rule.id]["Expiration"]["Days"] == rule.default_days + rule.extra_days
