"""Fakes for the one-method boundaries, for tests that do not run the local gateway."""
from __future__ import annotations

from typing import Any

from chalicelib.errors import ConnectionGone


class RecordingSender:
    """Stands in for the Management API: records frames per connection; `gone` ones raise ConnectionGone."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = {}
        self.closed: list[str] = []
        self.gone: set[str] = set()

    def send(self, connection_id: str, frame: dict[str, Any]) -> None:
        if connection_id in self.gone:
            raise ConnectionGone(connection_id)
        self.frames.setdefault(connection_id, []).append(frame)

    def close(self, connection_id: str) -> None:
        self.closed.append(connection_id)
        self.gone.add(connection_id)
