"""EventBridge rules with SQS targets: events put on the bus reach the queues whose rule pattern matches."""

from __future__ import annotations

import json
from pathlib import Path

from devstack.testing import local_stack

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Bus:
    Type: AWS::Events::EventBus
    Properties:
      Name: rules-test-bus
  Inbox:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: rules-test-inbox
  Rule:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !Ref Bus
      EventPattern:
        source:
          - prefix: audience.
      Targets:
        - Id: Inbox
          Arn: !GetAtt Inbox.Arn
Outputs:
  RuleArn:
    Value: !GetAtt Rule.Arn
"""


def test_matching_events_reach_the_rules_queue_and_others_do_not(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    with local_stack(path) as stack:
        events, sqs = stack.client("events"), stack.client("sqs")
        for source in ("audience.contacts", "somebody.else"):
            events.put_events(
                Entries=[
                    {"EventBusName": "rules-test-bus", "Source": source, "DetailType": "t", "Detail": json.dumps({})}
                ]
            )
        got = sqs.receive_message(QueueUrl=stack.resources["Inbox"], MaxNumberOfMessages=10)["Messages"]
        assert [json.loads(m["Body"])["source"] for m in got] == ["audience.contacts"]
        assert stack.outputs["RuleArn"] == "arn:aws:events:us-east-1:123456789012:rule/rules-test-bus/devstack-Rule"
