"""How the commands print the backend's `error` frames: the wait is said once."""
from __future__ import annotations

import pytest

from client.commands.common import ProtocolError, error_text


@pytest.mark.parametrize("error, printed", [
    # The limits say the wait in their message (chalicelib/limits): not again.
    ({"code": "BUDGET_EXCEEDED", "message": "the hourly token budget cannot cover this request; retry in 1389 s",
      "retryAfter": 1389},
     "BUDGET_EXCEEDED: the hourly token budget cannot cover this request; retry in 1389 s"),
    ({"code": "RATE_LIMITED", "message": "request limit reached for this minute; retry in 7 s", "retryAfter": 7},
     "RATE_LIMITED: request limit reached for this minute; retry in 7 s"),
    # A message without it gets it; a number that is not the wait does not count.
    ({"code": "UPSTREAM_THROTTLED", "message": "the model is busy", "retryAfter": 2},
     "UPSTREAM_THROTTLED: the model is busy (retry after 2 s)"),
    ({"code": "RATE_LIMITED", "message": "limit of 12 s windows", "retryAfter": 2},
     "RATE_LIMITED: limit of 12 s windows (retry after 2 s)"),
    ({"code": "NOT_FOUND", "message": "no such session"}, "NOT_FOUND: no such session"),
    ({"code": "RATE_LIMITED", "message": "now", "retryAfter": 0}, "RATE_LIMITED: now (retry after 0 s)"),
])
def test_the_wait_is_said_once(error, printed):
    assert error_text(error) == printed
    assert str(ProtocolError(error)) == printed
