"""Starting worker Lambdas asynchronously (InvocationType=Event).

The message handler answers quickly and hands long work (a model stream, a
GitHub call) to a worker; the worker sends its own frames to the connection.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import Internal

logger = logging.getLogger(__name__)

MAX_EVENT_PAYLOAD = 256 * 1024  # Lambda's limit for asynchronous invocations


class WorkerInvoker:
    def __init__(self, lambda_client: Any) -> None:
        self._lambda = lambda_client

    def start(self, function_name: str, payload: dict[str, Any]) -> None:
        """Queue one invocation of the worker; raises Internal if Lambda did not accept it."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        if len(body) > MAX_EVENT_PAYLOAD:
            raise Internal("the work item is too large to hand to a worker")
        try:
            response = self._lambda.invoke(FunctionName=function_name, InvocationType="Event", Payload=body)
        except (ClientError, BotoCoreError) as exc:
            logger.error("worker invocation failed", extra={"function": function_name, "error": type(exc).__name__})
            raise Internal("could not start the worker") from None
        if response.get("StatusCode") != 202:
            logger.error("worker invocation not accepted", extra={"function": function_name,
                                                                  "status": response.get("StatusCode")})
            raise Internal("could not start the worker")
