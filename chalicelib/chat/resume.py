"""`chat.resume`: a chat's stream, continued on the connection that asks for it.

One conditional write decides who answers, so that no frame is lost, repeated or reordered
whatever the timing:

- The chat is running: `RequestStore.request_resume` records the resume on the chat's record
  (on condition that it is the caller's and still running). The chat's worker, the one sender of
  its frames, follows it within a poll, or when it records the chat's end, and answers on this
  connection itself: the `result`, the frames after `afterSeq` from its memory, then the rest as
  they come (chalicelib/chat/streaming.py). Nothing is posted here.
- The write's condition fails: the chat has ended (the worker recorded the end after keeping its
  frames), or it is not the caller's, or there is none. For an ended chat of the caller's, this
  handler replays it: the `result`, the kept frames after `afterSeq` (chalicelib/chat/replay.py),
  then the final frame from the record. The worker posts nothing more that a resume could need.
"""
from __future__ import annotations

import json
import logging

from chalicelib import protocol
from chalicelib.chat.replay import FrameLog
from chalicelib.chat.requests import RequestStore
from chalicelib.dispatch.contract import ActionContext
from chalicelib.errors import BadRequest, NotFound

logger = logging.getLogger(__name__)

MAX_SEQ = 10**9  # far beyond any chat's frames; past a chat's last frame, afterSeq is BAD_REQUEST anyway


class ResumeActions:
    def __init__(self, *, requests: RequestStore, frames: FrameLog) -> None:
        self._requests = requests
        self._frames = frames

    def resume(self, ctx: ActionContext) -> None:
        """Move a running chat's stream here, or replay an ended one; NOT_FOUND unless it is the caller's."""
        params, connection = ctx.frame.params, ctx.connection
        name = params.string("requestId", required=True)
        if not protocol.is_request_id(name):
            raise BadRequest("'requestId' must be 1-64 characters of [A-Za-z0-9_.:-]")
        after_seq = params.integer("afterSeq", required=True, minimum=-1, maximum=MAX_SEQ)
        request_id = self._requests.resolve(name=name, connection_id=connection.connection_id)
        if self._requests.request_resume(request_id=request_id, user_sub=connection.user_sub,
                                         connection_id=connection.connection_id, endpoint=connection.endpoint,
                                         after_seq=after_seq, resume_id=ctx.frame.id, now=ctx.now):
            logger.info("chat resume handed to its worker", extra={"requestId": request_id, "afterSeq": after_seq})
            return
        self._replay(ctx, request_id, after_seq)

    def _replay(self, ctx: ActionContext, request_id: str, after_seq: int) -> None:
        connection = ctx.connection
        record = self._requests.get(request_id)
        # Another user's chat, a request that is no chat, and no request at all look the same.
        if record is None or record.get("userSub") != connection.user_sub or record.get("kind") != "chat":
            raise NotFound("no such chat")
        expired = NotFound(f"chat {request_id} has ended and its frames are no longer kept")
        replay_until, final = record.get("replayUntil"), record.get("finalFrame")
        if final is None or replay_until is None or "lastSeq" not in record or int(replay_until) <= ctx.now:
            raise expired
        last_seq = int(record["lastSeq"])
        if after_seq > last_seq:
            raise BadRequest(f"'afterSeq' {after_seq} is beyond the chat's last frame ({last_seq})")
        frames = [] if last_seq < 0 else \
            self._frames.load(request_id, connection.user_sub, int(record.get("frameParts") or 0))
        if frames is None or len(frames) != last_seq + 1:
            raise expired
        final_frame = json.loads(final)
        send = ctx.sender.send
        send(connection.connection_id, protocol.resumed(ctx.frame.id, chat_id=request_id,
                                                        status=protocol.chat_status(final_frame), last_seq=last_seq))
        for frame in frames[after_seq + 1:]:
            send(connection.connection_id, frame)
        send(connection.connection_id, final_frame)
        logger.info("chat replayed", extra={"requestId": request_id, "afterSeq": after_seq, "lastSeq": last_seq})
