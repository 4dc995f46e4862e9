"""The stack against a moto server (what `make dev` runs): same behaviour through real HTTP endpoints."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from moto.core.config import default_user_config
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from devstack import MOTO_CONFIG, LocalStack

FIXTURE_TEMPLATE = Path(__file__).parent / "fixtures" / "template.yaml"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    port = _free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MOTO_PORT", str(port))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    with mock.patch.dict(default_user_config, {**default_user_config, **MOTO_CONFIG}):
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        # moto's backends are process-wide: start from an empty account like a fresh `make dev`.
        httpx.post(f"http://127.0.0.1:{port}/moto-api/reset").raise_for_status()
        stack = LocalStack.from_template(FIXTURE_TEMPLATE)
        try:
            stack.provision()
            yield stack
        finally:
            stack.close()
            server.stop()


def test_state_machine_tasks_reach_handlers_through_the_server(server_stack: LocalStack) -> None:
    sfn = server_stack.client("stepfunctions")
    started = sfn.start_execution(
        stateMachineArn=server_stack.resources["FlowStateMachine"],
        name="served",
        input=json.dumps({"mode": "calc", "value": 3, "items": [2]}),
    )
    server_stack.client("sqs").send_message(QueueUrl=server_stack.resources["WorkQueue"], MessageBody='{"id": "s"}')

    counts = server_stack.drain(timeout=10)

    execution = sfn.describe_execution(executionArn=started["executionArn"])
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {"value": 6, "items": [2], "squares": [4]}
    assert counts["WorkerFunction:Work"] == 1
    assert server_stack.resources["WorkQueue"].startswith("http://127.0.0.1:")


def test_background_pollers_run_until_stopped(server_stack: LocalStack) -> None:
    dynamodb = server_stack.client("dynamodb")

    def recorded() -> set[str]:
        items = dynamodb.scan(TableName="devstack-test-results")["Items"]
        return {item["pk"]["S"] for item in items}

    server_stack.start(interval=0.05)
    assert server_stack.running
    server_stack.client("sqs").send_message(QueueUrl=server_stack.resources["WorkQueue"], MessageBody='{"id": "bg"}')
    dynamodb.put_item(TableName="devstack-test-items", Item={"pk": {"S": "bg"}, "sk": {"S": "v"}})
    deadline = time.monotonic() + 5
    seen: set[Any] = set()
    while time.monotonic() < deadline and not {"done#bg", "delivery#bg#INSERT"} <= seen:
        time.sleep(0.05)
        seen = recorded()
    stopping = time.monotonic()
    server_stack.stop()

    assert {"done#bg", "delivery#bg#INSERT"} <= seen
    assert time.monotonic() - stopping < 1.0
    assert not server_stack.running
