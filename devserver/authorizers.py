"""What API Gateway does with a Lambda authorizer's answer, for the local gateway.

- The function fails with the message "Unauthorized": 401, the integration never runs.
- It fails otherwise, or answers something malformed: 500 (AuthorizerConfigurationException).
- Its policy denies the method ARN, or allows nothing that matches it: 403.
- Its policy allows the method ARN: the request goes on, with the answer's `context`
  plus `principalId` and `integrationLatency` as `requestContext.authorizer`.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("devserver.authorizers")

_CONTEXT_VALUE_TYPES = (str, int, float, bool)


@dataclass(frozen=True)
class Decision:
    status: int  # 200 when the request may go on
    error_type: str | None = None
    message: str | None = None
    context: dict[str, Any] | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 200


UNAUTHORIZED = Decision(401, "UnauthorizedException", "Unauthorized")
FORBIDDEN = Decision(403, "AccessDeniedException", "Forbidden")
MISCONFIGURED = Decision(500, "AuthorizerConfigurationException", "Internal server error")


def from_error(exc: BaseException) -> Decision:
    if str(exc) == "Unauthorized":
        return UNAUTHORIZED
    log.error("authorizer failed: %s", type(exc).__name__)
    return MISCONFIGURED


def from_answer(answer: Any, method_arn: str, *, latency_ms: int) -> Decision:
    if not isinstance(answer, dict) or not isinstance(answer.get("principalId"), str):
        log.error("authorizer answer has no principalId")
        return MISCONFIGURED
    statements = (answer.get("policyDocument") or {}).get("Statement")
    context = answer.get("context") or {}
    if not isinstance(statements, list) or not isinstance(context, dict) or \
            not all(isinstance(v, _CONTEXT_VALUE_TYPES) for v in context.values()):
        log.error("authorizer answer has a malformed policy or context")
        return MISCONFIGURED
    matching = [s for s in statements if isinstance(s, dict) and _matches(s, method_arn)]
    if any(s.get("Effect") == "Deny" for s in matching) or not any(s.get("Effect") == "Allow" for s in matching):
        return FORBIDDEN
    return Decision(200, context={**context, "principalId": answer["principalId"], "integrationLatency": latency_ms})


def _matches(statement: dict[str, Any], method_arn: str) -> bool:
    actions = _as_list(statement.get("Action"))
    resources = _as_list(statement.get("Resource"))
    # Action names are case-insensitive in IAM; resources are not.
    return (any(_wildcard(a.lower(), "execute-api:invoke") for a in actions)
            and any(_wildcard(r, method_arn) for r in resources))


def _as_list(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, str)]


def _wildcard(pattern: str, value: str) -> bool:
    """IAM's matching: `*` is any run of characters, `?` any one; case-sensitive."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None
