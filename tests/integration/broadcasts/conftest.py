"""One stack per test module for the broadcast tests (each test uses its own orgs), with Telegram's Bot
API played by a local stand-in that the real Telegram adapter sends through."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.channels import BotApiStub, GraphStub, Tenant
from tests.integration.channels import conftest as channels

# The module-scoped stack, Bot API stand-in, app and tenants of the channel tests: the same fixtures.
bot_api, stack, app, org, other_org = channels.bot_api, channels.stack, channels.app, channels.org, channels.other_org

_bots = itertools.count(100000)


@pytest.fixture(scope="module")
def api_server(stack: Any) -> Iterator[str]:
    """The stack's HTTP API on a real port, as `make dev` serves it (sandbox statuses are posted to it)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(stack.http_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="api-server", daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def live_api(api_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """API_BASE_URL pointed at the live server, for sandbox statuses and unsubscribe links."""
    from audience import container

    monkeypatch.setenv("API_BASE_URL", api_server)
    container.reset()
    yield api_server
    container.reset()


def drain_with_sandbox(stack: Any, rounds: int = 4, timeout: float = 300) -> None:
    """Drain until the sandbox's statuses (queued a second after each message) are posted and applied."""
    for _ in range(rounds):
        stack.drain(timeout=timeout)
        time.sleep(1.2)
    stack.drain(timeout=timeout)


@pytest.fixture(scope="module")
def graph() -> Iterator[GraphStub]:
    """The Graph API's stand-in (WhatsApp Cloud API sends) for a whole module."""
    stub = GraphStub()
    yield stub
    stub.close()


@pytest.fixture
def graph_api(graph: GraphStub, stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphStub]:
    """GRAPH_API_URL pointed at the stand-in, for modules that send on WhatsApp (`usefixtures`)."""
    from audience import container

    monkeypatch.setenv("GRAPH_API_URL", graph.url)
    container.reset()
    yield graph
    container.reset()


@pytest.fixture(autouse=True)
def _clean_stub(bot_api: BotApiStub) -> None:
    bot_api.faults.clear()
    bot_api.blocked.clear()


def telegram_connection(org: Tenant) -> tuple[str, str]:
    """A Telegram connection of the org with a bot of its own: (connection id, bot token)."""
    token = f"{next(_bots)}:{'A' * 35}"
    answer = org.client.post(
        f"/orgs/{org.org_id}/connections",
        json={"platform": "telegram", "name": "Bot", "secrets": {"bot_token": token}},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], token


def telegram_contacts(org: Tenant, count: int, *, start: int = 1, **extra: Any) -> list[str]:
    """Contacts with a Telegram chat id each (start, start+1, ...); their ids."""
    created = []
    for n in range(start, start + count):
        answer = org.client.post(
            f"/orgs/{org.org_id}/contacts",
            json={"first_name": f"P{n}", "channels": [{"channel": "telegram", "user_id": str(n)}], **extra},
        )
        assert answer.status_code == 201, answer.text
        created.append(answer.json()["id"])
    return created


def text_broadcast(org: Tenant, connection_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "type": "marketing",
        "name": "Spring sale",
        "channels": [
            {"channel": "telegram", "connection_id": connection_id, "text": {"text": "Hi {{contact.first_name}}"}}
        ],
        **fields,
    }
    answer = org.client.post(f"/orgs/{org.org_id}/broadcasts", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()
