"""SQS event sources: batch size, partial batch failures, redelivery and the DLQ."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack import DrainTimeoutError, LocalStack


def _send(stack: LocalStack, *bodies: dict[str, Any]) -> None:
    sqs = stack.client("sqs")
    for body in bodies:
        sqs.send_message(
            QueueUrl=stack.resources["WorkQueue"],
            MessageBody=json.dumps(body),
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": "test"},
                "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
            },
        )


def _bodies(stack: LocalStack, queue_url: str) -> list[dict[str, Any]]:
    messages = stack.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def test_batches_never_exceed_batch_size(stack: LocalStack, results: Any) -> None:
    _send(stack, *({"id": f"m{i}"} for i in range(8)))

    counts = stack.drain()

    batches = [r["size"] for key, r in results().items() if key.startswith("batch#")]
    assert counts["WorkerFunction:Work"] == 8
    assert sum(batches) == 8
    assert max(batches) == 3  # BatchSize: 3


def test_partial_failures_are_redelivered_then_dead_lettered(stack: LocalStack, results: Any) -> None:
    _send(
        stack, {"id": "ok1"}, {"id": "bad1", "fail": True}, {"id": "ok2"}, {"id": "bad2", "fail": True}, {"id": "ok3"}
    )

    stack.drain()

    recorded = results()
    # Successful messages are processed exactly once, even though they shared batches with failures.
    assert [recorded[f"done#ok{i}"]["times"] for i in (1, 2, 3)] == [1, 1, 1]
    # Failed ones are received maxReceiveCount (2) times, then moved to the DLQ.
    assert recorded["failed#bad1"]["times"] == 2
    assert recorded["failed#bad2"]["times"] == 2
    assert recorded["failed#bad2"]["receive_count"] == "2"
    assert sorted(b["id"] for b in _bodies(stack, stack.resources["WorkDLQ"])) == ["bad1", "bad2"]
    assert _bodies(stack, stack.resources["WorkQueue"]) == []


def test_records_have_the_lambda_sqs_event_shape(stack: LocalStack, results: Any) -> None:
    _send(stack, {"id": "shape"})

    stack.drain()

    record = results()["done#shape"]["record"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:123456789012:devstack-test-work"
    assert record["awsRegion"] == "us-east-1"
    assert json.loads(record["body"]) == {"id": "shape"}
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["attributes"]["SentTimestamp"].isdigit()
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "test",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["blob"]["binaryValue"] == "AP8="
    assert len(record["md5OfBody"]) == 32
    assert record["messageId"]
    assert record["receiptHandle"]


def test_a_raising_handler_deletes_nothing(stack: LocalStack, results: Any, monkeypatch: Any) -> None:
    worker = stack.function("WorkerFunction")

    def broken(event: Any, context: Any) -> None:
        raise RuntimeError("down")

    monkeypatch.setattr(worker, "_handler", broken)
    _send(stack, {"id": "a"}, {"id": "b"})

    stack.drain()

    # Nothing was deleted by the poller: both were retried up to maxReceiveCount and dead-lettered.
    assert sorted(b["id"] for b in _bodies(stack, stack.resources["WorkDLQ"])) == ["a", "b"]


def test_drain_names_what_is_still_busy_when_time_runs_out(stack: LocalStack) -> None:
    stack.client("sqs").send_message(QueueUrl=stack.resources["WorkQueue"], MessageBody="{}", DelaySeconds=60)

    with pytest.raises(DrainTimeoutError, match=r"WorkerFunction:Work: 1 message\(s\)"):
        stack.drain(timeout=0.1)
