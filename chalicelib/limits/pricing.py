"""What tokens cost, in integers: so that a budget's sums are exact, whatever is added in what order.

A model's prices come from the model table (chalicelib/models.py, MODELS) in USD per million
tokens, with at most six decimals (the table checks it). One token at `p` USD per million costs
`p * 10**6` pico-dollars (1e-12 USD), an exact integer: `Rates` holds the four prices so. A
chat's cost is the sum of its counts times their rates, rounded UP to the micro-dollar (1e-6
USD), the unit every record, counter and budget is kept in; `costUsd` on the wire is that
integer divided by 10**6. Rounding up keeps a chat that read anything from costing nothing, and
it is monotone: a chat's settled cost never exceeds the cost reserved for its worst case.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from chalicelib.models import ModelPrice

PICO_PER_MICRO = 10**6
MICROS_PER_USD = 10**6


def micros_to_usd(micros: int) -> float:
    """A micro-dollar amount as the number the wire carries (`costUsd`, the cost limits)."""
    return micros / MICROS_PER_USD


def usd_to_micros(usd: float) -> int:
    """A USD amount with at most six decimals (a setting) in micro-dollars, exactly."""
    return int(Decimal(str(usd)) * MICROS_PER_USD)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass(frozen=True)
class Rates:
    """A model's prices in pico-dollars per token: input, output, cache read, cache write."""

    input: int
    output: int
    cache_read: int
    cache_write: int

    @classmethod
    def of(cls, price: ModelPrice | None) -> Rates | None:
        """The rates of the model table's `price` (USD per million tokens); None for a model without one."""
        if price is None:
            return None
        return cls(*(int(Decimal(str(value)) * PICO_PER_MICRO)
                     for value in (price.input, price.output, price.cache_read, price.cache_write)))

    def cost_micros(self, *, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0) -> int:
        """The cost of these counts in micro-dollars, rounded up."""
        picos = (input_tokens * self.input + output_tokens * self.output + cache_read * self.cache_read
                 + cache_write * self.cache_write)
        return _ceil_div(picos, PICO_PER_MICRO)

    def worst_input(self, *, prompt_cache: bool) -> int:
        """The most one input token can cost: Bedrock charges each as plain input, or, for a model that caches
        prompts, as a cache write (1.25 times the input price on Claude) or a cache read."""
        return max(self.input, self.cache_write, self.cache_read) if prompt_cache else self.input

    def worst_cost_micros(self, *, input_tokens: int, max_tokens: int, prompt_cache: bool) -> int:
        """A chat's worst case: every input token at the highest price it can be charged, and `max_tokens` of
        output."""
        picos = input_tokens * self.worst_input(prompt_cache=prompt_cache) + max_tokens * self.output
        return _ceil_div(picos, PICO_PER_MICRO)

    def output_tokens_within(self, micros: int, *, input_tokens: int, prompt_cache: bool) -> int:
        """The most output tokens whose worst case, with this input, costs at most `micros` (negative: not even
        the input fits)."""
        room = micros * PICO_PER_MICRO - input_tokens * self.worst_input(prompt_cache=prompt_cache)
        if room < 0:
            return -1
        return room // self.output if self.output else 10**12

    def cache_read_weight(self) -> tuple[int, int]:
        """How much of the token budget one cache read takes, as a fraction (numerator, denominator): its price
        over the input price (a tenth on Claude). 1 when the input is free."""
        return (self.cache_read, self.input) if self.input else (1, 1)

    def to_list(self) -> list[int]:
        return [self.input, self.output, self.cache_read, self.cache_write]

    @classmethod
    def from_list(cls, values: Sequence[int]) -> Rates:
        return cls(*(int(value) for value in values))


def budget_tokens(rates: Rates | None, *, input_tokens: int, output_tokens: int, cache_read: int,
                  cache_write: int) -> int:
    """What a chat's usage takes from the hourly token budget (TOKEN_BUDGET_PER_HOUR): input, output and cache
    writes each a token, cache reads at their price ratio to input (rounded up; fully without a price)."""
    numerator, denominator = rates.cache_read_weight() if rates is not None else (1, 1)
    return input_tokens + output_tokens + cache_write + _ceil_div(cache_read * numerator, denominator)


def reserved_input_tokens(rates: Rates | None, input_tokens: int, *, prompt_cache: bool) -> int:
    """The token budget held for `input_tokens` of input: each may turn out plain input or a cache write (one
    token each) or a cache read (its ratio, which a price table could set above one)."""
    if rates is None or not prompt_cache:
        return input_tokens
    numerator, denominator = rates.cache_read_weight()
    return max(input_tokens, _ceil_div(input_tokens * numerator, denominator))
