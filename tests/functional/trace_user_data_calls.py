"""Run by test_observability in a fresh interpreter: calls on one user's S3 objects and DynamoDB items,
traced (TRACING_ENABLED=true, no daemon). Prints every entity the recorder emitted, as X-Ray would get it.

argv: the user's sub, then `unfiltered` to trace with the SDK's own whitelist (to show what it would
record). The app's environment (moto's endpoints, the tables and bucket) is inherited.
"""
import json
import sys

from aws_xray_sdk.core import patch, xray_recorder
from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter

from chalicelib.aws import clients as aws
from chalicelib.config import get_settings
from chalicelib.observability import tracing

sub = sys.argv[1]
emitted: list[dict] = []


class Captured(UDPEmitter):
    def send_entity(self, entity):
        emitted.append(json.loads(entity.serialize()))


if sys.argv[2:] == ["unfiltered"]:  # the SDK on its own, as tracing.start() sets it up but for its filter
    xray_recorder.configure(context_missing="IGNORE_ERROR", service="llm-ide")
    patch(["botocore"])
else:
    tracing.start()
recorder = xray_recorder  # the SDK's one recorder, which tracing.start() configured and patched botocore for
recorder.configure(emitter=Captured(), sampling=False)  # every segment sampled, sent here, not over UDP
settings = get_settings()
s3, dynamodb = aws.client("s3"), aws.client("dynamodb")
bucket, key = settings.context_bucket, f"users/{sub}/context/notes/plan.txt"

recorder.begin_segment("user-data")
s3.put_object(Bucket=bucket, Key=key, Body=b"plan")
s3.head_object(Bucket=bucket, Key=key)
s3.get_object(Bucket=bucket, Key=key)["Body"].read()
s3.list_objects_v2(Bucket=bucket, Prefix=f"users/{sub}/")
s3.copy_object(Bucket=bucket, Key=key + ".copy", CopySource={"Bucket": bucket, "Key": key})
s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}, {"Key": key + ".copy"}]})
item = {"pk": {"S": f"USER#{sub}"}, "sk": {"S": "SESSION#trace"}, "updatedAt": {"N": "1"}}
dynamodb.put_item(TableName=settings.sessions_table, Item=item, ReturnItemCollectionMetrics="SIZE",
                  ReturnConsumedCapacity="TOTAL")
dynamodb.get_item(TableName=settings.sessions_table, Key={"pk": item["pk"], "sk": item["sk"]})
dynamodb.query(TableName=settings.sessions_table, KeyConditionExpression="pk = :pk",
               ExpressionAttributeValues={":pk": item["pk"]})
dynamodb.delete_item(TableName=settings.sessions_table, Key={"pk": item["pk"], "sk": item["sk"]},
                     ReturnItemCollectionMetrics="SIZE")
recorder.end_segment()


def names(value):
    """Every key (and string) anywhere in the SDK's whitelist."""
    if isinstance(value, dict):
        return set(value) | {n for item in value.values() for n in names(item)}
    if isinstance(value, list):
        return {n for item in value for n in names(item)}
    return {value} if isinstance(value, str) else set()


from aws_xray_sdk.ext import boto_utils  # noqa: E402 - loaded by the patch

print(json.dumps({"emitted": emitted,
                  "whitelisted": sorted(names(boto_utils.whitelist) & tracing.PERSONAL_PARAMETERS)}))
