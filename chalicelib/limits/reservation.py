"""A chat's reservation and what it is finally charged: plain data and pure arithmetic, no I/O.

The reservation holds the chat's worst case: `input_tokens` (Bedrock's count of the input, or
an upper bound of it: chalicelib/chat/input_bound.py) plus `max_tokens` of output in the hour's
token budget, and the same worst case in money (every input token at the highest price it can
be charged, the output at the output price) in each money budget that applies. `charge` turns
what the model reported into what the user is charged, never more than was reserved: input
beyond `input_tokens` and output beyond `max_tokens` are cut off and returned as `uncovered_*`,
which the worker logs and counts (metric `UncoveredTokens`); the records keep the charge.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.limits.pricing import Rates, budget_tokens, micros_to_usd
from chalicelib.limits.snapshot import LimitsSnapshot


@dataclass(frozen=True)
class Reservation:
    """What one chat holds; serialisable, so the worker that settles can receive it."""

    user_sub: str
    request_id: str
    hour_start: int  # the window charged (its hour, day and month), at reservation and at settlement
    input_tokens: int  # the input the model may be charged for: Bedrock's count, or an upper bound of it
    max_tokens: int  # what the model may generate: the request's, or lowered to fit
    limits: LimitsSnapshot  # as of admission: what the `ack` frame carries
    reserved_tokens: int | None = None  # held in the hour's token counter (None: input_tokens + max_tokens)
    rates: Rates | None = None  # the model's prices; None: it has none (no cost is recorded)
    cost_micros: int = 0  # held in the user's month record and in each pool (0: no money budget applies)
    pools: tuple[str, ...] = ()  # the groups whose pooled budget holds cost_micros too
    groups: tuple[str, ...] = ()  # the groups the chat's usage is recorded for (LIMITS_BY_GROUP's)

    @property
    def reserved(self) -> int:
        return self.reserved_tokens if self.reserved_tokens is not None else self.input_tokens + self.max_tokens

    def charge(self, input_tokens: int, output_tokens: int, *, cache_read: int = 0, cache_write: int = 0) -> Charge:
        """What to charge for what the model reported (Bedrock's counts: `input_tokens` neither read from nor
        written to the prompt cache). Never more input than `self.input_tokens` nor more output than
        `self.max_tokens`: the rest is uncovered (cut from cache reads first, then cache writes, then plain input)."""
        counts = [max(0, int(value)) for value in (input_tokens, cache_write, cache_read)]
        room, charged = self.input_tokens, []
        for count in counts:
            charged.append(min(count, room))
            room -= charged[-1]
        plain, written, read = charged
        output = max(0, int(output_tokens))
        kept_output = min(output, self.max_tokens)
        cost = None if self.rates is None else self.rates.cost_micros(
            input_tokens=plain, output_tokens=kept_output, cache_read=read, cache_write=written)
        return Charge(input_tokens=plain, output_tokens=kept_output, cache_read_input_tokens=read,
                      cache_write_input_tokens=written, cost_micros=cost,
                      budget_tokens=budget_tokens(self.rates, input_tokens=plain, output_tokens=kept_output,
                                                  cache_read=read, cache_write=written),
                      uncovered_input_tokens=sum(counts) - (plain + written + read),
                      uncovered_output_tokens=output - kept_output)

    def to_dict(self) -> dict[str, Any]:
        return {"userSub": self.user_sub, "requestId": self.request_id, "hourStart": self.hour_start,
                "inputTokens": self.input_tokens, "maxTokens": self.max_tokens, "limits": self.limits.to_dict(),
                "reservedTokens": self.reserved_tokens, "rates": self.rates.to_list() if self.rates else None,
                "costMicros": self.cost_micros, "pools": list(self.pools), "groups": list(self.groups)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reservation:
        rates = data.get("rates")
        return cls(user_sub=data["userSub"], request_id=data["requestId"], hour_start=int(data["hourStart"]),
                   input_tokens=int(data["inputTokens"]), max_tokens=int(data["maxTokens"]),
                   limits=LimitsSnapshot.from_dict(data["limits"]),
                   reserved_tokens=None if data["reservedTokens"] is None else int(data["reservedTokens"]),
                   rates=Rates.from_list(rates) if rates else None, cost_micros=int(data["costMicros"]),
                   pools=tuple(data["pools"]), groups=tuple(data["groups"]))


@dataclass(frozen=True)
class Charge:
    """What a chat is charged: the counts (as Bedrock names them), their cost and their share of the token budget."""

    input_tokens: int  # input neither read from nor written to the prompt cache
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    cost_micros: int | None = None  # None: the model has no price
    budget_tokens: int = 0  # what the hour's token counter is charged (cache reads at their price ratio)
    uncovered_input_tokens: int = 0  # reported beyond the reservation, not charged (logged and counted)
    uncovered_output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_input_tokens + self.cache_write_input_tokens

    def usage_wire(self) -> dict[str, Any]:
        """The `usage` object of the `done` frame (docs/PROTOCOL.md), `costUsd` when the model has a price."""
        wire: dict[str, Any] = {"inputTokens": self.input_tokens, "outputTokens": self.output_tokens,
                                "totalTokens": self.total_tokens,
                                "cacheReadInputTokens": self.cache_read_input_tokens,
                                "cacheWriteInputTokens": self.cache_write_input_tokens}
        if self.cost_micros is not None:
            wire["costUsd"] = micros_to_usd(self.cost_micros)
        return wire

