"""Sessions and the context store through the local stack, with two real users."""
from __future__ import annotations

import base64
import json
import unicodedata
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config

from chalicelib.aws.objects import ObjectStore
from chalicelib.sessions import SessionStore

REGION = "us-east-1"


def aws(stack, service):
    config = Config(signature_version="s3v4") if service == "s3" else None
    return boto3.client(service, endpoint_url=stack.document["awsEndpointUrl"], region_name=REGION,
                        aws_access_key_id="local", aws_secret_access_key="local", config=config)


def table(stack):
    return boto3.resource("dynamodb", endpoint_url=stack.document["awsEndpointUrl"], region_name=REGION,
                          aws_access_key_id="local", aws_secret_access_key="local").Table("llm-ide-local-sessions")


def bucket(stack) -> str:
    (name,) = [b["Name"] for b in aws(stack, "s3").list_buckets()["Buckets"] if "-context-" in b["Name"]]
    return name


def sub_of(stack, username) -> str:
    payload = stack.tokens(username).access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]


def store(stack) -> SessionStore:
    """The app's own store against the stack's moto: chat is not on this branch, so tests append directly."""
    objects = ObjectStore(aws(stack, "s3"), bucket=bucket(stack), kms_key_id=None)
    return SessionStore(table(stack), objects, ttl_days=30, inline_max_bytes=100 * 1024)


def keys(stack, prefix="users/") -> set[str]:
    pages = aws(stack, "s3").get_paginator("list_objects_v2").paginate(Bucket=bucket(stack), Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", ())}


def session_items(stack, username, session_id):
    return table(stack).query(KeyConditionExpression="pk = :p AND begins_with(sk, :s)", ConsistentRead=True,
                              ExpressionAttributeValues={":p": f"USER#{sub_of(stack, username)}",
                                                         ":s": f"SESSION#{session_id}"})["Items"]


def ok(client, action, **params):
    frame = client.request(action, **params)
    assert frame["type"] == "result", frame
    return frame["data"]


def code(client, action, **params) -> str:
    frame = client.request(action, **params)
    assert frame["type"] == "error", frame
    return frame["error"]["code"]


def http(method, url, data=None, headers=None):
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_sessions_create_list_newest_first_with_cursor_and_limit(stack):
    with stack.connect("dev") as client:
        created = [ok(client, "session.create", title=f"paging {n}")["session"] for n in range(5)]
        assert set(created[0]) == {"sessionId", "title", "createdAt", "updatedAt"}
        seen, cursor, pages = [], None, 0
        while True:
            data = ok(client, "session.list", limit=2, **({"cursor": cursor} if cursor else {}))
            assert len(data["sessions"]) <= 2
            seen += data["sessions"]
            pages += 1
            cursor = data["cursor"]
            if cursor is None:
                break
        ids = [s["sessionId"] for s in seen]
        assert len(ids) == len(set(ids)) and pages >= 3
        stamps = [s["updatedAt"] for s in seen]
        assert stamps == sorted(stamps, reverse=True)
        mine = [i for i in ids if i in {s["sessionId"] for s in created}]
        assert mine == [s["sessionId"] for s in reversed(created)]
        assert ok(client, "session.get", sessionId=created[0]["sessionId"]) == \
            {"session": created[0], "messages": [], "cursor": None}
        for limit in (0, 101, "2"):
            assert code(client, "session.list", limit=limit) == "BAD_REQUEST"


def test_a_tampered_cursor_is_bad_request(stack):
    with stack.connect("dev") as client:
        for _ in range(3):
            ok(client, "session.create", title="tamper")
        cursor = ok(client, "session.list", limit=1)["cursor"]
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        forged = [
            cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1],
            "not base64 !!",
            base64.urlsafe_b64encode(json.dumps({**position, "pk": "USER#someone"}).encode()).decode(),
            base64.urlsafe_b64encode(json.dumps({**position, "s": "../x"}).encode()).decode(),
            base64.urlsafe_b64encode(b"[1, 2]").decode(),
            "A" * 5000,
        ]
        for bad in forged:
            assert code(client, "session.list", cursor=bad) == "BAD_REQUEST", bad


def test_two_users_are_isolated_in_every_session_and_context_action(stack):
    with stack.connect("dev") as dev, stack.connect("dev2") as dev2:
        session_id = ok(dev, "session.create", title="dev's secret plans")["session"]["sessionId"]
        store(stack).append_exchange(sub_of(stack, "dev"), session_id, "req-iso", "secret prompt", "secret reply",
                                     False)
        ok(dev, "context.put", path="iso/secret.txt", content="dev's file")
        ok(dev, "context.put", path="notes.txt", content="session file", sessionId=session_id)
        before = keys(stack)

        assert code(dev2, "session.get", sessionId=session_id) == "NOT_FOUND"
        assert code(dev2, "session.delete", sessionId=session_id) == "NOT_FOUND"
        listed = ok(dev2, "session.list", limit=100)["sessions"]
        assert session_id not in {s["sessionId"] for s in listed}
        for params in ({}, {"sessionId": session_id}):
            path = "iso/secret.txt" if not params else "notes.txt"
            assert code(dev2, "context.get", path=path, **params) == "NOT_FOUND"
            assert code(dev2, "context.delete", path=path, **params) == "NOT_FOUND"
        assert ok(dev2, "context.list", prefix="iso/")["items"] == []
        assert code(dev2, "context.list", sessionId=session_id) == "NOT_FOUND"
        assert code(dev2, "context.put", path="notes.txt", content="overwrite", sessionId=session_id) == "NOT_FOUND"
        assert code(dev2, "context.uploadUrl", path="notes.txt", size=3, sessionId=session_id) == "NOT_FOUND"
        assert keys(stack) == before  # dev2 wrote nothing anywhere

        # dev2's own file of the same name lives in dev2's space only.
        ok(dev2, "context.put", path="iso/secret.txt", content="dev2's file")
        assert ok(dev2, "context.get", path="iso/secret.txt")["content"] == "dev2's file"
        assert ok(dev, "context.get", path="iso/secret.txt")["content"] == "dev's file"
        got = ok(dev, "session.get", sessionId=session_id)
        assert [m["content"] for m in got["messages"]] == ["secret prompt", "secret reply"]
        assert got["messages"][0]["role"] == "user" and got["messages"][1]["requestId"] == "req-iso"
        assert ok(dev, "context.list", sessionId=session_id)["items"][0]["path"] == "notes.txt"
        assert ok(dev, "context.get", path="notes.txt", sessionId=session_id)["content"] == "session file"


ATTACKS = [
    "../secret.txt", "/etc/passwd", "a/../../b", "a/./b", "a//b", "nul\x00byte.txt", "x" * 2048, "dir\\file",
    "a\uff0fb.txt",                    # fullwidth solidus: '/' under NFKC
    "\uff0e\uff0e/etc/passwd",         # fullwidth full stops: '..' under NFKC
    "\u2025/x",                        # two-dot leader: '..' under NFKC
    "a/\u2024/b",                     # one-dot leader: '.' under NFKC
    "", "tab\there",
]


@pytest.mark.parametrize("path", ATTACKS, ids=[repr(p[:20]) for p in ATTACKS])
def test_path_attacks_are_bad_request_and_write_nothing(stack, path):
    before = keys(stack)
    with stack.connect("dev") as client:
        session_id = ok(client, "session.create", title="attacks")["session"]["sessionId"]
        for params in ({}, {"sessionId": session_id}):
            assert code(client, "context.put", path=path, content="pwned", **params) == "BAD_REQUEST"
            assert code(client, "context.uploadUrl", path=path, size=5, **params) == "BAD_REQUEST"
            assert code(client, "context.get", path=path, **params) == "BAD_REQUEST"
            assert code(client, "context.delete", path=path, **params) == "BAD_REQUEST"
        assert code(client, "context.list", prefix=path + "/" if path else "../") == "BAD_REQUEST"
    assert keys(stack) == before


def test_composed_and_decomposed_spellings_are_one_file(stack):
    composed, decomposed = "unicode/caf\u00e9.txt", "unicode/cafe\u0301.txt"
    assert unicodedata.normalize("NFC", decomposed) == composed
    with stack.connect("dev") as client:
        ok(client, "context.put", path=decomposed, content="one")
        ok(client, "context.put", path=composed, content="two")
        assert ok(client, "context.get", path=decomposed)["content"] == "two"
        assert [i["path"] for i in ok(client, "context.list", prefix="unicode/")["items"]] == [composed]
        ok(client, "context.delete", path=decomposed)
        assert code(client, "context.get", path=composed) == "NOT_FOUND"


def test_presigned_upload_of_2_mb_then_get(stack):
    content = ("def f():\n    return 'é'\n" * 90_000).encode("utf-8")[:2 * 1024 * 1024]
    with stack.connect("dev") as client:
        grant = ok(client, "context.uploadUrl", path="big/upload.py", size=len(content),
                   contentType="text/x-python; charset=utf-8")
        assert grant["url"].startswith("http://127.0.0.1:")
        assert "X-Amz-Signature=" in grant["url"] and "content-length%3Bcontent-type" in grant["url"]
        assert grant["headers"]["Content-Length"] == str(len(content))
        status, _ = http("PUT", grant["url"], data=content, headers=grant["headers"])
        assert status == 200
        got = ok(client, "context.get", path="big/upload.py")
        assert got["size"] == len(content) and got["content"] is None and got["reason"] == "too-large"
        status, body = http("GET", got["url"])
        assert status == 200 and body == content
        (item,) = ok(client, "context.list", prefix="big/")["items"]
        assert item["path"] == "big/upload.py" and item["size"] == len(content)
        assert code(client, "context.uploadUrl", path="big/too.bin", size=5 * 1024 * 1024 + 1) == "PAYLOAD_TOO_LARGE"
    head = aws(stack, "s3").head_object(Bucket=bucket(stack), Key=f"users/{sub_of(stack, 'dev')}/context/big/upload.py")
    assert head["ServerSideEncryption"] == "AES256" and head["ContentType"] == "text/x-python; charset=utf-8"


def test_a_presigned_put_with_another_length_or_type_is_refused_and_writes_nothing(stack):
    content = b"x" * 1000
    with stack.connect("dev") as client:
        grant = ok(client, "context.uploadUrl", path="refused/file.txt", size=len(content))
        other_type = {**grant["headers"], "Content-Type": "application/x-sh"}
        assert http("PUT", grant["url"], data=content, headers=other_type)[0] == 403
        shorter = {**grant["headers"], "Content-Length": str(len(content) - 1)}
        status, body = http("PUT", grant["url"], data=content[:-1], headers=shorter)
        assert status == 403 and b"SignatureDoesNotMatch" in body
        longer = {**grant["headers"], "Content-Length": str(len(content) + 1)}
        assert http("PUT", grant["url"], data=content + b"y", headers=longer)[0] == 403
        unencrypted = {k: v for k, v in grant["headers"].items() if not k.startswith("x-amz-server-side")}
        assert http("PUT", grant["url"], data=content, headers=unencrypted)[0] == 403
        tampered = grant["url"].replace("refused/file.txt", "refused/other.txt")
        assert http("PUT", tampered, data=content, headers=grant["headers"])[0] == 403
        assert code(client, "context.get", path="refused/file.txt") == "NOT_FOUND"
        assert http("PUT", grant["url"], data=content, headers=grant["headers"])[0] == 200
        assert ok(client, "context.get", path="refused/file.txt")["content"] == "x" * 1000
    # Presigned URLs are credentials: no log of the stack, the app or moto holds one.
    for log in (stack.output, stack.state_dir / "moto.log"):
        assert "X-Amz-Signature" not in log.read_text(errors="replace"), log


def test_a_session_scoped_upload_is_tagged_to_expire_with_the_session(stack):
    with stack.connect("dev") as client:
        session_id = ok(client, "session.create", title="uploads")["session"]["sessionId"]
        grant = ok(client, "context.uploadUrl", path="spec.md", size=7, sessionId=session_id)
        assert grant["headers"]["x-amz-tagging"] == "llm-ide-expiry=session"
        assert http("PUT", grant["url"], data=b"# Spec\n", headers=grant["headers"])[0] == 200
        assert ok(client, "context.get", path="spec.md", sessionId=session_id)["content"] == "# Spec\n"
        assert code(client, "context.get", path="spec.md") == "NOT_FOUND"  # not among the user's files
    key = f"users/{sub_of(stack, 'dev')}/sessions/{session_id}/context/spec.md"
    tags = aws(stack, "s3").get_object_tagging(Bucket=bucket(stack), Key=key)["TagSet"]
    assert tags == [{"Key": "llm-ide-expiry", "Value": "session"}]


def test_context_list_pages_with_cursor(stack):
    with stack.connect("dev2") as client:
        for n in range(5):
            ok(client, "context.put", path=f"pages/f{n}.txt", content=str(n))
        paths, cursor = [], None
        while True:
            data = ok(client, "context.list", prefix="pages/", limit=2, **({"cursor": cursor} if cursor else {}))
            paths += [i["path"] for i in data["items"]]
            cursor = data["cursor"]
            if cursor is None:
                break
        assert paths == [f"pages/f{n}.txt" for n in range(5)]
        outside = base64.urlsafe_b64encode(json.dumps({"p": "other/x"}).encode()).decode()
        assert code(client, "context.list", prefix="pages/", cursor=outside) == "BAD_REQUEST"


def test_delete_cascades_to_messages_offloaded_content_and_session_context(stack):
    dev_sub = sub_of(stack, "dev")
    with stack.connect("dev") as client:
        session_id = ok(client, "session.create", title="doomed")["session"]["sessionId"]
        store(stack).append_exchange(dev_sub, session_id, "req-big", "give me a lot", "z" * 300_000, False)
        store(stack).append_exchange(dev_sub, session_id, "req-2", "stop", "partial", True)
        ok(client, "context.put", path="doomed.txt", content="session-scoped", sessionId=session_id)
        ok(client, "context.put", path="keep/me.txt", content="user-level")

        items = session_items(stack, "dev", session_id)
        assert len(items) == 5 and all(int(i["ttl"]) > 0 for i in items)  # TTL on every item
        assert len({int(i["ttl"]) for i in items}) == 1
        prefix = f"users/{dev_sub}/sessions/{session_id}/"
        assert len(keys(stack, prefix)) == 2  # the offloaded reply and the session file
        got = ok(client, "session.get", sessionId=session_id)
        assert [m.get("cancelled", False) for m in got["messages"]] == [False, False, False, True]
        big = got["messages"][1]
        assert big["content"] is None and http("GET", big["contentUrl"])[1] == b"z" * 300_000

        assert ok(client, "session.delete", sessionId=session_id) == {"deleted": True}
        assert session_items(stack, "dev", session_id) == []
        assert keys(stack, prefix) == set()
        assert code(client, "session.get", sessionId=session_id) == "NOT_FOUND"
        assert code(client, "session.delete", sessionId=session_id) == "NOT_FOUND"
        assert ok(client, "context.get", path="keep/me.txt")["content"] == "user-level"


def test_session_get_pages_messages_to_fit_a_frame(stack):
    dev_sub = sub_of(stack, "dev")
    with stack.connect("dev") as client:
        session_id = ok(client, "session.create", title="long")["session"]["sessionId"]
        for n in range(4):  # 8 messages of 40 KB: they cannot all fit one 128 KiB frame
            store(stack).append_exchange(dev_sub, session_id, f"r{n}", f"{n}" * 40_000, f"{n}" * 40_000, False)
        contents, cursor, pages = [], None, 0
        while True:
            data = ok(client, "session.get", sessionId=session_id, **({"cursor": cursor} if cursor else {}))
            contents += [m["content"] for m in data["messages"]]
            pages += 1
            cursor = data["cursor"]
            if cursor is None:
                break
        assert pages >= 3 and contents == [f"{n}" * 40_000 for n in range(4) for _ in range(2)]
        assert code(client, "session.get", sessionId="not-a-session-id") == "BAD_REQUEST"
        assert code(client, "session.get", sessionId="0" * 32) == "NOT_FOUND"
