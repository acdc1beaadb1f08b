"""Per-user rate limits and token budgets that no concurrency can outrun.

- `RateLimiter.admit`: one conditional UpdateItem per admitted action, in fixed
  windows aligned to the minute; a full window raises RateLimited (retryAfter =
  seconds to its end) and is remembered per container until then (`LimitedMemory`).
- `TokenBudget.reserve`: admits a chat AND reserves its worst case (estimated
  input + maxTokens, maxTokens lowered to fit) in the same single UpdateItem.
- `TokenBudget.settle`: one TransactWriteItems replaces the reservation by the
  real usage (hour, day and per-model records), idempotent per request.
- `LimitsSnapshot.to_wire()`: the protocol's `Limits` object.

The calls a chat must make (the chat code owns them; nothing else may skip one):

    budget = services.token_budget
    estimated = converse.input_tokens(request)  # the Converse request: system, history, context, prompt
    reservation = budget.reserve(conn.user_sub, now, groups=conn.groups, request_id=server_request_id,
                                 estimated_input=estimated, max_tokens=requested_max_tokens)
    # raises RateLimited / BudgetExceeded (AppErrors: the dispatch answers with an error frame)
    ack = {..., "limits": reservation.limits.to_wire()}       # call the model with reservation.max_tokens
    # hand reservation.to_dict() to the worker; there: Reservation.from_dict(payload["reservation"])
    served = []                                              # every delta text actually posted
    metadata_usage = None                                    # Bedrock's usage metadata, if it arrived
    try:
        ...stream...
    finally:                                                 # done, error, cancel, disconnect, exception
        if metadata_usage is not None:
            used_in, used_out = metadata_usage["inputTokens"], metadata_usage["outputTokens"]
        else:
            used_in, used_out = fallback_usage(reservation, "".join(served))
        settlement = budget.settle(reservation, used_in, used_out, model_id)
    done = {..., "usage": settlement.usage_wire(), "limits": settlement.limits.to_wire()}

A chat action must be marked `@admission(Admission.SELF)` in chalicelib/actions.py
so the dispatch does not count it a second time.
"""
from __future__ import annotations


from chalicelib.process import kept
from chalicelib.limits.budget import (
    Reservation,
    Settlement,
    TokenBudget,
    fallback_usage,
)
from chalicelib.limits.policy import UserLimits, limits_for
from chalicelib.limits.rate import LimitedMemory, RateLimiter
from chalicelib.limits.snapshot import LimitsSnapshot

__all__ = [
    "LimitedMemory", "LimitsSnapshot", "RateLimiter", "Reservation", "Settlement", "TokenBudget", "UserLimits",
    "fallback_usage", "get_limited_memory", "limits_for",
]


@kept
def get_limited_memory() -> LimitedMemory:
    """The container's memory of users over their limit (shared by all threads)."""
    return LimitedMemory()
