"""The application's own template.yaml provisions completely: every table and queue, as declared."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack import LocalStack
from devstack.template import load_yaml
from devstack.testing import local_stack

ROOT = Path(__file__).resolve().parents[2]
RESOURCES: dict[str, Any] = load_yaml(ROOT / "template.yaml")["Resources"]


def _of_type(kind: str) -> dict[str, Any]:
    return {name: body.get("Properties") or {} for name, body in RESOURCES.items() if body["Type"] == kind}


@pytest.fixture(scope="module")
def app_stack() -> Iterator[LocalStack]:
    with local_stack(ROOT / "template.yaml") as stack:
        yield stack


@pytest.mark.parametrize("logical_id", sorted(_of_type("AWS::DynamoDB::Table")))
def test_every_table_exists_with_its_keys_indexes_stream_and_ttl(app_stack: LocalStack, logical_id: str) -> None:
    declared = _of_type("AWS::DynamoDB::Table")[logical_id]
    dynamodb = boto3.client("dynamodb")
    name = app_stack.resources[logical_id]

    table = dynamodb.describe_table(TableName=name)["Table"]

    assert table["KeySchema"] == declared["KeySchema"]
    assert sorted(i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])) == sorted(
        i["IndexName"] for i in declared.get("GlobalSecondaryIndexes", [])
    )
    if "StreamSpecification" in declared:
        assert table["StreamSpecification"]["StreamViewType"] == declared["StreamSpecification"]["StreamViewType"]
        assert table["LatestStreamArn"]
    if "TimeToLiveSpecification" in declared:
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert ttl["AttributeName"] == declared["TimeToLiveSpecification"]["AttributeName"]


@pytest.mark.parametrize("logical_id", sorted(_of_type("AWS::SQS::Queue")))
def test_every_queue_exists_with_its_dead_letter_queue(app_stack: LocalStack, logical_id: str) -> None:
    declared = _of_type("AWS::SQS::Queue")[logical_id]
    sqs = boto3.client("sqs")

    attributes = sqs.get_queue_attributes(QueueUrl=app_stack.resources[logical_id], AttributeNames=["All"])[
        "Attributes"
    ]

    if "RedrivePolicy" in declared:
        dlq_id = declared["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        dlq = sqs.get_queue_attributes(QueueUrl=app_stack.resources[dlq_id], AttributeNames=["QueueArn"])
        policy = json.loads(attributes["RedrivePolicy"])
        assert policy["deadLetterTargetArn"] == dlq["Attributes"]["QueueArn"]
        assert str(policy["maxReceiveCount"]) == str(declared["RedrivePolicy"]["maxReceiveCount"])


def test_every_event_source_has_a_poller_and_every_function_its_environment(app_stack: LocalStack) -> None:
    expected_sources = {
        f"{name}:{event}"
        for name, props in _of_type("AWS::Serverless::Function").items()
        for event, spec in (props.get("Events") or {}).items()
        if spec["Type"] in ("SQS", "DynamoDB")
    }

    assert {poller.name for poller in app_stack.pollers} == expected_sources
    for name in _of_type("AWS::Serverless::Function"):
        assert app_stack.function(name).spec.environment.items() <= app_stack.env.items()


def test_every_output_resolves(app_stack: LocalStack) -> None:
    outputs = load_yaml(ROOT / "template.yaml").get("Outputs") or {}

    assert {name for name, output in outputs.items() if "Condition" not in output} <= set(app_stack.outputs)
