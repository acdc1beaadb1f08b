"""Which limits apply to a user: the defaults, or their Cognito groups' overrides, and their groups' pools."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chalicelib.config import Settings


@dataclass(frozen=True)
class UserLimits:
    requests_per_minute: int
    tokens_per_hour: int
    cost_per_day: int | None = None  # micro-dollars a day (COST_BUDGET_USD_PER_DAY); None: no such budget
    cost_per_month: int | None = None  # micro-dollars a month (COST_BUDGET_USD_PER_MONTH)
    # (group, micro-dollars a month): each of the user's groups whose monthly budget its members share
    pools: tuple[tuple[str, int], ...] = ()
    # The user's groups named in LIMITS_BY_GROUP: each has a month record of its members' usage
    groups: tuple[str, ...] = ()

    @property
    def has_money(self) -> bool:
        """Whether any money budget applies: the chat's worst case is then reserved in money too."""
        return self.cost_per_day is not None or self.cost_per_month is not None or bool(self.pools)


def limits_for(groups: Iterable[str], settings: Settings) -> UserLimits:
    """The limits of a user in `groups`.

    A group listed in LIMITS_BY_GROUP replaces the default of each limit it names,
    for its members. A user in several such groups gets the most generous value of
    each limit among them (limit by limit: requests from one group, tokens from
    another is possible). Groups that name no value for a limit leave it alone.
    A group's `pooledCostUsdPerMonth` is not a member's own limit but the group's,
    shared: every pool of every group the user is in applies to each of their chats.
    """
    own: dict[str, list[int]] = {"requestsPerMinute": [], "tokensPerHour": [], "costUsdPerDay": [],
                                 "costUsdPerMonth": []}
    pools: list[tuple[str, int]] = []
    listed: list[str] = []
    for group in sorted(set(groups)):
        overrides = settings.limits_by_group.get(group)
        if overrides is None:
            continue
        listed.append(group)
        for name, values in own.items():
            if name in overrides:
                values.append(overrides[name])
        if "pooledCostUsdPerMonth" in overrides:
            pools.append((group, overrides["pooledCostUsdPerMonth"]))

    def most(name: str) -> int | None:
        return max(own[name]) if own[name] else None  # every value is at least 1: `or` picks the default

    return UserLimits(
        requests_per_minute=most("requestsPerMinute") or settings.rate_limit_requests_per_minute,
        tokens_per_hour=most("tokensPerHour") or settings.token_budget_per_hour,
        cost_per_day=most("costUsdPerDay") or settings.cost_budget_per_day,
        cost_per_month=most("costUsdPerMonth") or settings.cost_budget_per_month,
        pools=tuple(pools),
        groups=tuple(listed),
    )
