"""Step Functions: moto runs the definition, and its Lambda tasks reach the handlers in-process."""

from __future__ import annotations

import json
from typing import Any

from devstack import LocalStack


def test_wait_invoke_map_and_a_caught_named_error(stack: LocalStack, results: Any) -> None:
    sfn = stack.client("stepfunctions")
    arn = stack.resources["FlowStateMachine"]
    # Both run at once, so the 1 s Wait and the 1 s retry interval overlap.
    happy = sfn.start_execution(
        stateMachineArn=arn, name="happy", input=json.dumps({"mode": "calc", "value": 5, "items": [1, 2, 3]})
    )
    flaky = sfn.start_execution(stateMachineArn=arn, name="flaky", input=json.dumps({"mode": "flaky"}))

    stack.drain(timeout=10)

    done = sfn.describe_execution(executionArn=happy["executionArn"])
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"]) == {"value": 10, "items": [1, 2, 3], "squares": [1, 4, 9]}
    total = stack.client("dynamodb").get_item(TableName="devstack-test-results", Key={"pk": {"S": "happy"}})
    assert total["Item"]["total"] == {"N": "10"}  # written by the direct DynamoDB integration

    recovered = sfn.describe_execution(executionArn=flaky["executionArn"])
    assert recovered["status"] == "SUCCEEDED"
    error = json.loads(recovered["output"])["error"]
    assert error["Error"] == "NotReadyError"
    assert json.loads(error["Cause"])["errorMessage"] == "not ready yet"
    assert results()["flaky#flaky"]["times"] == 2  # the first attempt and one Retry, then the Catch
