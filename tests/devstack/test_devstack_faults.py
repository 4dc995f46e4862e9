"""Fault injection: each kind of fault happens where the plan says, is counted, stays under the per-item cap
and is reproducible from the seed; Step Functions retries a lambda:invoke task that failed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devstack import LocalStack
from devstack.faults import FaultPlan
from devstack.testing import local_stack
from tests.devstack.conftest import FIXTURE_TEMPLATE


@pytest.fixture
def roomy(stack: LocalStack) -> Iterator[LocalStack]:
    """The fixture stack; faults are switched off again after the test."""
    yield stack
    stack.inject_faults(None)


def _send(stack: LocalStack, *ids: str) -> None:
    sqs = stack.client("sqs")
    for item in ids:
        sqs.send_message(QueueUrl=stack.resources["WorkQueue"], MessageBody=json.dumps({"id": item}))


def _dead(stack: LocalStack, queue: str) -> int:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.resources[queue], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_raise_before_fails_the_batch_unprocessed_and_sqs_redelivers_it(roomy: LocalStack, results: Any) -> None:
    faults = roomy.inject_faults(FaultPlan(seed=1, raise_before=1.0, max_per_item=1))
    _send(roomy, "a", "b", "c")

    roomy.drain()

    recorded = results()
    # The failed attempt ran nothing; the redelivery ran each message once.
    assert [recorded[f"done#{i}"]["times"] for i in "abc"] == [1, 1, 1]
    assert {recorded[f"done#{i}"]["record"]["attributes"]["ApproximateReceiveCount"] for i in "abc"} == {"2"}
    assert faults.summary()["raise_before"]["WorkerFunction"] >= 1
    assert faults.total == sum(faults.by_kind().values())
    assert _dead(roomy, "WorkDLQ") == 0


def test_raise_after_runs_the_handler_then_fails_so_the_work_is_done_twice(roomy: LocalStack, results: Any) -> None:
    faults = roomy.inject_faults(FaultPlan(seed=1, raise_after=1.0, max_per_item=1))
    _send(roomy, "a", "b", "c")

    roomy.drain()

    recorded = results()
    assert [recorded[f"done#{i}"]["times"] for i in "abc"] == [2, 2, 2]
    assert faults.summary()["raise_after"]["WorkerFunction"] >= 1
    assert faults.by_kind()["raise_before"] == 0


def test_a_duplicate_is_the_same_message_delivered_again(roomy: LocalStack, results: Any) -> None:
    faults = roomy.inject_faults(FaultPlan(seed=1, sqs_duplicate=1.0, max_per_item=1))
    _send(roomy, "a", "b")

    roomy.drain()

    recorded = results()
    assert [recorded[f"done#{i}"]["times"] for i in "ab"] == [2, 2]
    for item in "ab":
        record = recorded[f"done#{item}"]["record"]
        assert record["attributes"]["ApproximateReceiveCount"] == "2"  # the same message, received again
    assert faults.summary()["sqs_duplicate"] == {"WorkerFunction": 2}
    assert roomy.client("sqs").receive_message(QueueUrl=roomy.resources["WorkQueue"]).get("Messages", []) == []


def test_a_late_message_arrives_after_later_ones_and_drain_waits_for_it(roomy: LocalStack, results: Any) -> None:
    faults = roomy.inject_faults(FaultPlan(seed=1, sqs_late=1.0, max_per_item=1, late_seconds=1))
    _send(roomy, "early")
    poller = next(p for p in roomy.pollers if p.name == "WorkerFunction:Work")
    assert poller.poll().records == 0  # received, put back unprocessed
    assert poller.pending() is not None  # still in flight
    roomy.inject_faults(None)
    _send(roomy, "later")
    assert poller.poll().records == 1  # the later message goes first

    roomy.drain()

    recorded = results()
    assert recorded["done#later"]["times"] == 1
    assert recorded["done#early"]["times"] == 1
    assert faults.summary()["sqs_late"] == {"WorkerFunction": 1}


def test_stream_batches_fail_then_are_retried_within_maximum_retry_attempts(roomy: LocalStack, results: Any) -> None:
    faults = roomy.inject_faults(FaultPlan(seed=3, raise_before=1.0, max_per_item=2))
    for n in range(4):
        roomy.client("dynamodb").put_item(
            TableName="devstack-test-items", Item={"pk": {"S": f"i{n}"}, "sk": {"S": "v"}}
        )

    roomy.drain()

    recorded = results()
    # Two injected failures per record at most (MaximumRetryAttempts 2): delivered once, nothing given up.
    assert [recorded[f"delivery#i{n}#INSERT"]["times"] for n in range(4)] == [1, 1, 1, 1]
    assert faults.summary()["raise_before"]["StreamFunction"] == 2
    assert _dead(roomy, "StreamFailures") == 0


def test_http_requests_answer_500_until_the_cap_and_other_functions_are_spared(roomy: LocalStack) -> None:
    faults = roomy.inject_faults(FaultPlan(seed=1, raise_before=1.0, functions=frozenset({"HttpFunction"})))
    http = TestClient(roomy.http_app)

    statuses = [http.get("/items/7").status_code for _ in range(4)]
    other = [http.get("/items/8").status_code for _ in range(3)]
    _send(roomy, "q")
    roomy.drain()

    assert statuses == [500, 500, 200, 200]  # max_per_item 2 for one request (method, path, body)
    assert other == [500, 500, 200]
    assert faults.summary()["raise_before"] == {"HttpFunction": 4}  # WorkerFunction not targeted


def test_the_per_item_cap_holds_for_every_message() -> None:
    with local_stack(FIXTURE_TEMPLATE, parameters={"MaxReceives": 5}) as stack:
        faults = stack.inject_faults(FaultPlan(seed=5, raise_before=1.0, raise_after=1.0, max_per_item=2))
        _send(stack, *(f"m{n}" for n in range(6)))

        stack.drain()

        items = stack.client("dynamodb").scan(TableName=stack.resources["ResultsTable"])["Items"]
        done = {i["pk"]["S"]: i for i in items if i["pk"]["S"].startswith("done#")}
        receives = {
            key: json.loads(i["data"]["S"])["record"]["attributes"]["ApproximateReceiveCount"]
            for key, i in done.items()
        }
        assert len(done) == 6
        # At most two injected failures per message: every one was finished by its third receive at the latest.
        assert all(int(count) <= 3 for count in receives.values()), receives
        assert faults.total >= 2
        assert _dead(stack, "WorkDLQ") == 0


def _http_run(stack: LocalStack, seed: int) -> tuple[list[int], dict[str, dict[str, int]]]:
    faults = stack.inject_faults(FaultPlan(seed=seed, raise_before=0.3, raise_after=0.2))
    http = TestClient(stack.http_app)
    statuses = [http.get(f"/items/{n}").status_code for n in range(30)]
    return statuses, faults.summary()


def test_the_same_seed_gives_the_same_faults(roomy: LocalStack) -> None:
    first = _http_run(roomy, 11)
    again = _http_run(roomy, 11)
    other = _http_run(roomy, 12)

    assert first == again
    assert 500 in first[0]
    assert other[0] != first[0]


RETRYING = {
    "StartAt": "Double",
    "States": {
        "Double": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": None, "Payload": {"action": "double", "value.$": "$.value", "items": []}},
            "OutputPath": "$.Payload",
            # The shape of statemachines/*.asl.yaml's Retry blocks.
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2}],
            "End": True,
        }
    },
}


def test_step_functions_retries_a_lambda_invoke_task_that_raised(roomy: LocalStack) -> None:
    definition = json.loads(json.dumps(RETRYING))
    definition["States"]["Double"]["Parameters"]["FunctionName"] = roomy.function("StepFunction").spec.arn
    sfn = roomy.client("stepfunctions")
    role = roomy.client("iam").get_role(RoleName="devstack-execution-role")["Role"]["Arn"]
    machine = sfn.create_state_machine(name="retrying", definition=json.dumps(definition), roleArn=role)
    faults = roomy.inject_faults(
        FaultPlan(seed=1, raise_before=1.0, raise_after=1.0, functions=frozenset({"StepFunction"}))
    )

    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input=json.dumps({"value": 21}))
    deadline = time.monotonic() + 60
    while (status := sfn.describe_execution(executionArn=execution["executionArn"]))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution still running"
        time.sleep(0.1)

    events = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
    kinds = [e["type"] for e in events]
    assert status["status"] == "SUCCEEDED", kinds
    assert json.loads(status["output"])["value"] == 42
    # Two attempts failed (the cap of two per task input), the third succeeded.
    assert kinds.count("TaskScheduled") == 3
    assert kinds.count("TaskFailed") == 2
    failed = [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]
    assert {f["error"] for f in failed} == {"InjectedFault"}
    assert sum(faults.by_kind().values()) == 2
