"""A chat's input counted before it is admitted: Bedrock's CountTokens where the model table says it counts.

`InputCounter.count` answers None where Bedrock cannot count (the model's `countTokens` is false)
or the count failed (throttled, unavailable: logged and counted as `CountTokensFailed`); the
caller then reserves the upper bound instead (chalicelib/chat/input_bound.py), so a failing
count never refuses a chat, it only reserves more for it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from chalicelib.errors import AppError
from chalicelib.models import ModelSpec
from chalicelib.observability import metric_names
from chalicelib.observability.metrics import MetricsWriter, get_metrics

logger = logging.getLogger(__name__)


class TokenCounter(Protocol):
    """Bedrock's CountTokens (chalicelib/chat/bedrock.py: BedrockTokenCounter)."""

    def count(self, foundation_model_id: str, converse_input: Mapping[str, Any]) -> int:
        ...


class InputCounter:
    def __init__(self, counter: Callable[[], TokenCounter],
                 metrics: Callable[[], MetricsWriter] = get_metrics) -> None:
        self._counter = counter  # built on first use: a chat on a model Bedrock cannot count never builds it
        self._metrics = metrics

    def count(self, model: ModelSpec, converse_input: dict[str, Any]) -> int | None:
        """The input tokens Bedrock would charge for `converse_input` on `model`, or None (see the module)."""
        if not model.count_tokens:
            return None
        try:
            return self._counter().count(model.foundation_id, converse_input)
        except AppError as error:
            logger.warning("counting the input failed: reserving its bound", extra={"model": model.id,
                                                                                  "errorCode": error.code})
            self._metrics().emit(metric_names.COUNT_TOKENS_FAILED, 1, dimensions={metric_names.MODEL: model.id})
            return None
