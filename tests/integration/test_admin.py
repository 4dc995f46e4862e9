"""The admin command creates orgs and keys that the API accepts."""

import json
import os

import pytest
from fastapi.testclient import TestClient

from audience import admin


def _client(stack, api_key):
    return TestClient(stack.http_app, headers={"Authorization": f"Bearer {api_key}"})


def test_create_org_is_idempotent_for_a_known_org_and_key(stack):
    first = admin.create_org("Default", org_id="org_local", default_country="ID")
    again = admin.create_org("Default", org_id="org_local", api_key=first["api_key"])
    assert again == first
    assert _client(stack, first["api_key"]).get("/orgs/c").json()["id"] == "org_local"


def test_create_key_for_an_existing_org(stack):
    org = admin.create_org("Acme")
    key = admin.create_key(org["org_id"], "ci")
    names = {k["name"] for k in _client(stack, key["api_key"]).get("/orgs/c/api-keys").json()}
    assert names == {"default", "ci"}


def test_cli_prints_the_new_org_and_key_as_json(stack, tmp_path, capsys, monkeypatch):
    # The command points boto3 at the dev file's endpoint; an AWS-shaped one keeps this in the emulator.
    endpoint = "https://dynamodb.us-east-1.amazonaws.com"
    dev_file = tmp_path / "dev.json"
    dev_file.write_text(json.dumps({"endpoint_url": endpoint, "region": "us-east-1", "resources": stack.resources}))
    for name in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "CONTACTS_TABLE", "ORGS_TABLE"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the test
    assert admin.main(["create-org", "--name", "acme", "--dev-file", str(dev_file)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"org_id", "name", "api_key", "key_id"}
    assert _client(stack, printed["api_key"]).get("/orgs/c").json()["name"] == "acme"


def test_cli_without_a_running_local_stack_says_so(tmp_path):
    with pytest.raises(SystemExit, match="make dev"):
        admin.main(["create-org", "--name", "acme", "--dev-file", str(tmp_path / "dev.json")])


def test_cli_finds_a_deployed_stacks_tables_from_its_outputs(stack, capsys, monkeypatch):
    """--stack-name reads ContactsTableName/OrgsTableName from the stack's outputs, as after sam deploy."""
    import boto3

    outputs = {"ContactsTableName": stack.resources["ContactsTable"], "OrgsTableName": stack.resources["OrgsTable"]}
    template = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName="audience-prod", TemplateBody=json.dumps(template))
    for name in ("CONTACTS_TABLE", "ORGS_TABLE", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "unset-until-the-command-reads-the-stack" if "TABLE" in name else "us-east-1")

    command = ["create-org", "--name", "prod-org", "--stack-name", "audience-prod", "--region", "us-east-1"]
    assert admin.main(command) == 0
    printed = json.loads(capsys.readouterr().out)
    assert _client(stack, printed["api_key"]).get("/orgs/c").json()["name"] == "prod-org"
