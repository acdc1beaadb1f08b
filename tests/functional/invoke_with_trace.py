"""Run by test_observability in a fresh interpreter: one worker Invoke, answered before it leaves.

Prints the X-Amzn-Trace-Id header the Invoke carried and whether aws_xray_sdk was imported.
"""
import json
import sys

import boto3
from botocore.awsrequest import AWSResponse

from chalicelib.aws.lambda_invoke import WorkerInvoker
from chalicelib.observability import tracing


class EmptyBody:
    def stream(self, **_): return iter(())
    def read(self, *_): return b""

tracing.start()
client = boto3.client("lambda", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                      aws_access_key_id="x", aws_secret_access_key="y")
sent: dict[str, str] = {}
def answer(request, **_):
    sent.update({k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})
    return AWSResponse(request.url, 202, {}, EmptyBody())
client.meta.events.register("before-send.lambda.Invoke", answer)
WorkerInvoker(client).start("llm-ide-prod-github_worker", {"requestId": "c1"})
print(json.dumps({"trace": sent.get("X-Amzn-Trace-Id"), "sdk": "aws_xray_sdk" in sys.modules}))
