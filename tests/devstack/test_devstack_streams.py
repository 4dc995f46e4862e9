"""DynamoDB Streams event sources: record shape, partial failures, bisection and OnFailure destinations."""

from __future__ import annotations

import json
from typing import Any

from devstack import LocalStack


def _failures(stack: LocalStack, queue_url: str) -> list[dict[str, Any]]:
    messages = stack.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def test_insert_modify_remove_reach_the_consumer_with_their_images(stack: LocalStack, results: Any) -> None:
    dynamodb = stack.client("dynamodb")
    table = "devstack-test-items"
    key = {"pk": {"S": "item1"}, "sk": {"S": "v"}}
    dynamodb.put_item(TableName=table, Item={**key, "colour": {"S": "red"}, "raw": {"B": b"\x01\x02"}})
    dynamodb.put_item(TableName=table, Item={**key, "colour": {"S": "blue"}})
    dynamodb.delete_item(TableName=table, Key=key)

    counts = stack.drain()

    recorded = results()
    insert = recorded["delivery#item1#INSERT"]["record"]
    modify = recorded["delivery#item1#MODIFY"]["record"]
    remove = recorded["delivery#item1#REMOVE"]["record"]
    assert counts["StreamFunction:ItemChanges"] == 3
    assert insert["dynamodb"]["Keys"] == key
    assert insert["dynamodb"]["NewImage"]["raw"] == {"B": "AQI="}  # base64, as Lambda sends binary
    assert "OldImage" not in insert["dynamodb"]
    assert modify["dynamodb"]["OldImage"]["colour"] == {"S": "red"}
    assert modify["dynamodb"]["NewImage"]["colour"] == {"S": "blue"}
    assert remove["dynamodb"]["OldImage"]["colour"] == {"S": "blue"}
    assert "NewImage" not in remove["dynamodb"]
    assert insert["eventSource"] == "aws:dynamodb"
    assert insert["awsRegion"] == "us-east-1"
    assert insert["eventSourceARN"] == stack.template.get_att("ItemsTable", "StreamArn")
    assert insert["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert isinstance(insert["dynamodb"]["ApproximateCreationDateTime"], int)
    assert int(insert["dynamodb"]["SequenceNumber"]) < int(modify["dynamodb"]["SequenceNumber"])
    assert len({insert["eventID"], modify["eventID"], remove["eventID"]}) == 3


def test_records_are_read_once_across_drains(stack: LocalStack, results: Any) -> None:
    dynamodb = stack.client("dynamodb")
    dynamodb.put_item(TableName="devstack-test-items", Item={"pk": {"S": "first"}, "sk": {"S": "v"}})
    stack.drain()

    dynamodb.put_item(TableName="devstack-test-items", Item={"pk": {"S": "second"}, "sk": {"S": "v"}})
    counts = stack.drain()

    assert counts["StreamFunction:ItemChanges"] == 1
    assert results()["delivery#first#INSERT"]["times"] == 1


def test_partial_failure_retries_from_the_failed_record_then_goes_to_on_failure(
    stack: LocalStack, results: Any
) -> None:
    dynamodb = stack.client("dynamodb")
    for name, fail in (("a", False), ("b", True), ("c", False)):
        dynamodb.put_item(
            TableName="devstack-test-items", Item={"pk": {"S": name}, "sk": {"S": "v"}, "fail": {"BOOL": fail}}
        )

    stack.drain()

    recorded = results()
    # a precedes the failed record, so it is checkpointed after the first attempt;
    # b and c are retried MaximumRetryAttempts (2) times: three invocations each.
    assert recorded["delivery#a#INSERT"]["times"] == 1
    assert recorded["delivery#b#INSERT"]["times"] == 3
    assert recorded["delivery#c#INSERT"]["times"] == 3
    [failure] = _failures(stack, stack.resources["StreamFailures"])
    b_sequence = recorded["delivery#b#INSERT"]["record"]["dynamodb"]["SequenceNumber"]
    c_sequence = recorded["delivery#c#INSERT"]["record"]["dynamodb"]["SequenceNumber"]
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["requestContext"]["functionArn"].endswith(":function:devstack-StreamFunction")
    assert failure["DDBStreamBatchInfo"]["startSequenceNumber"] == b_sequence
    assert failure["DDBStreamBatchInfo"]["endSequenceNumber"] == c_sequence
    assert failure["DDBStreamBatchInfo"]["batchSize"] == 2
    assert failure["DDBStreamBatchInfo"]["streamArn"] == stack.template.get_att("ItemsTable", "StreamArn")
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in failure["records"]] == ["b", "c"]


def test_a_raising_handler_is_bisected_down_to_the_poisoned_record(stack: LocalStack, results: Any) -> None:
    dynamodb = stack.client("dynamodb")
    table = stack.resources["EventsTable"]
    for name in ("e1", "e2", "e3", "e4"):
        item = {"pk": {"S": name}}
        if name == "e3":
            item["poison"] = {"BOOL": True}
        dynamodb.put_item(TableName=table, Item=item)

    stack.drain()

    recorded = results()
    assert {key for key in recorded if key.startswith("processed#")} == {"processed#e1", "processed#e2", "processed#e4"}
    # The full batch, then halves, then e3 alone: once, plus MaximumRetryAttempts (1) retry.
    assert recorded["attempt#e1+e2+e3+e4"]["times"] == 1
    assert recorded["attempt#e3+e4"]["times"] == 1
    assert recorded["attempt#e3"]["times"] == 2
    [failure] = _failures(stack, stack.resources["BisectFailures"])
    assert failure["DDBStreamBatchInfo"]["batchSize"] == 1
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in failure["records"]] == ["e3"]


def test_records_after_a_cancelled_transaction_still_arrive(stack: LocalStack, results: Any) -> None:
    """A cancelled TransactWriteItems leaves no record, and the stream keeps flowing after it."""
    dynamodb = stack.client("dynamodb")
    table = "devstack-test-items"
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "before"}, "sk": {"S": "v"}})
    stack.drain()
    try:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": "cancelled"}, "sk": {"S": "v"}}}},
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"pk": {"S": "before"}, "sk": {"S": "v"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    except dynamodb.exceptions.TransactionCanceledException:
        pass
    else:
        raise AssertionError("the transaction should have been cancelled")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "after"}, "sk": {"S": "v"}})

    counts = stack.drain()

    assert counts["StreamFunction:ItemChanges"] == 1
    recorded = results()
    assert "delivery#after#INSERT" in recorded
    assert "delivery#cancelled#INSERT" not in recorded
