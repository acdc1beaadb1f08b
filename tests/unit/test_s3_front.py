"""The local stack's check of presigned S3 URLs, against URLs that botocore itself presigns."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from multidict import CIMultiDict

from devserver.s3_front import PresignRefused, verify_presigned

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
    verify_presigned(method, raw_path, CIMultiDict(headers), secrets=SECRETS, now=now or datetime.now(timezone.utc))


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
        check(presign(), now=datetime.now(timezone.utc) + timedelta(seconds=301))
    assert refused.value.code == "AccessDenied"
