"""A chat's stream frames, kept after it ended so that `chat.resume` can replay them.

While a chat runs, its worker keeps every frame in memory and answers resumes itself
(chalicelib/chat/streaming.py). When it ends, the worker writes them here before it records the
end, so a resume that finds the chat ended finds its frames too: the frames as JSON lines,
zlib-compressed, cut into items of at most PART_BYTES (`frames#<requestId>#<n>`, in the requests
table), each with the owner's sub and a TTL at the end of the replay window (CHAT_REPLAY_SECONDS).
The chat's record names the number of parts; the final frame is in the record itself, written with
the chat's final status in one update (chalicelib/chat/requests.py).

Why here and not one S3 object per chat: the requests table is already written at the chat's end,
a part costs one PutItem (a 1,000-token reply compresses to about 2.2 KB: three write units), and
DynamoDB's TTL removes it with no lifecycle rule; docs/PERFORMANCE.md measures what it adds.
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

from chalicelib import protocol

PART_BYTES = 350 * 1024  # under DynamoDB's 400 KB item limit, with room for the key and attributes


def _part_key(request_id: str, part: int) -> str:
    # '#' never appears in a server id (hex): no request's own key can collide with a part's.
    return f"frames#{request_id}#{part}"


class FrameLog:
    def __init__(self, table: Any) -> None:
        self._table = table

    def keep(self, request_id: str, user_sub: str, frames: Sequence[dict[str, Any]], *, until: int) -> int:
        """Write the chat's stream frames, expiring at `until` (epoch seconds); the number of parts."""
        if not frames:
            return 0
        data = zlib.compress("\n".join(protocol.encode(frame) for frame in frames).encode("utf-8"))
        parts = [data[start:start + PART_BYTES] for start in range(0, len(data), PART_BYTES)]
        for number, part in enumerate(parts):
            self._table.put_item(Item={"requestId": _part_key(request_id, number), "userSub": user_sub,
                                       "frames": part, "ttl": until})
        return len(parts)

    def load(self, request_id: str, user_sub: str, parts: int) -> list[dict[str, Any]] | None:
        """The chat's stream frames in order, or None if a part is missing or not this user's."""
        data = bytearray()
        for number in range(parts):
            item = self._table.get_item(Key={"requestId": _part_key(request_id, number)},
                                        ConsistentRead=True).get("Item")
            if item is None or item.get("userSub") != user_sub:
                return None
            data += bytes(item["frames"])  # boto3 hands a Binary attribute back as a Binary wrapper
        if not data:
            return []
        return [json.loads(line) for line in zlib.decompress(bytes(data)).decode("utf-8").split("\n")]
