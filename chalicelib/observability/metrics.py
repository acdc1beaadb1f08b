"""Metrics as CloudWatch Embedded Metric Format lines: no API calls, no latency.

CloudWatch Logs turns each line into metrics. What can be emitted is defined in
chalicelib/observability/metric_names.py, the same module the dashboard and alarms in infra/
are built from, so a metric the app emits is a metric on-call can see.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from chalicelib.observability.metric_names import (
    ALL,
    CODE,
    ERRORS,
    NAMESPACE,
    SERVER_ERROR_CODES,
    SERVER_ERRORS,
    STAGE,
    Metric,
)
from chalicelib.process import kept

_KNOWN = {metric.name: metric for metric in ALL}


def _to_stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


_output: Callable[[str], None] = _to_stdout


def set_output(write: Callable[[str], None] | None) -> None:
    """Where EMF lines go (one str each, no newline); None: stdout, which CloudWatch Logs reads.
    The local stack sends them to a file, so its console keeps to the readable log lines."""
    global _output
    _output = write or _to_stdout


class MetricsWriter:
    def __init__(self, *, stage: str, stream: IO[str] | None = None) -> None:
        self._stage = stage
        self._stream = stream

    def emit(self, metric: Metric, value: float, *, dimensions: Mapping[str, str] | None = None,
             properties: Mapping[str, Any] | None = None) -> None:
        """One EMF line with the value under each of the metric's dimension sets."""
        if _KNOWN.get(metric.name) != metric:
            raise ValueError(f"unknown metric {metric.name!r}: define it in chalicelib/observability/metric_names.py")
        dims = {STAGE: self._stage, **{k: str(v) for k, v in (dimensions or {}).items()}}
        needed = {name for dimension_set in metric.dimension_sets for name in dimension_set}
        if set(dims) != needed:
            raise ValueError(f"{metric.name} takes dimensions {sorted(needed)}, got {sorted(dims)}")
        line = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [list(dimension_set) for dimension_set in metric.dimension_sets],
                    "Metrics": [{"Name": metric.name, "Unit": metric.unit}],
                }],
            },
            **(properties or {}),
            **dims,
            metric.name: value,
        }
        text = json.dumps(line, separators=(",", ":"))
        if self._stream is None:
            _output(text)
        else:
            self._stream.write(text + "\n")
            self._stream.flush()


def count_error(metrics: MetricsWriter, code: str) -> None:
    """One error frame (or a chat ended in error): `Errors` by code, and `ServerErrors` when the
    failure is ours or upstream's, the only ones the error-rate alarm counts."""
    metrics.emit(ERRORS, 1, dimensions={CODE: code})
    if code in SERVER_ERROR_CODES:
        metrics.emit(SERVER_ERRORS, 1, dimensions={CODE: code})


@kept
def get_metrics() -> MetricsWriter:
    from chalicelib.config import get_settings

    return MetricsWriter(stage=get_settings().stage)
