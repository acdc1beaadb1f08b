"""AWS X-Ray, loaded only when tracing is on.

With `TRACING_ENABLED` off (dev), aws_xray_sdk is never imported and every
helper here is a no-op. With it on (staging, prod), botocore is patched once
per container, so every AWS call is a subsegment and the trace header travels
with the async Lambda invocation: the worker's trace continues the handler's.
Annotations carry action, model and outcome only, never personal data; nor do
the SDK's own AWS subsegments (see `_keep_personal_data_out`).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from chalicelib.process import kept

logger = logging.getLogger(__name__)

# Request and response parameters the SDK's botocore patch would copy into every AWS subsegment
# (aws_xray_sdk/ext/resources/aws_para_whitelist.json) that hold personal data: S3 keys and prefixes
# are users/<sub>/..., the user's paths; DynamoDB's ItemCollectionMetrics holds an item's key value.
PERSONAL_PARAMETERS = frozenset({"Key", "CopySource", "Prefix", "ItemCollectionMetrics"})


@kept
def _recorder() -> Any:
    from chalicelib.config import get_settings

    if not get_settings().tracing_enabled:
        return None
    from aws_xray_sdk.core import patch, xray_recorder

    xray_recorder.configure(context_missing="IGNORE_ERROR", service="llm-ide")
    _keep_personal_data_out()
    patch(["botocore"])
    return xray_recorder


def _keep_personal_data_out() -> None:
    """Drop PERSONAL_PARAMETERS from the SDK's whitelist (the one dict its botocore patch reads)."""
    from aws_xray_sdk.ext import boto_utils

    for service in boto_utils.whitelist["services"].values():
        for params in service["operations"].values():
            for kind in ("request_parameters", "response_parameters"):
                if kind in params:
                    params[kind] = [name for name in params[kind] if name not in PERSONAL_PARAMETERS]
            for kind in ("request_descriptors", "response_descriptors"):
                for name in PERSONAL_PARAMETERS & set(params.get(kind, ())):
                    del params[kind][name]


def start() -> None:
    """Patch botocore for tracing if it is on; called once at the start of each handler."""
    _recorder()


@contextlib.contextmanager
def subsegment(name: str, **annotations: str | int | float | bool) -> Iterator[Any]:
    recorder = _recorder()
    if recorder is None:
        yield None
        return
    with recorder.in_subsegment(name) as segment:
        if segment is not None:
            for key, value in annotations.items():
                segment.put_annotation(key, value)
        yield segment


def annotate(**annotations: str | int | float | bool) -> None:
    """Annotate the current subsegment (Lambda's own segment is a read-only facade)."""
    recorder = _recorder()
    if recorder is None:
        return
    entity = recorder.current_subsegment()
    if entity is not None:
        for key, value in annotations.items():
            entity.put_annotation(key, value)
