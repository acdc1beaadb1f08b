"""`chat.upload`: a chat.send's body larger than a frame, put to S3 for exactly one chat.

`chat.upload` answers a presigned PUT bound to the body's size (CHAT_UPLOAD_MAX_BYTES at
most) and to `application/json`; the key is `users/<sub>/<uploadId>` in the upload bucket
(CHAT_UPLOAD_BUCKET, infra/resources.py), whose lifecycle rule deletes every object a day
after it was written. `chat.send` with `uploadId`:

1. the handler reads the body (NOT_FOUND: never uploaded, another user's, used and deleted,
   or older than a day), checks that it is a JSON object and merges it with the frame's
   parameters (one given in both: BAD_REQUEST), then checks the whole request like a frame's
   (chalicelib/chat/request.py): everything is answered before the `ack`;
2. admitting the chat marks the upload used, in the same write as the chat's record
   (RequestStore.create), so a second chat.send with it is NOT_FOUND;
3. the worker's event carries only a reference (the id, the ETag the handler checked, the
   frame's own content parameters): the worker reads the body itself (If-Match that ETag, so a
   body written again in between is refused, not run unchecked), then deletes it.

Presigned URLs are credentials: they go to their user and are never logged.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib import protocol
from chalicelib.aws.objects import ObjectStore, user_root
from chalicelib.chat.request import CONTENT_FIELDS, UploadRef
from chalicelib.dispatch.contract import ActionContext
from chalicelib.errors import BadRequest, NotFound, PayloadTooLarge
from chalicelib.times import iso

UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
# How long an upload may serve: the bucket's lifecycle rule (infra/resources.py) deletes it after
# a day, at the earliest; the app refuses it from then on, whenever S3 gets round to it.
UPLOAD_LIFETIME_SECONDS = 86400
CONTENT_TYPE = "application/json"
_FRAME_ONLY = ("action", "id", "uploadId")


@dataclass(frozen=True)
class OpenedUpload:
    params: dict[str, Any]  # the frame's parameters and the body's together
    body_fields: frozenset[str]  # the names that came in the body
    ref: UploadRef  # what the worker's event carries


class UploadStore:
    def __init__(self, objects: ObjectStore, *, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self._objects = objects
        self.max_bytes = max_bytes  # CHAT_UPLOAD_MAX_BYTES
        self._clock = clock

    def key(self, user_sub: str, upload_id: str) -> str:
        return f"{user_root(user_sub)}{upload_id}"

    def presign(self, user_sub: str, upload_id: str, size: int) -> dict[str, Any]:
        """`chat.upload`'s result: a PUT of exactly `size` bytes of JSON, to start within PRESIGNED_PUT_SECONDS."""
        if size > self.max_bytes:
            raise PayloadTooLarge(f"a request body is limited to {self.max_bytes} bytes")
        url, headers = self._objects.presign_put(self.key(user_sub, upload_id), size=size, content_type=CONTENT_TYPE,
                                                 tagging=None)
        return {"uploadId": upload_id, "url": url, "headers": headers,
                "expiresAt": iso(self._clock() + self._objects.put_seconds)}

    def open(self, user_sub: str, frame_params: Mapping[str, Any]) -> OpenedUpload:
        """The handler's read of the frame's `uploadId`: the merged parameters, or the error that refuses it."""
        upload_id = frame_params["uploadId"]
        if not isinstance(upload_id, str) or not UPLOAD_ID.fullmatch(upload_id):
            raise BadRequest("'uploadId' must be an id from chat.upload")
        try:
            stored = self._objects.read(self.key(user_sub, upload_id), max_bytes=self.max_bytes)
        except NotFound:
            raise NotFound("no such upload") from None
        if stored.last_modified.timestamp() + UPLOAD_LIFETIME_SECONDS <= self._clock():
            raise NotFound("no such upload (it expired)")
        body = _body(stored.data)
        both = sorted(set(body) & set(frame_params))
        if both:
            raise BadRequest(f"'{both[0]}' is both in the frame and in the upload")
        frame_content = {name: frame_params[name] for name in CONTENT_FIELDS if name in frame_params}
        params = {name: value for name, value in frame_params.items() if name != "uploadId"}
        return OpenedUpload(params={**params, **body}, body_fields=frozenset(body),
                            ref=UploadRef(upload_id=upload_id, etag=stored.etag, frame_content=frame_content))

    def load(self, user_sub: str, ref: UploadRef) -> dict[str, Any]:
        """The worker's read: the content parameters of the body the handler checked (BAD_REQUEST if it changed)."""
        stored = self._objects.read(self.key(user_sub, ref.upload_id), max_bytes=self.max_bytes, if_match=ref.etag)
        body = _body(stored.data)
        return {**ref.frame_content, **{name: body[name] for name in CONTENT_FIELDS if name in body}}

    def discard(self, user_sub: str, upload_id: str) -> None:
        self._objects.delete(self.key(user_sub, upload_id))


def _body(data: bytes) -> dict[str, Any]:
    body, problem = protocol.parse_json(data)
    if problem is not None:  # malformed, nested too deeply, or a lone surrogate: said of the upload
        raise BadRequest(problem.message.replace("a frame", "the upload").replace("the frame", "the upload"))
    if not isinstance(body, dict):
        raise BadRequest("the upload is not a JSON object of chat.send's parameters")
    misplaced = [name for name in _FRAME_ONLY if name in body]
    if misplaced:
        raise BadRequest(f"the upload holds '{misplaced[0]}', which only a frame may hold")
    return body


class UploadActions:
    """`chat.upload`: where to put a request body too large for a frame."""

    def __init__(self, uploads: UploadStore, *, new_id: Callable[[], str]) -> None:
        self._uploads = uploads
        self._new_id = new_id

    def upload(self, ctx: ActionContext) -> dict[str, Any]:
        # No upper bound here: past CHAT_UPLOAD_MAX_BYTES, however far, presign answers PAYLOAD_TOO_LARGE.
        size = ctx.frame.params.integer("size", required=True, minimum=1, maximum=None)
        answer = self._uploads.presign(ctx.connection.user_sub, self._new_id(), size)
        return protocol.result(ctx.frame.id, answer)
