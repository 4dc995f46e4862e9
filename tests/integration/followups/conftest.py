"""One stack per test module for the follow-up tests (each test uses its own orgs), with Telegram's Bot API
played by a local stand-in that the real Telegram adapter sends through."""

from __future__ import annotations

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
