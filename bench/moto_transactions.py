"""The local stack's DynamoDB: a TransactWriteItems as the table grows, moto as shipped against moto_atomic.py.

moto rolls a failed transaction back from a deep copy of every table it touches, taken before each
transaction, so its cost grows with the tables; devserver/moto_atomic.py saves the items the
transaction names instead. Starts both servers, fills one table of each to 10, 1,000 and 3,000
items (~300 bytes each, as a chat's record), and times a two-item transaction (an update and a put:
the shape of a chat's record and its alias) and, for scale, an UpdateItem. Medians of `--calls`.

Usage: .venv/bin/python -m bench.moto_transactions [--calls 30]
"""
from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devserver import aws as dev_aws  # noqa: E402

SIZES = (10, 1000, 3000)


class ShippedMoto(dev_aws.MotoServer):
    """moto's own server, without the local stack's patches."""

    def __init__(self, *, listener: socket.socket, log_path: Path) -> None:
        super().__init__(listener=listener, log_path=log_path)
        self._args = [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]


def client(url: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local")


def median_ms(call: Callable[[], Any], calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(url: str, calls: int) -> dict[int, tuple[float, float]]:
    """{table size: (transaction ms, UpdateItem ms)}."""
    dynamodb = client(url)
    dynamodb.create_table(TableName="bench", BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "requestId", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "requestId", "AttributeType": "S"}])
    transaction = [
        {"Update": {"TableName": "bench", "Key": {"requestId": {"S": "counter"}}, "UpdateExpression": "ADD n :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        {"Put": {"TableName": "bench", "Item": {"requestId": {"S": "alias"}, "target": {"S": "x" * 40}}}},
    ]
    figures: dict[int, tuple[float, float]] = {}
    stored = 0
    for size in SIZES:
        while stored < size:
            dynamodb.put_item(TableName="bench", Item={
                "requestId": {"S": f"record-{stored:06}"}, "status": {"S": "done"}, "model": {"S": "m" * 40},
                "createdAt": {"S": "2026-11-30T00:00:00Z"}, "usage": {"M": {"inputTokens": {"N": "1000"},
                                                                          "outputTokens": {"N": "500"}}},
                "body": {"S": "x" * 160}})
            stored += 1
        figures[size] = (
            median_ms(lambda: dynamodb.transact_write_items(TransactItems=transaction), calls),
            median_ms(lambda: dynamodb.update_item(TableName="bench", Key={"requestId": {"S": "counter"}},
                                                   UpdateExpression="ADD n :one",
                                                   ExpressionAttributeValues={":one": {"N": "1"}}), calls))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.moto_transactions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-moto-") as tmp:
        servers = {"moto_atomic.py": dev_aws.MotoServer(listener=dev_aws.listen(), log_path=Path(tmp, "atomic.log")),
                   "moto as shipped": ShippedMoto(listener=dev_aws.listen(), log_path=Path(tmp, "moto.log"))}
        results = {}
        try:
            for name, server in servers.items():
                server.start()
                results[name] = measure(server.url, args.calls)
        finally:
            for server in servers.values():
                server.stop()
    ours, shipped = results["moto_atomic.py"], results["moto as shipped"]
    print(f"\nDynamoDB in the local stack, medians of {args.calls} calls (ms)")
    print(f"{'items in the table':>18} {'transaction, ours':>18} {'as shipped':>11} {'ratio':>6} "
          f"{'UpdateItem, ours':>17} {'as shipped':>11}")
    for size in SIZES:
        print(f"{size:>18,} {ours[size][0]:>18.1f} {shipped[size][0]:>11.1f} {ours[size][0] / shipped[size][0]:>6.2f} "
              f"{ours[size][1]:>17.1f} {shipped[size][1]:>11.1f}")


if __name__ == "__main__":
    main()
