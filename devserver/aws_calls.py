"""Which AWS calls each app function makes, as the IAM actions they need (a least-privilege aid).

The local stack and the tests record every botocore call made inside a handler's invocation
(`chalicelib.observability.invocation` binds the handler's name), translated to the IAM
action(s) and the resource kind IAM checks. `tests/test_least_privilege.py` holds what was
recorded against the contract in tests/infra/test_policies.py, so a call added to the code
without its permission fails the suite. `DEV_RECORD_AWS_CALLS=<file>` makes `make dev` write
the same record, one JSON line per new (function, action, target).

`DEV_TIME_AWS_CALLS=<file>` makes it write every call's start and end instead, one JSON line
each, for a timeline of one request through the stack (bench/stream.py's `--timeline`).
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# The `handler` each invocation binds -> the Chalice function it runs in (app.py).
HANDLER_FUNCTIONS = {"$connect": "websocket_connect", "$default": "websocket_message",
                     "$disconnect": "websocket_disconnect", "rest": "api_handler", "rest_authorizer": "rest_authorizer",
                     "ws_authorizer": "ws_authorizer", "bedrock_worker": "bedrock_worker",
                     "github_worker": "github_worker"}

# botocore operations whose IAM actions are not "<service>:<OperationName>".
_S3_ACTIONS = {"HeadObject": ["s3:GetObject"], "ListObjectsV2": ["s3:ListBucket"], "ListObjects": ["s3:ListBucket"],
               "DeleteObjects": ["s3:DeleteObject"]}
_SERVICE_PREFIX = {"apigatewaymanagementapi": "execute-api", "bedrock-runtime": "bedrock"}
_OPERATION_ACTIONS = {("execute-api", op): ["execute-api:ManageConnections"]
                      for op in ("PostToConnection", "DeleteConnection", "GetConnection")}
_OPERATION_ACTIONS.update({("bedrock", "ConverseStream"): ["bedrock:InvokeModelWithResponseStream"],
                           ("bedrock", "Converse"): ["bedrock:InvokeModel"],
                           ("lambda", "Invoke"): ["lambda:InvokeFunction"]})
_TRANSACT_ACTIONS = {"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem", "Delete": "dynamodb:DeleteItem",
                     "ConditionCheck": "dynamodb:ConditionCheckItem", "Get": "dynamodb:GetItem"}

Call = tuple[str, str, str]  # (function, IAM action, target: "table:<name>", "object:<bucket>", ... or "")


def iam_calls(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(IAM action, target) pairs one botocore call needs. Targets name the physical table or bucket."""
    prefix = _SERVICE_PREFIX.get(service, service)
    if prefix == "dynamodb" and operation in ("TransactWriteItems", "TransactGetItems"):
        calls = []
        for item in params.get("TransactItems", []):
            for kind, body in item.items():
                calls.append((_TRANSACT_ACTIONS[kind], f"table:{body.get('TableName', '')}"))
        return calls
    if prefix == "dynamodb" and operation in ("BatchWriteItem", "BatchGetItem"):
        return [(f"dynamodb:{operation}", f"table:{name}") for name in params.get("RequestItems", {})]
    if prefix == "s3":
        bucket = params.get("Bucket", "")
        if operation == "CopyObject":  # read the source, write the target (tags too when copied)
            actions = ["s3:GetObject", "s3:PutObject"]
            if params.get("TaggingDirective", "COPY") == "COPY":
                actions += ["s3:GetObjectTagging", "s3:PutObjectTagging"]
            return [(action, f"object:{bucket}") for action in actions]
        actions = _S3_ACTIONS.get(operation, [f"s3:{operation}"])
        kind = "bucket" if actions == ["s3:ListBucket"] else "object"
        calls = [(action, f"{kind}:{bucket}") for action in actions]
        if operation == "PutObject" and params.get("Tagging"):
            calls.append(("s3:PutObjectTagging", f"object:{bucket}"))
        return calls
    if prefix == "dynamodb":
        table = params.get("TableName", "")
        if params.get("IndexName"):  # a Query or Scan of an index is checked on the index's ARN
            return [(f"dynamodb:{operation}", f"index:{table}/{params['IndexName']}")]
        return [(f"dynamodb:{operation}", f"table:{table}")]
    actions = _OPERATION_ACTIONS.get((prefix, operation), [f"{prefix}:{operation}"])
    return [(action, "") for action in actions]


class CallRecorder:
    """Records (function, action, target) for botocore calls made inside an app invocation."""

    def __init__(self, *, on_new: Callable[[Call], None] | None = None) -> None:
        self.calls: set[Call] = set()
        self._lock = threading.Lock()
        self._on_new = on_new

    def record(self, handler: str | None, service: str, operation: str, params: dict[str, Any]) -> None:
        function = HANDLER_FUNCTIONS.get(handler or "")
        if function is None:
            return  # not inside an invocation: a test's or the stack's own call
        for action, target in iam_calls(service, operation, params):
            call = (function, action, target)
            with self._lock:
                if call in self.calls:
                    continue
                self.calls.add(call)
            if self._on_new is not None:
                self._on_new(call)

    def install(self) -> None:
        """Wrap botocore's one call path, for every client and resource of this process."""
        from botocore.client import BaseClient

        from chalicelib.observability.logs import current_context

        original = BaseClient._make_api_call
        if getattr(original, "recorder", None) is not None:
            original = original.wrapped  # one recorder at a time
        recorder = self

        def _make_api_call(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            recorder.record(current_context().get("handler"), client.meta.service_model.service_name,
                            operation_name, api_params)
            return original(client, operation_name, api_params)

        _make_api_call.recorder = recorder  # type: ignore[attr-defined]
        _make_api_call.wrapped = original  # type: ignore[attr-defined]
        BaseClient._make_api_call = _make_api_call


def append_to(path: Path) -> Callable[[Call], None]:
    """An on_new that appends each new call to `path` as a JSON line (several processes may share it)."""
    lock = threading.Lock()

    def write(call: Call) -> None:
        line = json.dumps({"function": call[0], "action": call[1], "target": call[2]}) + "\n"
        with lock, open(path, "a", encoding="utf-8") as out:
            out.write(line)

    return write


def read(paths: Iterable[Path]) -> set[Call]:
    calls: set[Call] = set()
    for path in paths:
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                entry = json.loads(line)
                calls.add((entry["function"], entry["action"], entry["target"]))
    return calls


def install_from_env() -> CallRecorder | None:
    """The local stack's recorder, when DEV_RECORD_AWS_CALLS names a file."""
    path = os.environ.get("DEV_RECORD_AWS_CALLS")
    if not path:
        return None
    recorder = CallRecorder(on_new=append_to(Path(path)))
    recorder.install()
    return recorder


def time_calls_from_env() -> None:
    """DEV_TIME_AWS_CALLS=<file>: append every botocore call of this process to the file, one JSON
    line each: {"service", "operation", "handler" (the app function, or null outside one), "thread",
    "start", "end"} with epoch seconds, so a client on the same machine can lay its own times beside them."""
    path = os.environ.get("DEV_TIME_AWS_CALLS")
    if not path:
        return
    from botocore.client import BaseClient

    from chalicelib.observability.logs import current_context

    original = BaseClient._make_api_call
    lock = threading.Lock()

    def _make_api_call(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        start = time.time()
        try:
            return original(client, operation_name, api_params)
        finally:
            line = json.dumps({"service": client.meta.service_model.service_name, "operation": operation_name,
                               "handler": HANDLER_FUNCTIONS.get(current_context().get("handler") or ""),
                               "thread": threading.current_thread().name, "start": start, "end": time.time()})
            with lock, open(path, "a", encoding="utf-8") as out:
                out.write(line + "\n")

    BaseClient._make_api_call = _make_api_call
