"""One stack per test module for the follow-up tests (each test uses its own orgs), with Telegram's Bot API
played by a local stand-in that the real Telegram adapter sends through."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.channels import BotApiStub, Tenant, connect
from tests.integration.broadcasts import conftest as broadcasts

# The module-scoped stack, Bot API stand-in, app, tenants and live API of the broadcast tests.
bot_api, stack, app, org, other_org = (
    broadcasts.bot_api,
    broadcasts.stack,
    broadcasts.app,
    broadcasts.org,
    broadcasts.other_org,
)
api_server, live_api, _clean_stub = broadcasts.api_server, broadcasts.live_api, broadcasts._clean_stub
graph, graph_api = broadcasts.graph, broadcasts.graph_api


def telegram_bot(org: Tenant, bot_api: BotApiStub, token_number: int) -> tuple[str, str, str]:
    """A Telegram connection whose webhook is registered: (connection id, bot token, secret token)."""
    token = f"{token_number}:AAH-test_token_abcdefghijklmnopqrstuvwxy"
    connection = connect(org, "telegram", {"bot_username": "acme_bot"}, {"bot_token": token})
    assert org.client.post(f"/orgs/c/connections/{connection['id']}/telegram-webhook").status_code == 200
    return connection["id"], token, bot_api.secret_token(token)


TOKENS: Iterator[int] = iter(range(700000000, 800000000, 17))


@pytest.fixture
def bot(org: Tenant, bot_api: BotApiStub) -> tuple[str, str, str]:
    return telegram_bot(org, bot_api, next(TOKENS))
