"""`usage.get`: the caller's limits and usage (the same report as `GET /usage`)."""
from __future__ import annotations

from typing import Any

from chalicelib import protocol
from chalicelib.dispatch.contract import ActionContext
from chalicelib.limits.usage import UsageReport


class UsageActions:
    def __init__(self, report: UsageReport) -> None:
        self._report = report

    def get(self, ctx: ActionContext) -> dict[str, Any]:
        connection = ctx.connection
        return protocol.result(ctx.frame.id, self._report.report(connection.user_sub, ctx.now,
                                                                 groups=connection.groups))
