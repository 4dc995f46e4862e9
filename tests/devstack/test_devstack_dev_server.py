"""`python -m devstack`: starts, serves the API with the default org's key, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest

from devstack import LocalStack
from devstack.testing import local_stack

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("audience.admin") is None,
    reason="audience.admin (creates the default org) is not written yet",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(state_dir: Path) -> tuple[subprocess.Popen[str], dict[str, object]]:
    api_port, moto_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack",
            "--port",
            str(api_port),
            "--moto-port",
            str(moto_port),
            "--state-dir",
            str(state_dir),
        ],
        cwd=ROOT,
        env={**env, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "audience"), str(ROOT)])},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state_file = state_dir / "dev.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        if state_file.exists():
            state = json.loads(state_file.read_text())
            if state.get("api_url", "").endswith(f":{api_port}"):
                return process, state
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"devstack did not start:\n{process.communicate()[0]}")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"devstack did not stop within 5 s:\n{process.communicate()[0]}")
    assert process.returncode == 0, output
    return output


def test_dev_server_serves_the_api_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    process, state = _start(tmp_path)
    try:
        api = str(state["api_url"])
        authorized = httpx.get(f"{api}/orgs/c", headers={"Authorization": f"Bearer {state['api_key']}"})
        anonymous = httpx.get(f"{api}/orgs/c")
        tables = boto3.client(
            "dynamodb",
            endpoint_url=str(state["endpoint_url"]),
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        ).list_tables()["TableNames"]
    finally:
        output = _stop(process)

    assert authorized.status_code == 200, output
    assert str(state["org_id"]) in authorized.text
    assert anonymous.status_code == 401
    assert set(state) >= {"api_url", "org_id", "api_key", "endpoint_url", "region", "stage", "resources"}
    assert state["resources"]["ContactsTable"] in tables  # type: ignore[index]
    assert str(state["api_key"]) in output
    assert "dynamodb list-tables" in output
    assert "Local stack stopped." in output


def test_a_restart_recreates_the_saved_org_and_key(tmp_path: Path) -> None:
    from devstack.__main__ import ensure_default_org

    state_file = tmp_path / "dev.json"
    with local_stack(ROOT / "template.yaml"):
        first = ensure_default_org(state_file)
    state_file.write_text(json.dumps({"org_id": first["org_id"], "api_key": first["api_key"]}))

    with local_stack(ROOT / "template.yaml") as fresh:  # a new run: nothing left in memory
        again = ensure_default_org(state_file)
        response = _get(fresh, "/orgs/c", first["api_key"])

    assert (again["org_id"], again["api_key"]) == (first["org_id"], first["api_key"])
    assert response.status_code == 200


def _get(stack: LocalStack, path: str, key: str) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=stack.http_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
            return await client.get(path, headers={"Authorization": f"Bearer {key}"})

    return asyncio.run(send())
