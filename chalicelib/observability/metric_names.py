"""The application's metrics: one definition for the code that emits them and the dashboard.

The app writes these in CloudWatch Embedded Metric Format (a JSON log line, no API call);
`infra/stacks/monitoring.py` builds the dashboard and alarms from the same names. It lives in
chalicelib because only app.py and chalicelib/ are in the Lambda bundle. Plain data: importing
it costs nothing and pulls in nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "LlmIde"

# Dimension names.
STAGE = "stage"
ACTION = "action"
MODEL = "model"
CODE = "code"
REASON = "reason"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # an EMF / CloudWatch unit
    # The dimension sets each data point is emitted with. Every metric carries (stage,)
    # alone too, so alarms can watch the stage's total without knowing every action or model.
    dimension_sets: tuple[tuple[str, ...], ...]


def _metric(name: str, unit: str, *extra: str) -> Metric:
    sets = ((STAGE,),) + (((STAGE, *extra),) if extra else ())
    return Metric(name, unit, sets)


REQUESTS = _metric("Requests", "Count", ACTION)  # every frame the message handler routes (once), by action
CHAT_LATENCY = _metric("ChatLatency", "Milliseconds", MODEL)  # chat.send received -> done sent
TIME_TO_FIRST_TOKEN = _metric("TimeToFirstToken", "Milliseconds", MODEL)  # chat.send -> first delta
INPUT_TOKENS = _metric("InputTokens", "Count", MODEL)
OUTPUT_TOKENS = _metric("OutputTokens", "Count", MODEL)
FRAMES_SENT = _metric("FramesSent", "Count", ACTION)  # API Gateway bills per frame
RATE_LIMITED = _metric("RateLimited", "Count", ACTION)
BUDGET_EXCEEDED = _metric("BudgetExceeded", "Count", MODEL)
# Every throttling answer from Bedrock or GitHub, retried or not: pressure on the quota. Those that
# reached the user (retries exhausted) are also Errors and ServerErrors with code UPSTREAM_THROTTLED.
UPSTREAM_THROTTLED = _metric("UpstreamThrottled", "Count", ACTION)
# Bedrock's CountTokens failed before a chat was admitted: its input bound was reserved instead.
COUNT_TOKENS_FAILED = _metric("CountTokensFailed", "Count", MODEL)
# Tokens Bedrock reported beyond what a chat reserved (input) or was granted (output): not charged to the
# user, so the bound or the count was wrong. Should stay 0.
UNCOVERED_TOKENS = _metric("UncoveredTokens", "Count", MODEL)
# What the chats cost at the model table's prices (USD), by model: the daily cost alarm's metric.
CHAT_COST = _metric("ChatCost", "None", MODEL)
ERRORS = _metric("Errors", "Count", CODE)  # error frames, every code (the dashboard's "errors by code")
SERVER_ERRORS = _metric("ServerErrors", "Count", CODE)  # the Errors of SERVER_ERROR_CODES: the error-rate alarm
CONNECTIONS = _metric("Connections", "Count")  # +1 per accepted $connect
# Security: tokens refused by $connect or either authorizer, by the named reason of chalicelib/auth/errors.py
# (a fixed set: never anything taken from the token), and actions refused to a verified user (FORBIDDEN).
AUTH_REFUSED = _metric("AuthRefused", "Count", REASON)
FORBIDDEN = _metric("Forbidden", "Count", ACTION)

ALL: tuple[Metric, ...] = (
    REQUESTS, CHAT_LATENCY, TIME_TO_FIRST_TOKEN, INPUT_TOKENS, OUTPUT_TOKENS, FRAMES_SENT,
    RATE_LIMITED, BUDGET_EXCEEDED, UPSTREAM_THROTTLED, COUNT_TOKENS_FAILED, UNCOVERED_TOKENS, CHAT_COST, ERRORS,
    SERVER_ERRORS, CONNECTIONS, AUTH_REFUSED, FORBIDDEN,
)

# The error codes that mean we (or our upstreams) failed the user, whatever the request was. The others
# are the client's mistakes (BAD_REQUEST, NOT_FOUND, FORBIDDEN, UNAUTHORIZED, PAYLOAD_TOO_LARGE,
# MODEL_NOT_ALLOWED) or refusals with metrics of their own (RATE_LIMITED, BUDGET_EXCEEDED): one user
# can send as many of those as they like, so they must not page on-call.
SERVER_ERROR_CODES = frozenset({"INTERNAL", "UPSTREAM_ERROR", "UPSTREAM_THROTTLED", "TIMEOUT"})
