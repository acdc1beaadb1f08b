"""The local stack's check of presigned S3 URLs, against URLs that botocore itself presigns."""
from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from multidict import CIMultiDict

from chalicelib.aws.objects import ObjectStore
from devserver.aws import CREDENTIALS
from devserver.s3_front import PresignRefused, S3Front, verify_presigned
from tests.servers import serve

SECRETS = {"local": "local"}


def presign(**params):
    s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:4567", region_name="us-east-1",
                      aws_access_key_id="local", aws_secret_access_key="local",
                      config=Config(signature_version="s3v4"))
    url = s3.generate_presigned_url("put_object", ExpiresIn=300, Params={
        "Bucket": "b", "Key": "users/u/context/dir/my file é.txt", "ContentLength": 10,
        "ContentType": "text/plain", "ServerSideEncryption": "AES256", **params})
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


HEADERS = {"Host": "127.0.0.1:4567", "Content-Length": "10", "Content-Type": "text/plain",
           "x-amz-server-side-encryption": "AES256"}


def check(raw_path, headers=HEADERS, method="PUT", now=None):
    verify_presigned(method, raw_path, CIMultiDict(headers), secrets=SECRETS, now=now or datetime.now(UTC))


def test_a_url_botocore_presigned_verifies_with_the_headers_it_binds():
    check(presign())


@pytest.mark.parametrize("change", [
    {"Content-Length": "11"}, {"Content-Type": "text/html"}, {"x-amz-server-side-encryption": "aws:kms"},
    {"Host": "evil.example"},
])
def test_a_different_signed_header_is_refused(change):
    with pytest.raises(PresignRefused) as refused:
        check(presign(), {**HEADERS, **change})
    assert refused.value.code == "SignatureDoesNotMatch"


def test_a_missing_signed_header_method_or_other_key_is_refused():
    raw = presign()
    with pytest.raises(PresignRefused):
        check(raw, {k: v for k, v in HEADERS.items() if k != "Content-Type"})
    with pytest.raises(PresignRefused):
        check(raw, method="GET")
    with pytest.raises(PresignRefused):
        check(raw.replace("my%20file", "your%20file"))


def test_an_expired_url_is_refused():
    with pytest.raises(PresignRefused) as refused:
        check(presign(), now=datetime.now(UTC) + timedelta(seconds=301))
    assert refused.value.code == "AccessDenied"


def test_the_apps_sse_kms_presigned_put_verifies_with_the_headers_it_returns():
    """A deployed stage's grant (SSE-KMS with the context key) passes the front; another key does not."""
    from chalicelib.aws.objects import SESSION_TAGGING, ObjectStore

    key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:4567", region_name="us-east-1",
                      aws_access_key_id="local", aws_secret_access_key="local",
                      config=Config(signature_version="s3v4"))
    store = ObjectStore(s3, bucket="b", kms_key_id=key_arn)
    url, headers = store.presign_put("users/u/sessions/s/context/a.txt", size=10, content_type="text/plain",
                                     tagging=SESSION_TAGGING)
    assert headers["x-amz-server-side-encryption"] == "aws:kms"
    assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == key_arn
    parts = urlsplit(url)
    raw, sent = f"{parts.path}?{parts.query}", {"Host": "127.0.0.1:4567", **headers}
    check(raw, sent)
    for change in ({"x-amz-server-side-encryption": "AES256"},
                   {"x-amz-server-side-encryption-aws-kms-key-id": key_arn.replace("1234abcd", "5678abcd")},
                   {"x-amz-tagging": "other=tag"}):
        with pytest.raises(PresignRefused):
            check(raw, {**sent, **change})
    with pytest.raises(PresignRefused):  # leaving the key id out falls back to no key: refused too
        check(raw, {k: v for k, v in sent.items() if k != "x-amz-server-side-encryption-aws-kms-key-id"})


def test_an_sse_kms_upload_passes_through_the_front_to_moto(moto_url, provisioned, boto):
    """The front forwards the KMS headers the grant binds; moto stores the object under the key."""
    import urllib.error
    import urllib.request
    import uuid

    from chalicelib.aws.objects import ObjectStore
    from devserver.aws import CREDENTIALS
    from devserver.s3_front import S3Front
    from tests.servers import serve

    bucket = provisioned.names["CONTEXT_BUCKET"]
    key_arn = boto("kms").create_key()["KeyMetadata"]["Arn"]
    key = f"users/{uuid.uuid4()}/context/kms.txt"
    front = S3Front(moto_url, secrets={CREDENTIALS["AWS_ACCESS_KEY_ID"]: CREDENTIALS["AWS_SECRET_ACCESS_KEY"]})
    with serve(front.make_app()) as front_url:
        store = ObjectStore(boto3.client("s3", endpoint_url=front_url, region_name="us-east-1",
                                         aws_access_key_id="local", aws_secret_access_key="local",
                                         config=Config(signature_version="s3v4")),
                            bucket=bucket, kms_key_id=key_arn)
        url, headers = store.presign_put(key, size=3, content_type="text/plain", tagging=None)
        forged = {**headers, "x-amz-server-side-encryption": "AES256"}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, data=b"abc", method="PUT", headers=forged), timeout=10)
        assert refused.value.code == 403
        with urllib.request.urlopen(urllib.request.Request(url, data=b"abc", method="PUT", headers=headers),
                                    timeout=10) as response:
            assert response.status == 200
    head = boto("s3").head_object(Bucket=bucket, Key=key)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"], head["ContentLength"]) == ("aws:kms", key_arn, 3)


def test_a_presigned_get_is_served_as_the_download_it_names_and_an_altered_type_is_refused(moto_url, provisioned,
                                                                                           boto):
    """As S3 does: the response headers the URL names, bound by its signature; an expired one is refused."""
    bucket = provisioned.names["CONTEXT_BUCKET"]
    key = f"users/{uuid.uuid4()}/context/site/page.html"
    page = b"<html><script>alert(document.domain)</script></html>"
    boto("s3").put_object(Bucket=bucket, Key=key, Body=page, ContentType="text/html")
    front = S3Front(moto_url, secrets={CREDENTIALS["AWS_ACCESS_KEY_ID"]: CREDENTIALS["AWS_SECRET_ACCESS_KEY"]})
    with serve(front.make_app()) as front_url:
        s3 = boto3.client("s3", endpoint_url=front_url, region_name="us-east-1", aws_access_key_id="local",
                          aws_secret_access_key="local", config=Config(signature_version="s3v4"))
        url = ObjectStore(s3, bucket=bucket, kms_key_id=None, get_seconds=60).presign_get(key, filename="page.html")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == page
            assert response.headers["Content-Type"] == "application/octet-stream"
            assert response.headers["Content-Disposition"] == (
                "attachment; filename=\"page.html\"; filename*=UTF-8''page.html")
        rendered = url.replace("application%2Foctet-stream", "text%2Fhtml")
        assert rendered != url
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rendered, timeout=10)
        assert refused.value.code == 403 and b"SignatureDoesNotMatch" in refused.value.read()
        anonymous = f"{front_url}/{bucket}/{key}?response-content-type=text%2Fhtml"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(anonymous, timeout=10)
        assert refused.value.code == 400 and b"InvalidRequest" in refused.value.read()
        parts = urlsplit(url)
        with pytest.raises(PresignRefused) as expired:
            verify_presigned("GET", f"{parts.path}?{parts.query}", CIMultiDict({"Host": parts.netloc}),
                             secrets={"local": "local"}, now=datetime.now(UTC) + timedelta(seconds=61))
        assert expired.value.code == "AccessDenied"
