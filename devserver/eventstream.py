"""AWS event-stream encoding (application/vnd.amazon.eventstream), as Bedrock streams replies.

A message is: a prelude (total length, headers length, CRC32 of those 8 bytes),
the headers, the payload, and a CRC32 of everything before it. All integers are
big-endian. Only string headers (type 7) are needed here.
"""
from __future__ import annotations

import json
import struct
import zlib
from typing import Any

_STRING = 7


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    encoded_headers = b"".join(_header(name, value) for name, value in headers.items())
    total = 4 + 4 + 4 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + encoded_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
    return struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", _STRING, len(raw_value)) + raw_value


def event(event_type: str, body: dict[str, Any]) -> bytes:
    """An event message, e.g. `contentBlockDelta` with its JSON body."""
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"}, _json(body))


def exception(exception_type: str, message: str) -> bytes:
    """An exception inside the stream (botocore raises it as EventStreamError)."""
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, _json({"message": message}))


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
