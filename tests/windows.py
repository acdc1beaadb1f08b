"""Limits count in fixed clock windows: a test that asserts counts waits rather than straddle two."""
from __future__ import annotations

import time


def fresh_window(length: int, needed: float) -> None:
    """Return when the current `length`-second window has at least `needed` seconds left."""
    left = length - time.time() % length
    if left < needed:
        time.sleep(left + 0.05)


def fresh_minute(needed: float = 8.0) -> None:
    fresh_window(60, needed)


def fresh_hour(needed: float) -> None:
    fresh_window(3600, needed)
