"""Which limits apply to a user: the defaults, or their Cognito groups' overrides."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chalicelib.config import Settings


@dataclass(frozen=True)
class UserLimits:
    requests_per_minute: int
    tokens_per_hour: int


def limits_for(groups: Iterable[str], settings: Settings) -> UserLimits:
    """The limits of a user in `groups`.

    A group listed in LIMITS_BY_GROUP replaces the default of each limit it names,
    for its members. A user in several such groups gets the most generous value of
    each limit among them (limit by limit: requests from one group, tokens from
    another is possible). Groups that name no value for a limit leave it alone.
    """
    requests: list[int] = []
    tokens: list[int] = []
    for group in groups:
        overrides = settings.limits_by_group.get(group)
        if overrides is None:
            continue
        if "requestsPerMinute" in overrides:
            requests.append(overrides["requestsPerMinute"])
        if "tokensPerHour" in overrides:
            tokens.append(overrides["tokensPerHour"])
    return UserLimits(
        requests_per_minute=max(requests) if requests else settings.rate_limit_requests_per_minute,
        tokens_per_hour=max(tokens) if tokens else settings.token_budget_per_hour,
    )
