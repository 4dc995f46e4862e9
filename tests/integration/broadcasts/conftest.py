"""One stack per test module for the broadcast tests (each test uses its own orgs), with Telegram's Bot
API played by a local stand-in that the real Telegram adapter sends through."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from tests.channels import BotApiStub, Tenant, module_stack, new_tenant

_bots = itertools.count(100000)


@pytest.fixture(scope="module")
def bot_api() -> Iterator[BotApiStub]:
    stub = BotApiStub()
    yield stub
    stub.close()


@pytest.fixture(scope="module")
def stack(bot_api: BotApiStub) -> Iterator[Any]:
    with module_stack(bot_api) as running:
        yield running


@pytest.fixture(scope="module")
def app(stack: Any) -> Any:
    from audience.api.app import create_app

    return create_app()


@pytest.fixture
def org(app: Any) -> Tenant:
    return new_tenant(app, "Acme", "ID")


@pytest.fixture
def other_org(app: Any) -> Tenant:
    return new_tenant(app, "Globex", "US")


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
