"""A month's usage and cost, from the usage records: by user, group, model or day, as CSV or JSON.

    python -m infra.usage_report --stage prod --month 2026-11 [--by user|group|model|day] [--format csv|json]

It reads the month with Queries of the usage table's `byMonth` index (partition `month`, sort
`entry`; chalicelib/limits/records.py), one kind of record per report, never a Scan: a month of
1,000 users is a few pages. The figures are the settled ones (what the chats were charged:
`done.usage`), cost in USD at the model table's prices, rounded up to the micro-dollar per chat:

- `--by user`: each user's month record (`entry` U#<sub>), by the user's Cognito `sub`;
- `--by group`: each group's month record (G#<group>), for the groups named in LIMITS_BY_GROUP
  (a member in two groups counts in both; a user in none in no group);
- `--by model`: the users' records of a day and a model (M#<model>#<day>#<sub>), summed per model;
- `--by day`: the users' day records (D#<day>#<sub>), summed per day.

The last row (CSV: its first column empty) or `total` (JSON) is the month's total; by user, model
or day it is the same figure. AWS credentials and region come from the usual places (profile,
environment), `--region` overrides the region; `--endpoint-url` points at a local stack's or moto's
DynamoDB. A call AWS refuses, or missing credentials or region, ends it with one line naming the cause
(exit status 1). The index is eventually consistent: a chat settled in the last second may be
missing. Operators need `dynamodb:Query` on the table's `index/byMonth`.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from chalicelib.limits import records
from chalicelib.limits.pricing import micros_to_usd
from infra import resources

INDEX = "byMonth"
KINDS = {"user": records.USER_ENTRY, "group": records.GROUP_ENTRY, "model": records.MODEL_ENTRY,
         "day": records.DAY_ENTRY}
COUNTERS = ("chats", "inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens",
            "totalTokens", "costMicros")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def month_items(dynamodb: Any, table: str, month: str, by: str) -> Iterator[dict[str, Any]]:
    """The month's records of one kind, page after page (low-level items)."""
    request: dict[str, Any] = {
        "TableName": table, "IndexName": INDEX,
        "KeyConditionExpression": "#month = :month AND begins_with(#entry, :kind)",
        "ExpressionAttributeNames": {"#month": "month", "#entry": "entry"},
        "ExpressionAttributeValues": {":month": {"S": month}, ":kind": {"S": KINDS[by]}},
    }
    while True:
        page = dynamodb.query(**request)
        yield from page.get("Items", ())
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def row_key(entry: str, by: str) -> str:
    """What a record is reported under: the user's sub, the group, the model or the day."""
    rest = entry[len(KINDS[by]):]
    if by == "model":  # <model>#<day>#<sub>: a model id has no '#', a sub none either
        return rest.rsplit("#", 2)[0]
    if by == "day":  # <day>#<sub>
        return rest.split("#", 1)[0]
    return rest


def report(items: Iterable[Mapping[str, Any]], by: str) -> dict[str, Any]:
    """{"rows": [{by, counters..., "costUsd"}] (most costly first), "total": {counters..., "costUsd"}}."""
    sums: dict[str, dict[str, int]] = {}
    for item in items:
        row = sums.setdefault(row_key(item["entry"]["S"], by), dict.fromkeys(COUNTERS, 0))
        for name in COUNTERS:
            row[name] += records.read_number(item, name)
    total = {name: sum(row[name] for row in sums.values()) for name in COUNTERS}
    ordered = sorted(sums.items(), key=lambda pair: (-pair[1]["costMicros"], pair[0]))
    return {"rows": [{by: key, **_wire(row)} for key, row in ordered], "total": _wire(total)}


def _wire(counters: Mapping[str, int]) -> dict[str, Any]:
    row: dict[str, Any] = {name: counters[name] for name in COUNTERS if name != "costMicros"}
    row["costUsd"] = micros_to_usd(counters["costMicros"])
    return row


def to_csv(result: Mapping[str, Any], by: str) -> str:
    columns = [by, *(name for name in COUNTERS if name != "costMicros"), "costUsd"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result["rows"])
    writer.writerow({by: "", **result["total"]})
    return out.getvalue()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.usage_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, help="the stage whose usage table to read (dev, staging, prod)")
    parser.add_argument("--month", required=True, help="YYYY-MM, UTC")
    parser.add_argument("--by", choices=tuple(KINDS), default="user")
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    parser.add_argument("--endpoint-url", help="DynamoDB's endpoint (a local stack's or moto's)")
    parser.add_argument("--region", help="the usage table's region (default: AWS_REGION, AWS_DEFAULT_REGION or the "
                                         "profile's)")
    args = parser.parse_args(argv)
    if not _MONTH.match(args.month):
        parser.error(f"--month {args.month!r} is not YYYY-MM")
    if not re.match(r"^[a-z][a-z0-9-]{0,30}$", args.stage):
        parser.error(f"--stage {args.stage!r} is not a stage name")
    return args


def main(argv: list[str] | None = None, *, dynamodb: Any = None) -> int:
    args = parse_args(argv)
    table = resources.table("usage").physical_name(args.stage)
    try:
        if dynamodb is None:
            import boto3

            dynamodb = boto3.client("dynamodb", endpoint_url=args.endpoint_url, region_name=args.region)
        result = report(month_items(dynamodb, table, args.month, args.by), args.by)
    except NoRegionError:
        print("usage_report: no AWS region: pass --region, or set AWS_REGION", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:
        print(f"usage_report: cannot read {table} (index {INDEX}): {error}", file=sys.stderr)
        return 1
    if args.format == "json":
        sys.stdout.write(json.dumps({"stage": args.stage, "month": args.month, "by": args.by, **result}, indent=2)
                         + "\n")
    else:
        sys.stdout.write(to_csv(result, args.by))
    return 0


if __name__ == "__main__":
    sys.exit(main())
