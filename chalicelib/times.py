"""The one way the app writes a time: ISO 8601 UTC with milliseconds and a `Z`.

Every stored time (DynamoDB attributes that sort as text) and every time on the wire
(`createdAt`, `updatedAt`, `expiresAt`) uses it, so they compare as strings.
"""
from __future__ import annotations

from datetime import UTC, datetime


def iso(epoch_seconds: float) -> str:
    """`2026-11-30T01:02:03.456Z` for epoch seconds."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
