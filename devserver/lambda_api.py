"""The Lambda Invoke API, for the app's worker functions.

boto3's `lambda.invoke` reaches this through AWS_ENDPOINT_URL_LAMBDA. `Event`
invocations answer 202 at once and run on the runtime's thread pool, as Lambda
queues them (after DEV_LAMBDA_EVENT_DELAY_MS, the time an event may wait in
Lambda's queue: so that tests can act between an invocation and its start);
`RequestResponse` runs the function and returns its result.
Function names are resolved as Chalice names them: `<app>-<stage>-<function>`,
a bare function name, or an ARN of either.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re

from aiohttp import web

from devserver.gateway import LambdaRuntime

log = logging.getLogger("devserver.lambda")

# Lambda's limits on payloads.
MAX_EVENT_PAYLOAD = 256 * 1024
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024


class LambdaApi:
    def __init__(self, runtime: LambdaRuntime, *, app_name: str, stage: str, functions: tuple[str, ...],
                 event_delay_ms: float = 0.0) -> None:
        self._runtime = runtime
        self._event_delay = event_delay_ms / 1000.0
        self._prefix = f"{app_name}-{stage}-"
        self._functions = frozenset(functions)
        self._background: set[asyncio.Task] = set()

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_SYNC_PAYLOAD)
        app.router.add_post("/2015-03-31/functions/{name}/invocations", self._invoke)
        app.on_shutdown.append(self._drain)
        return app

    def resolve(self, name: str) -> str | None:
        name = re.sub(r"^arn:aws[\w-]*:lambda:[\w-]+:\d{12}:function:", "", name).split(":", 1)[0]
        if name.startswith(self._prefix):
            name = name[len(self._prefix):]
        return name if name in self._functions else None

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        function = self.resolve(request.match_info["name"])
        if function is None:
            return _error(404, "ResourceNotFoundException", f"Function not found: {request.match_info['name']}")
        body = await request.read()
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        limit = MAX_EVENT_PAYLOAD if invocation_type == "Event" else MAX_SYNC_PAYLOAD
        if len(body) > limit:
            return _error(413, "RequestEntityTooLargeException", f"Request must be smaller than {limit} bytes")
        try:
            event = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "InvalidRequestContentException", "Could not parse request body into json")
        if invocation_type == "Event":
            task = asyncio.create_task(self._run(function, event))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            log.info("invoke %s (Event)", function)
            return web.Response(status=202)
        if invocation_type != "RequestResponse":
            return _error(400, "InvalidParameterValueException", f"Unsupported invocation type {invocation_type}")
        try:
            result = await self._runtime.invoke(function, event)
        except Exception as exc:
            log.exception("function %s raised", function)
            payload = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            return web.json_response(payload, headers={"X-Amz-Function-Error": "Unhandled",
                                                       "X-Amz-Executed-Version": "$LATEST"})
        return web.json_response(result, headers={"X-Amz-Executed-Version": "$LATEST"})

    async def _run(self, function: str, event: dict) -> None:
        if self._event_delay:
            await asyncio.sleep(self._event_delay)
        try:
            await self._runtime.invoke(function, event)
        except Exception:
            # An async invocation that raises: Lambda would retry it; here it is logged and dropped.
            log.exception("function %s raised in an Event invocation", function)

    async def _drain(self, _app: web.Application) -> None:
        for task in list(self._background):
            task.cancel()


def _error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response({"Type": "User", "message": message}, status=status,
                             headers={"x-amzn-ErrorType": error_type})
