"""Template reading: short tags, parameters, conditions, Globals and intrinsic functions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devstack.template import Template, TemplateError, load_yaml

TEMPLATE = """
Parameters:
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Names: {Type: CommaDelimitedList, Default: "a,b,c"}
Mappings:
  Sizes:
    dev: {memory: 128}
    prod: {memory: 1024}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
Globals:
  Function:
    Timeout: 5
    Layers: [!Ref Lib]
    Environment:
      Variables:
        STAGE: !Ref Stage
        SHARED: global
Resources:
  Lib:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: lib/}
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "app-${Stage}-queue"
  ProdTopic:
    Type: AWS::SNS::Topic
    Condition: IsProd
  Role:
    Type: AWS::IAM::Role
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Timeout: 9
      MemorySize: !FindInMap [Sizes, !Ref Stage, memory]
      Layers: [arn:aws:lambda:us-east-1:017000801446:layer:Powertools:1]
      Environment:
        Variables:
          SHARED: local
          QUEUE_NAME: !GetAtt Queue.QueueName
          LONG: {"Fn::Sub": ["${Prefix}-${AWS::Region}-${Queue.Arn}-${!Literal}", {Prefix: p}]}
          JOINED: !Join ["/", [!Select [1, !Ref Names], !Select [0, !Split [",", "x,y"]]]]
          CHOSEN: !If [IsProd, big, small]
          GONE: !If [IsDev, !Ref "AWS::NoValue", here]
          SELF: !Sub "${AWS::StackName}/${AWS::AccountId}/${AWS::Partition}/${AWS::URLSuffix}"
Outputs:
  QueueUrl: {Value: !Ref Queue}
  RoleArn: {Value: !GetAtt Role.Arn}
  TopicArn: {Condition: IsProd, Value: !Ref ProdTopic}
"""


@pytest.fixture
def template_file(tmp_path: Path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(TEMPLATE))
    return path


def test_short_tags_become_long_forms_and_dates_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text('Version: 2010-09-09\nA: !GetAtt Table.StreamArn\nB: !Ref X\nC: !Sub ["${A}", {A: 1}]\n')

    document = load_yaml(path)

    assert document == {
        "Version": "2010-09-09",
        "A": {"Fn::GetAtt": ["Table", "StreamArn"]},
        "B": {"Ref": "X"},
        "C": {"Fn::Sub": ["${A}", {"A": 1}]},
    }


def test_function_gets_globals_parameters_and_resolved_intrinsics(template_file: Path) -> None:
    template = Template.load(template_file, stack_name="app")

    function = template.function("Fn")

    assert function.name == "app-Fn"
    assert function.arn == "arn:aws:lambda:us-east-1:123456789012:function:app-Fn"
    assert function.timeout == 9
    assert function.memory_size == 128
    assert function.code_dir == template_file.parent / "src"
    assert function.layer_dirs == [template_file.parent / "lib"]  # the public Powertools ARN has no local folder
    assert function.environment == {
        "STAGE": "dev",
        "SHARED": "local",
        "QUEUE_NAME": "app-dev-queue",
        "LONG": "p-us-east-1-arn:aws:sqs:us-east-1:123456789012:app-dev-queue-${Literal}",
        "JOINED": "b/x",
        "CHOSEN": "small",
        "SELF": "app/123456789012/aws/amazonaws.com",
    }


def test_parameter_overrides_and_conditions(template_file: Path) -> None:
    template = Template.load(template_file, {"Stage": "prod"})

    assert "ProdTopic" in template.resources
    assert template.function("Fn").environment["CHOSEN"] == "big"
    assert template.function("Fn").environment["GONE"] == "here"
    assert template.function("Fn").memory_size == 1024
    assert Template.load(template_file).resources.keys() == {"Lib", "Queue", "Fn"}


def test_invalid_or_unknown_parameters_are_refused(template_file: Path) -> None:
    with pytest.raises(TemplateError, match=r"Parameters.Stage: 'qa' is not one of"):
        Template.load(template_file, {"Stage": "qa"})
    with pytest.raises(TemplateError, match="Colour"):
        Template.load(template_file, {"Colour": "red"})


def test_outputs_resolve_and_unmodelled_references_say_where(template_file: Path) -> None:
    values, problems = Template.load(template_file).outputs()

    assert values == {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/app-dev-queue"}
    assert "Outputs.RoleArn.Value" in problems["RoleArn"]
    assert "AWS::IAM::Role" in problems["RoleArn"]


def test_unsupported_attribute_names_resource_and_property(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        textwrap.dedent(
            """
            Resources:
              Queue: {Type: AWS::SQS::Queue}
              Fn:
                Type: AWS::Serverless::Function
                Properties:
                  CodeUri: src/
                  Handler: app.handler
                  Environment:
                    Variables:
                      BAD: !GetAtt Queue.Colour
            """
        )
    )

    with pytest.raises(TemplateError) as error:
        Template.load(path).function("Fn")

    assert "Fn.Properties.Environment.Variables.BAD" in str(error.value)
    assert "Queue.Colour" in str(error.value)


def test_stream_arn_is_only_known_once_the_table_exists(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n"
        "      StreamSpecification: {StreamViewType: KEYS_ONLY}\n"
    )
    template = Template.load(path)

    with pytest.raises(TemplateError, match="only known once the table has been created"):
        template.get_att("T", "StreamArn")
    template.set_runtime_attribute("T", "StreamArn", "arn:stream")
    assert template.get_att("T", "StreamArn") == "arn:stream"
