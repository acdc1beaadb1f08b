"""A user's own context files expire (issue 13, section 6): tagged for the bucket's rule, their
`expiryDate` reported as S3's rule computes it; a session's files expire with the session."""
from __future__ import annotations

import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.aws import objects
from chalicelib.config import get_settings
from chalicelib.root import Root


@pytest.fixture
def services(app_env):
    return Root(get_settings())


def expected_expiry(last_modified: datetime, days: int) -> str:
    """S3: the object's creation plus the rule's days, rounded up to the next midnight UTC."""
    moment = last_modified.astimezone(UTC) + timedelta(days=days)
    midnight = datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)
    return midnight.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def tags(boto, bucket, key):
    return boto("s3").get_object_tagging(Bucket=bucket, Key=key)["TagSet"]


def test_a_users_own_file_is_tagged_to_expire_and_says_when(services, boto, app_env):
    sub, bucket = str(uuid.uuid4()), app_env.names["CONTEXT_BUCKET"]
    days = get_settings().context_file_ttl_days
    put = services.context.put(sub, "notes/todo.md", "- ship it", session_id=None)
    key = f"users/{sub}/context/notes/todo.md"
    assert tags(boto, bucket, key) == [{"Key": objects.CONTEXT_FILE_EXPIRY_TAG[0],
                                        "Value": objects.CONTEXT_FILE_EXPIRY_TAG[1]}]
    written = boto("s3").head_object(Bucket=bucket, Key=key)["LastModified"]
    assert put["expiryDate"] == expected_expiry(written, days)
    (item,) = services.context.page(sub, "notes/", session_id=None, cursor=None, limit=10,
                                    budget_bytes=10_000)[0]
    assert item["expiryDate"] == expected_expiry(written, days)
    assert services.context.get(sub, "notes/todo.md", session_id=None)["expiryDate"] == item["expiryDate"]

    grant = services.context.upload_url(sub, "big.bin", 3, session_id=None, content_type=None)
    assert grant["headers"]["x-amz-tagging"] == "llm-ide-expiry=context-file"
    with urllib.request.urlopen(urllib.request.Request(grant["url"], data=b"abc", method="PUT",
                                                       headers=grant["headers"]), timeout=10):
        pass
    assert tags(boto, bucket, f"users/{sub}/context/big.bin") == [
        {"Key": "llm-ide-expiry", "Value": "context-file"}]


def test_a_sessions_file_expires_with_the_session_and_has_no_date_of_its_own(services, boto, app_env):
    sub, bucket = str(uuid.uuid4()), app_env.names["CONTEXT_BUCKET"]
    session = services.sessions.create(sub, title="s")
    put = services.context.put(sub, "spec.md", "# spec", session_id=session.session_id)
    assert "expiryDate" not in put
    key = f"{objects.session_root(sub, session.session_id)}context/spec.md"
    assert tags(boto, bucket, key) == [{"Key": "llm-ide-expiry", "Value": "session"}]
    assert "expiryDate" not in services.context.get(sub, "spec.md", session_id=session.session_id)
