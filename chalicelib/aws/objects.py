"""The context bucket: every user's objects under `users/<sub>/`, always encrypted.

Layout (infra/resources.py describes the bucket):
  users/<sub>/context/<path>                       context files of the user
  users/<sub>/sessions/<id>/context/<path>         context files of one session
  users/<sub>/sessions/<id>/messages/<message id>  message content too large for DynamoDB

Objects that belong to a session carry the session expiry tag, so the bucket's
lifecycle rule removes them once the session has been idle past its TTL;
`refresh` re-writes them in place while the session is active. A user's own
context files carry the context-file tag: they expire CONTEXT_FILE_TTL_DAYS after
they were last written.

Presigned URLs are credentials: they are returned to their user and never logged. They
live only as long as a client needs to start using them (PRESIGNED_GET_SECONDS,
PRESIGNED_PUT_SECONDS), and a presigned GET always answers as a download
(`Content-Disposition: attachment`) of a type no browser renders
(`application/octet-stream`), whatever type the object was uploaded with: an uploader
could otherwise have a `text/html` file rendered from the bucket's own domain.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.aws.errors import error_code
from chalicelib.errors import BadRequest, Internal, NotFound, PayloadTooLarge

logger = logging.getLogger(__name__)

# Must match infra/resources.py SESSION_EXPIRY_RULE and CONTEXT_FILE_EXPIRY_RULE (a unit test
# checks that they agree): the bucket's lifecycle rules expire objects by these tags.
SESSION_EXPIRY_TAG = ("llm-ide-expiry", "session")
CONTEXT_FILE_EXPIRY_TAG = ("llm-ide-expiry", "context-file")
DOWNLOAD_CONTENT_TYPE = "application/octet-stream"  # what every presigned GET answers with
_SUB = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}


def user_root(user_sub: str) -> str:
    """The key prefix of everything a user owns; the sub comes from the verified token."""
    if not _SUB.match(user_sub):
        raise Internal()  # a verified Cognito sub always matches; anything else is a bug
    return f"users/{user_sub}/"


def session_root(user_sub: str, session_id: str) -> str:
    return f"{user_root(user_sub)}sessions/{session_id}/"


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    last_modified: Any  # datetime from botocore


@dataclass(frozen=True)
class StoredBody:
    data: bytes
    etag: str  # as S3 quotes it
    last_modified: Any  # datetime from botocore


class ObjectStore:
    def __init__(self, s3: Any, *, bucket: str, kms_key_id: str | None, get_seconds: int = 60,
                 put_seconds: int = 60) -> None:
        self._s3 = s3
        self.bucket = bucket
        self._kms_key_id = kms_key_id
        self.get_seconds = get_seconds  # how long a presigned GET is valid
        self.put_seconds = put_seconds  # how long a presigned PUT is valid

    def encryption(self) -> dict[str, str]:
        """SSE parameters for every write: SSE-KMS with the configured key, else SSE-S3."""
        if self._kms_key_id:
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self._kms_key_id}
        return {"ServerSideEncryption": "AES256"}

    def put(self, key: str, body: bytes, *, content_type: str, tagging: str | None) -> str:
        extra = {"Tagging": tagging} if tagging else {}
        response = self._call("put_object", Bucket=self.bucket, Key=key, Body=body, ContentType=content_type,
                              **self.encryption(), **extra)
        return response.get("ETag", "").strip('"')

    def get(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and content type; NOT_FOUND if there is none."""
        response = self._call("get_object", Bucket=self.bucket, Key=key)
        try:
            return response["Body"].read(), response.get("ContentType", "")
        finally:
            response["Body"].close()

    def read(self, key: str, *, max_bytes: int, if_match: str | None = None) -> StoredBody:
        """The object's bytes, ETag and time of writing: NOT_FOUND if there is none, PAYLOAD_TOO_LARGE
        (before reading) past `max_bytes`, BAD_REQUEST when `if_match` no longer names its content."""
        extra = {"IfMatch": if_match} if if_match is not None else {}
        response = self._call("get_object", Bucket=self.bucket, Key=key, **extra)
        try:
            if response["ContentLength"] > max_bytes:
                raise PayloadTooLarge(f"the object is {response['ContentLength']} bytes; the limit is {max_bytes}")
            return StoredBody(data=response["Body"].read(), etag=response.get("ETag", ""),
                              last_modified=response["LastModified"])
        finally:
            response["Body"].close()

    def head(self, key: str) -> StoredObject:
        response = self._call("head_object", Bucket=self.bucket, Key=key)
        return StoredObject(key=key, size=response["ContentLength"], last_modified=response["LastModified"])

    def delete(self, key: str) -> None:
        self._call("delete_object", Bucket=self.bucket, Key=key)

    def list(self, prefix: str, *, start_after: str | None = None,
             max_keys: int = 1000) -> tuple[list[StoredObject], bool]:
        """One page of objects under a prefix, in key order, and whether more follow."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if start_after:
            kwargs["StartAfter"] = start_after
        response = self._call("list_objects_v2", **kwargs)
        items = [StoredObject(key=o["Key"], size=o["Size"], last_modified=o["LastModified"])
                 for o in response.get("Contents", ())]
        return items, bool(response.get("IsTruncated"))

    def walk(self, prefix: str) -> Iterator[StoredObject]:
        start_after = None
        while True:
            items, more = self.list(prefix, start_after=start_after)
            yield from items
            if not more or not items:
                return
            start_after = items[-1].key

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under a prefix (1000 per call); returns how many."""
        deleted = 0
        while True:
            items, _ = self.list(prefix)
            if not items:
                return deleted
            deleted += self.delete_keys([o.key for o in items])

    def delete_keys(self, keys: Sequence[str]) -> int:
        """Delete the objects (DeleteObjects, 1000 keys a call; a key with no object counts as deleted, as S3
        answers); returns how many keys. INTERNAL if S3 could not delete one."""
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            response = self._call("delete_objects", Bucket=self.bucket,
                                  Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
            if response.get("Errors"):
                logger.error("objects not deleted", extra={"count": len(response["Errors"]),
                                                           "code": response["Errors"][0].get("Code")})
                raise Internal()
        return len(keys)

    def refresh(self, prefix: str) -> int:
        """Re-write every object under a prefix in place, restarting its lifecycle clock; returns how many.
        One deleted between the listing and its copy is skipped: it needs no refreshing (and a copy from a
        missing source writes nothing, so this never brings an object back)."""
        count = 0
        for item in self.walk(prefix):
            try:
                self._call("copy_object", Bucket=self.bucket, Key=item.key,
                           CopySource={"Bucket": self.bucket, "Key": item.key},
                           MetadataDirective="COPY", TaggingDirective="COPY", **self.encryption())
            except NotFound:
                continue
            count += 1
        return count

    def presign_put(self, key: str, *, size: int, content_type: str,
                    tagging: str | None) -> tuple[str, dict[str, str]]:
        """A SigV4 presigned PUT binding length, type, encryption and tags; and the headers to send.

        Valid `put_seconds`; S3 refuses (403) a different length, type, encryption or tag set.
        """
        headers = {"Content-Length": str(size), "Content-Type": content_type}
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ContentLength": size,
                                  "ContentType": content_type, **self.encryption()}
        headers["x-amz-server-side-encryption"] = params["ServerSideEncryption"]
        if "SSEKMSKeyId" in params:
            headers["x-amz-server-side-encryption-aws-kms-key-id"] = params["SSEKMSKeyId"]
        if tagging:
            params["Tagging"] = headers["x-amz-tagging"] = tagging
        url = self._s3.generate_presigned_url("put_object", Params=params, ExpiresIn=self.put_seconds)
        return url, headers

    def presign_get(self, key: str, *, filename: str | None = None) -> str:
        """A SigV4 presigned GET, valid `get_seconds`, answered as a download of `filename`.

        The response's type and disposition are bound into the signature
        (`response-content-type`, `response-content-disposition`): a link cannot be
        altered to render the object in a browser.
        """
        return self._s3.generate_presigned_url("get_object", Params={
            "Bucket": self.bucket, "Key": key, "ResponseContentType": DOWNLOAD_CONTENT_TYPE,
            "ResponseContentDisposition": attachment(filename)}, ExpiresIn=self.get_seconds)

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._s3, operation)(**kwargs)
        except ClientError as exc:
            code = error_code(exc)
            if code in _NOT_FOUND_CODES:
                raise NotFound("not found") from None
            if code in ("InvalidArgument", "KeyTooLongError"):
                raise BadRequest("the request was refused by the store") from None
            if code in ("PreconditionFailed", "412"):  # If-Match: the object was written again since
                raise BadRequest("the object changed since it was checked") from None
            logger.error("S3 call failed", extra={"operation": operation, "code": code})
            raise Internal() from None
        except BotoCoreError as exc:
            logger.error("S3 call failed", extra={"operation": operation, "error": type(exc).__name__})
            raise Internal() from None


def tagging(tag: tuple[str, str]) -> str:
    """A tag as S3's `Tagging` parameter and `x-amz-tagging` header want it."""
    key, value = tag
    return f"{key}={value}"


SESSION_TAGGING = tagging(SESSION_EXPIRY_TAG)
CONTEXT_FILE_TAGGING = tagging(CONTEXT_FILE_EXPIRY_TAG)
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def attachment(filename: str | None) -> str:
    """A `Content-Disposition` for a download: `attachment`, with the file's name when given.

    RFC 6266: an ASCII `filename` (anything else replaced by `_`) for old clients and the
    exact name, percent-encoded, as `filename*`; so no quote, CR or LF reaches the header.
    """
    if not filename:
        return "attachment"
    fallback = _UNSAFE_FILENAME.sub("_", filename)[:200] or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
