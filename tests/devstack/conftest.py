"""Fixtures for the local stack's own tests: the fixture template provisioned inside moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import LocalStack
from devstack.testing import local_stack

FIXTURE_TEMPLATE = Path(__file__).parent / "fixtures" / "template.yaml"


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    """A freshly provisioned fixture stack, for tests that send messages or write items."""
    with local_stack(FIXTURE_TEMPLATE) as provisioned:
        yield provisioned


@pytest.fixture(scope="module")
def shared_stack() -> Iterator[LocalStack]:
    """One fixture stack for a whole module of tests that only read or invoke."""
    with local_stack(FIXTURE_TEMPLATE) as provisioned:
        yield provisioned


@pytest.fixture
def results(stack: LocalStack) -> Any:
    """Reads back what the fixture handlers recorded: {key: {"times": n, **fields}}."""

    def read() -> dict[str, dict[str, Any]]:
        items = stack.client("dynamodb").scan(TableName=stack.resources["ResultsTable"])["Items"]
        return {
            item["pk"]["S"]: {
                "times": int(item.get("times", {"N": "0"})["N"]),
                **json.loads(item.get("data", {"S": "{}"})["S"]),
            }
            for item in items
        }

    return read
