"""The stack's life cycle: cheap to provision, refuses inconsistent templates, leaves no trace."""

from __future__ import annotations

import os
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devstack import StackError
from devstack.testing import local_stack

FIXTURE_TEMPLATE = Path(__file__).parent / "fixtures" / "template.yaml"


def test_environment_is_restored_on_exit() -> None:
    assert "RESULTS_TABLE" not in os.environ

    with local_stack(FIXTURE_TEMPLATE):
        assert os.environ["RESULTS_TABLE"] == "devstack-test-results"

    assert "RESULTS_TABLE" not in os.environ


def test_functions_disagreeing_on_a_variable_are_refused(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        textwrap.dedent(
            """
            Resources:
              One:
                Type: AWS::Serverless::Function
                Properties: {CodeUri: a/, Handler: app.h, Environment: {Variables: {MODE: fast}}}
              Two:
                Type: AWS::Serverless::Function
                Properties: {CodeUri: b/, Handler: app.h, Environment: {Variables: {MODE: slow}}}
            """
        )
    )

    with (
        pytest.raises(StackError, match=r"MODE is 'fast' in One but 'slow' in Two"),
        local_stack(tmp_path / "template.yaml"),
    ):
        pass


def test_provisioning_is_cheap() -> None:
    with local_stack(FIXTURE_TEMPLATE):
        pass  # the first one in a process also pays for importing moto's services

    with local_stack(FIXTURE_TEMPLATE) as stack:
        assert stack.provision_seconds is not None
        assert stack.provision_seconds < 1.0


def test_concurrent_dynamodb_writes_are_safe() -> None:
    # Handlers and their thread pools write at once; moto's TransactWriteItems is not thread-safe by itself.
    with local_stack(FIXTURE_TEMPLATE) as stack:
        dynamodb = stack.client("dynamodb")

        def write(worker: int) -> None:
            for n in range(15):
                dynamodb.transact_write_items(
                    TransactItems=[
                        {"Put": {"TableName": "devstack-test-results", "Item": {"pk": {"S": f"{worker}-{n}-{i}"}}}}
                        for i in range(3)
                    ]
                )

        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(write, range(6)))

        assert dynamodb.scan(TableName="devstack-test-results", Select="COUNT")["Count"] == 6 * 15 * 3
