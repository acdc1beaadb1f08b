"""Presigned URLs of the context bucket: the regional host in every region, downloads as attachments
of a type no browser renders, and lives as short as a client needs (issue 13, section 6). The local
S3 front's part (it serves them as S3 does) is in tests/functional/test_s3_front.py."""
from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from chalicelib.aws import clients
from chalicelib.aws.objects import ObjectStore, attachment
from tests.conftest import reset_app_caches

BUCKET = "llm-ide-prod-context-123456789012"


@pytest.fixture
def aws_region(monkeypatch):
    """The app's S3 client as a Lambda function in `region` builds it: no endpoint variable set."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("COGNITO_APP_CLIENT_IDS", "c")

    def use(region: str) -> ObjectStore:
        monkeypatch.setenv("AWS_REGION", region)
        monkeypatch.setenv("COGNITO_USER_POOL_ID", f"{region}_Pool1")
        reset_app_caches()
        return ObjectStore(clients.client("s3"), bucket=BUCKET, kms_key_id=None, get_seconds=60, put_seconds=60)

    yield use
    reset_app_caches()


# eu-west-1 is an ordinary region, ap-east-1 and me-south-1 are opt-in ones (no global endpoint).
@pytest.mark.parametrize("region", ["eu-west-1", "ap-east-1", "me-south-1", "us-east-1"])
def test_presigned_urls_name_the_buckets_regional_host(aws_region, region):
    store = aws_region(region)
    put_url, _ = store.presign_put("users/u/context/a.txt", size=3, content_type="text/plain", tagging=None)
    for url in (put_url, store.presign_get("users/u/context/a.txt", filename="a.txt")):
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname) == ("https", f"{BUCKET}.s3.{region}.amazonaws.com")
        assert parts.path == "/users/u/context/a.txt"
        credential = parse_qs(parts.query)["X-Amz-Credential"][0]
        assert credential.split("/")[2:4] == [region, "s3"]  # signed for the bucket's own region


def test_a_presigned_get_is_a_download_of_a_type_no_browser_renders(aws_region):
    store = aws_region("eu-west-1")
    query = parse_qs(urlsplit(store.presign_get("users/u/context/site/index.html", filename="index.html")).query)
    assert query["response-content-type"] == ["application/octet-stream"]
    assert query["response-content-disposition"] == [
        "attachment; filename=\"index.html\"; filename*=UTF-8''index.html"]
    assert query["X-Amz-Expires"] == ["60"]
    # A message's content (no name) is a download as well.
    assert parse_qs(urlsplit(store.presign_get("users/u/sessions/s/messages/m")).query)[
        "response-content-disposition"] == ["attachment"]


@pytest.mark.parametrize("name, fallback", [
    ("notes.txt", "notes.txt"),
    ('evil".html\r\nSet-Cookie: x=1', "evil_.html__Set-Cookie__x_1"),
    ("café résumé.pdf", "caf__r_sum_.pdf"),
])
def test_the_attachments_file_name_cannot_break_out_of_the_header(name, fallback):
    value = attachment(name)
    assert value.startswith(f'attachment; filename="{fallback}"; filename*=UTF-8\'\'')
    assert unquote(value.split("''", 1)[1]) == name
    assert all(32 <= ord(c) < 127 for c in value) and '"' not in value.split("filename*=")[1]


def test_each_url_lives_as_long_as_its_setting(aws_region, monkeypatch):
    monkeypatch.setenv("PRESIGNED_GET_SECONDS", "30")
    monkeypatch.setenv("PRESIGNED_PUT_SECONDS", "90")
    aws_region("eu-west-1")
    from chalicelib.config import get_settings
    from chalicelib.root import Root

    objects = Root(get_settings()).objects
    put_url, _ = objects.presign_put("users/u/context/a", size=1, content_type="text/plain", tagging=None)
    assert parse_qs(urlsplit(put_url).query)["X-Amz-Expires"] == ["90"]
    assert parse_qs(urlsplit(objects.presign_get("users/u/context/a")).query)["X-Amz-Expires"] == ["30"]
