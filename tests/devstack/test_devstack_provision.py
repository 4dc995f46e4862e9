"""Provisioning: every resource of the template exists in moto as the template declares it."""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from devstack import LocalStack


def test_table_has_keys_index_stream_and_ttl(shared_stack: LocalStack) -> None:
    dynamodb = shared_stack.client("dynamodb")

    table = dynamodb.describe_table(TableName="devstack-test-items")["Table"]

    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["gsi1"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    ttl = dynamodb.describe_time_to_live(TableName="devstack-test-items")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    assert shared_stack.resources["EventsTable"] == "devstack-EventsTable"  # no TableName: stack-LogicalId


def test_queue_redrives_to_its_dlq(shared_stack: LocalStack) -> None:
    sqs = shared_stack.client("sqs")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=shared_stack.resources["WorkDLQ"], AttributeNames=["QueueArn"])

    attributes = sqs.get_queue_attributes(QueueUrl=shared_stack.resources["WorkQueue"], AttributeNames=["All"])[
        "Attributes"
    ]

    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
        "maxReceiveCount": 2,
    }
    assert attributes["VisibilityTimeout"] == "60"


def test_conditional_and_unmodelled_resources_are_left_out(shared_stack: LocalStack) -> None:
    assert "ProdOnlyQueue" not in shared_stack.resources
    assert "UnusedRole" not in shared_stack.resources
    assert "ProdQueueUrl" not in shared_stack.outputs
    urls = shared_stack.client("sqs").list_queues()["QueueUrls"]
    assert not [url for url in urls if "ProdOnly" in url]


def test_bucket_topic_and_outputs(shared_stack: LocalStack) -> None:
    shared_stack.client("s3").head_bucket(Bucket="devstack-test-uploads")
    topics = [t["TopicArn"] for t in shared_stack.client("sns").list_topics()["Topics"]]

    assert shared_stack.resources["NotifyTopic"] in topics
    assert shared_stack.outputs == {
        "ApiUrl": f"https://{shared_stack.resources['FixtureApi']}.execute-api.us-east-1.amazonaws.com",
        "WorkQueueUrl": shared_stack.resources["WorkQueue"],
        "FlowArn": shared_stack.resources["FlowStateMachine"],
    }


def test_state_machine_definition_has_substitutions_resolved(shared_stack: LocalStack) -> None:
    described = shared_stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=shared_stack.resources["FlowStateMachine"]
    )
    definition = json.loads(described["definition"])

    assert "${" not in described["definition"]
    assert definition["States"]["Double"]["Parameters"]["FunctionName"] == (
        "arn:aws:lambda:us-east-1:123456789012:function:devstack-test-steps"
    )
    assert definition["States"]["Save"]["Parameters"]["TableName"] == "devstack-test-results"


def test_environment_is_the_functions_variables_plus_local_settings(shared_stack: LocalStack) -> None:
    assert shared_stack.env == {
        "STAGE": "test",
        "RESULTS_TABLE": "devstack-test-results",
        "WORK_QUEUE_URL": shared_stack.resources["WorkQueue"],
    }
    assert os.environ["RESULTS_TABLE"] == "devstack-test-results"
    assert os.environ["POWERTOOLS_METRICS_DISABLED"] == "true"
    assert os.environ["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"


def test_lambda_invoke_runs_the_handler_in_process(shared_stack: LocalStack) -> None:
    lambda_ = shared_stack.client("lambda")

    ok = lambda_.invoke(FunctionName="devstack-test-steps", Payload=json.dumps({"action": "square", "value": 7}))
    failed = lambda_.invoke(
        FunctionName="arn:aws:lambda:us-east-1:123456789012:function:devstack-test-steps",
        Payload=json.dumps({"action": "unknown"}),
    )

    assert json.loads(ok["Payload"].read()) == 49
    assert "FunctionError" not in ok
    assert failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "unknown action unknown"
    assert "steps/app.py" in error["stackTrace"][0]


def test_invoke_by_logical_id_or_name_with_a_lambda_context(shared_stack: LocalStack) -> None:
    assert shared_stack.invoke("StepFunction", {"action": "square", "value": 3}) == 9
    assert shared_stack.invoke("devstack-test-steps", {"action": "double", "value": 2, "items": []}) == {
        "value": 4,
        "items": [],
    }
    with pytest.raises(Exception, match="unknown action") as raised:
        shared_stack.invoke("StepFunction", {"action": "nope"})
    assert type(raised.value).__name__ == "ValueError"

    function = shared_stack.function("HttpFunction")
    context = function.context()
    assert context.function_name == "devstack-HttpFunction"
    assert context.invoked_function_arn.endswith(":function:devstack-HttpFunction")
    assert context.memory_limit_in_mb == 256
    assert 9000 < context.get_remaining_time_in_millis() <= 10000
    assert context.log_group_name == "/aws/lambda/devstack-HttpFunction"
    assert context.aws_request_id != function.context().aws_request_id


def test_functions_sharing_a_handler_file_name_stay_apart(shared_stack: LocalStack) -> None:
    # Every fixture function is app.py; each must run its own.
    assert shared_stack.invoke("HttpFunction", {"tick": True}) == {"ticked": True}
    assert shared_stack.invoke("StepFunction", {"action": "square", "value": 2}) == 4


def test_handlers_find_an_event_loop_as_on_lambda(shared_stack: LocalStack) -> None:
    asyncio.run(asyncio.sleep(0))  # leaves the main thread without a current event loop

    in_main_thread = shared_stack.invoke("StepFunction", {"action": "async"})
    with ThreadPoolExecutor(1) as pool:
        in_worker_thread = pool.submit(shared_stack.invoke, "StepFunction", {"action": "async"}).result()

    assert in_main_thread == in_worker_thread == "ran"
