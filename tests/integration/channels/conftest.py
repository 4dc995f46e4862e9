"""One stack per test module for the channel tests (each test uses its own orgs and account ids), with
Telegram's Bot API played by a local stand-in; these fixtures override the per-test ones of
tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.channels import BotApiStub, Tenant, Webhooks, discard_inbound, module_stack, new_tenant


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
def _empty_inbound_queue(stack: Any) -> None:
    """What an earlier test left queued (the genuine calls of forgery tests) is never applied."""
    discard_inbound(stack)


@pytest.fixture
def hooks(stack: Any) -> Webhooks:
    return Webhooks(stack)
