"""The local stack's DynamoDB (devserver/moto_atomic.py) rolls a failed TransactWriteItems back
from copies of the items it names, not of whole tables: every write of a cancelled transaction
is undone, in tables with and without a sort key, and nothing else is touched."""
from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError


@pytest.fixture(scope="module")
def tables(dynamodb):
    """(a table keyed pk+sk, a table keyed by pk alone), each with unrelated items beside the test's."""
    names = (f"tx-sorted-{uuid.uuid4().hex[:8]}", f"tx-hash-{uuid.uuid4().hex[:8]}")
    dynamodb.create_table(TableName=names[0], BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                     {"AttributeName": "sk", "KeyType": "RANGE"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                {"AttributeName": "sk", "AttributeType": "S"}])
    dynamodb.create_table(TableName=names[1], BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    for n in range(50):
        dynamodb.put_item(TableName=names[0], Item={"pk": {"S": "other"}, "sk": {"S": f"{n:03}"}, "n": {"N": "1"}})
        dynamodb.put_item(TableName=names[1], Item={"pk": {"S": f"other-{n}"}, "n": {"N": "1"}})
    yield names
    for name in names:
        dynamodb.delete_table(TableName=name)


def _everything(dynamodb, name):
    items = dynamodb.scan(TableName=name, ConsistentRead=True)["Items"]
    return sorted(items, key=lambda item: (item["pk"]["S"], item.get("sk", {}).get("S", "")))


def _writes(sorted_table, hash_table, tag):
    """An update of an existing item, a put of a new one, a delete, a put over an existing item, an update
    that creates its item: every kind of write, in both tables."""
    return [
        {"Update": {"TableName": sorted_table, "Key": {"pk": {"S": tag}, "sk": {"S": "counter"}},
                    "UpdateExpression": "ADD n :one SET payload = :payload",
                    "ExpressionAttributeValues": {":one": {"N": "1"}, ":payload": {"B": b"\x00changed"}}}},
        {"Put": {"TableName": sorted_table, "Item": {"pk": {"S": tag}, "sk": {"S": "new"}, "n": {"N": "7"}}}},
        {"Delete": {"TableName": sorted_table, "Key": {"pk": {"S": tag}, "sk": {"S": "doomed"}}}},
        {"Put": {"TableName": hash_table, "Item": {"pk": {"S": f"{tag}-record"}, "status": {"S": "replaced"}}}},
        {"Update": {"TableName": hash_table, "Key": {"pk": {"S": f"{tag}-created"}},
                    "UpdateExpression": "SET n = :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}},
    ]


def _seed(dynamodb, sorted_table, hash_table, tag):
    dynamodb.put_item(TableName=sorted_table, Item={"pk": {"S": tag}, "sk": {"S": "counter"}, "n": {"N": "1"},
                                                    "payload": {"B": b"\x00\xffbytes"}, "m": {"M": {"a": {"L": [
                                                        {"N": "1"}, {"S": "x"}]}}}})
    dynamodb.put_item(TableName=sorted_table, Item={"pk": {"S": tag}, "sk": {"S": "doomed"}, "n": {"N": "3"}})
    dynamodb.put_item(TableName=hash_table, Item={"pk": {"S": f"{tag}-record"}, "status": {"S": "queued"}})


def test_a_cancelled_transaction_leaves_both_tables_exactly_as_they_were(dynamodb, tables):
    sorted_table, hash_table = tables
    tag = uuid.uuid4().hex
    _seed(dynamodb, sorted_table, hash_table, tag)
    before = [_everything(dynamodb, name) for name in tables]
    failing = {"ConditionCheck": {"TableName": hash_table, "Key": {"pk": {"S": f"{tag}-record"}},
                                  "ConditionExpression": "#s = :never", "ExpressionAttributeNames": {"#s": "status"},
                                  "ExpressionAttributeValues": {":never": {"S": "never"}}}}
    # The failing check last: every write before it was applied, then undone.
    items = _writes(sorted_table, hash_table, tag)
    items[3] = failing  # the hash table's record is checked instead of replaced
    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(TransactItems=items)
    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"
    reasons = [reason["Code"] for reason in refused.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "None", "ConditionalCheckFailed", "None"]
    assert [_everything(dynamodb, name) for name in tables] == before


def test_a_transaction_naming_one_key_twice_writes_nothing(dynamodb, tables):
    sorted_table, hash_table = tables
    tag = uuid.uuid4().hex
    _seed(dynamodb, sorted_table, hash_table, tag)
    before = [_everything(dynamodb, name) for name in tables]
    items = _writes(sorted_table, hash_table, tag)
    items.append({"Delete": {"TableName": sorted_table, "Key": {"pk": {"S": tag}, "sk": {"S": "counter"}}}})
    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(TransactItems=items)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert [_everything(dynamodb, name) for name in tables] == before


def test_a_transaction_that_succeeds_applies_every_write(dynamodb, tables):
    sorted_table, hash_table = tables
    tag = uuid.uuid4().hex
    _seed(dynamodb, sorted_table, hash_table, tag)
    dynamodb.transact_write_items(TransactItems=_writes(sorted_table, hash_table, tag))

    def get(name, **key):
        return dynamodb.get_item(TableName=name, Key={k: {"S": v} for k, v in key.items()},
                                 ConsistentRead=True).get("Item")

    counter = get(sorted_table, pk=tag, sk="counter")
    assert counter["n"] == {"N": "2"} and counter["payload"] == {"B": b"\x00changed"}
    assert get(sorted_table, pk=tag, sk="new")["n"] == {"N": "7"}
    assert get(sorted_table, pk=tag, sk="doomed") is None
    assert get(hash_table, pk=f"{tag}-record")["status"] == {"S": "replaced"}
    assert get(hash_table, pk=f"{tag}-created")["n"] == {"N": "1"}
    # The unrelated items are as they were.
    others = [item for item in _everything(dynamodb, sorted_table) if item["pk"]["S"] == "other"]
    assert len(others) == 50 and all(item["n"] == {"N": "1"} for item in others)
