"""Opaque paging cursors: base64url of a small JSON object, checked field by field.

A cursor only ever names a position (a sort key, a path) inside the caller's own
partition or prefix; the partition itself always comes from the verified sub.
So a tampered cursor can at worst skip around the caller's own data, and one
that does not decode to exactly the expected fields is BAD_REQUEST.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping

from chalicelib.errors import BadRequest

MAX_CURSOR_CHARS = 2048


def encode(position: Mapping[str, str]) -> str:
    raw = json.dumps(dict(position), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode(cursor: str, fields: Mapping[str, re.Pattern]) -> dict[str, str]:
    """The position a cursor names, every field matching its pattern, or BAD_REQUEST."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise BadRequest("'cursor' is not valid")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest("'cursor' is not valid") from None
    if not isinstance(position, dict) or set(position) != set(fields):
        raise BadRequest("'cursor' is not valid")
    for name, pattern in fields.items():
        value = position[name]
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise BadRequest("'cursor' is not valid")
    return position
