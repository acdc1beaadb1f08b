"""Per-user rate limits, token budgets and money budgets (and pooled group budgets) that no concurrency can outrun.

- `RateLimiter.admit`: one conditional UpdateItem per admitted action, in fixed
  windows aligned to the minute; a full window raises RateLimited (retryAfter =
  seconds to its end) and is remembered per container until then (`LimitedMemory`).
- `TokenBudget.reserve`: admits a chat AND reserves its worst case (the input the model
  may be charged for + maxTokens, maxTokens lowered to fit) against every budget that
  applies, in one conditional write: an UpdateItem of the hour record when only the token
  budget applies, one TransactWriteItems (after one BatchGetItem) when money budgets do too.
- `Reservation.charge` (reservation.py): what the model reported, as charged (never more than
  reserved), priced in micro-dollars (pricing.py).
- `TokenBudget.settle`: one TransactWriteItems replaces the reservation by the charge
  (hour, day, model, month and group records), idempotent per request.
- `LimitsSnapshot.to_wire()`: the protocol's `Limits` object, with `cost` where configured.
- `UsageReport` (usage.py) and `UsageActions` (actions.py): `usage.get` and `GET /usage`.

How a chat uses them (chalicelib/chat): `ChatActions.send` counts the input (Bedrock's
CountTokens, or an upper bound) and reserves before the `ack` (the `ack` carries
`reservation.limits`) and hands `Reservation.to_dict()` to the worker in its job;
`ChatWorker._finish` settles, whatever the chat's end, to the model's usage metadata or,
when the stream broke before it, to `fallback_usage` (the input the model read once Bedrock
accepted the request, and the bound of the text served), and the `done` frame carries the
charge and the settlement's limits. A chat that never reached the model is settled to zero
at once (`TokenBudget.release`). `chat.send` is Admission.SELF in the action table, so the
dispatch does not count it a second time.
"""
from __future__ import annotations

from chalicelib.limits.budget import Pricing, Settlement, TokenBudget, fallback_usage
from chalicelib.limits.policy import UserLimits, limits_for
from chalicelib.limits.rate import LimitedMemory, RateLimiter
from chalicelib.limits.reservation import Charge, Reservation
from chalicelib.limits.snapshot import LimitsSnapshot
from chalicelib.process import kept

__all__ = [
    "Charge", "LimitedMemory", "LimitsSnapshot", "Pricing", "RateLimiter", "Reservation", "Settlement", "TokenBudget",
    "UserLimits", "fallback_usage", "get_limited_memory", "limits_for",
]


@kept
def get_limited_memory() -> LimitedMemory:
    """The container's memory of users over their limit (shared by all threads)."""
    return LimitedMemory()
