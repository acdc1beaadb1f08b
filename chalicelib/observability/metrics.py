"""Metrics as CloudWatch Embedded Metric Format lines: no API calls, no latency.

CloudWatch Logs turns each line into metrics. The names below are the ones the
dashboard and alarms in infra/ are built from: change them together.
"""
from __future__ import annotations

import functools
import json
import sys
import time
from typing import IO, Any, Mapping

NAMESPACE = "LlmIde"

# name -> unit
METRICS: dict[str, str] = {
    "Requests": "Count",            # every action handled, dimension action (+ outcome as a property)
    "Errors": "Count",              # error frames sent, dimension code
    "Connections": "Count",         # accepted $connect
    "ConnectionsRefused": "Count",  # refused $connect
    "ChatLatency": "Milliseconds",  # chat.send accepted -> done/error sent
    "TimeToFirstToken": "Milliseconds",  # chat.send accepted -> first delta sent
    "InputTokens": "Count",
    "OutputTokens": "Count",
    "FramesSent": "Count",
    "RateLimited": "Count",
    "BudgetExceeded": "Count",
    "UpstreamThrottled": "Count",   # Bedrock or GitHub throttled us (each retry)
}

DIMENSION_NAMES = ("stage", "action", "model", "code")


class MetricsWriter:
    def __init__(self, *, stage: str, stream: IO[str] | None = None) -> None:
        self._stage = stage
        self._stream = stream

    def emit(self, values: Mapping[str, float], *, dimensions: Mapping[str, str] | None = None,
             properties: Mapping[str, Any] | None = None) -> None:
        """One EMF line holding the values, under stage plus the given dimensions."""
        unknown = set(values) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}: add them to METRICS and the dashboard")
        dims = {"stage": self._stage, **{k: str(v) for k, v in (dimensions or {}).items() if v is not None}}
        bad = set(dims) - set(DIMENSION_NAMES)
        if bad:
            raise ValueError(f"unknown dimensions {sorted(bad)}")
        line = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [list(dims)],
                    "Metrics": [{"Name": name, "Unit": METRICS[name]} for name in values],
                }],
            },
            **dims,
            **(properties or {}),
            **values,
        }
        stream = self._stream or sys.stdout
        stream.write(json.dumps(line, separators=(",", ":")) + "\n")
        stream.flush()


@functools.lru_cache(maxsize=1)
def get_metrics() -> MetricsWriter:
    from chalicelib.config import get_settings

    return MetricsWriter(stage=get_settings().stage)
