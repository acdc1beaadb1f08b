"""What every Lambda handler does first: logging set up, tracing started, context bound."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from chalicelib.observability import tracing
from chalicelib.observability.logs import bind, configure_logging


@contextlib.contextmanager
def invocation(handler: str, lambda_context: Any = None, **fields: Any) -> Iterator[None]:
    """Run one invocation of `handler` with its log fields bound (Lambda's request id among them)."""
    from chalicelib.config import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    tracing.start()
    with bind(handler=handler, lambdaRequestId=getattr(lambda_context, "aws_request_id", None), **fields):
        yield
