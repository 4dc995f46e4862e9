"""The sandbox provider end to end: a broadcast through a sandbox connection, its messages recorded, and
their statuses posted back through the real webhook path (a real HTTP server in front of the stack's API)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.channels import CUSTOM_SECRET, connect, whatsapp_promo
from tests.integration.broadcasts.conftest import drain_with_sandbox

pytestmark = pytest.mark.usefixtures("live_api")


def test_a_broadcast_through_the_sandbox_gets_realistic_statuses(stack: Any, org: Any) -> None:
    from audience.providers.sandbox import fate

    connection = connect(org, "sandbox", {"channel": "whatsapp"}, {"signing_secret": CUSTOM_SECRET})
    phones = [f"+628120000{n:04d}" for n in range(40)]
    broadcast = whatsapp_promo(org, "Sandboxed", connection["id"], phones)
    assert org.client.post(f"/orgs/c/broadcasts/{broadcast['id']}/schedule", json={}).status_code == 200
    drain_with_sandbox(stack)

    expected = {p.removeprefix("+"): fate(p.removeprefix("+")) for p in phones}
    rows = org.client.get(f"/orgs/c/broadcasts/{broadcast['id']}/recipients", params={"take": 100}).json()["items"]
    assert len(rows) == 40
    final = {"refused": "FAILED", "failed": "FAILED", "delivered": "DELIVERED", "read": "READ"}
    statuses = sorted(r["status"] for r in rows)
    assert statuses == sorted(final[f] for f in expected.values())
    stats = org.client.get(f"/orgs/c/broadcasts/{broadcast['id']}").json()
    assert stats["status"] == "SENT"
    counts = stats["stats"]
    assert sum(counts["by_status"].values()) == counts["total"] == 40
    assert counts["read"] == sum(1 for f in expected.values() if f == "read")
    assert counts["delivered"] == sum(1 for f in expected.values() if f in ("read", "delivered"))
    assert counts["failed"] == sum(1 for f in expected.values() if f in ("refused", "failed"))

    sent = org.client.get(f"/orgs/c/connections/{connection['id']}/sandbox-messages", params={"take": 100}).json()
    accepted = [p for p, f in expected.items() if f != "refused"]
    assert sorted(m["to"] for m in sent["items"]) == sorted(accepted)
    first = next(m for m in sent["items"] if m["to"] == accepted[0])
    assert first["template"]["name"] == "promo"
    assert first["template"]["body"] == [f"S{phones.index('+' + accepted[0])}"]


def test_sandbox_messages_belong_to_sandbox_connections(org: Any, other_org: Any) -> None:
    sandbox = connect(org, "sandbox", {"channel": "sms"}, {"signing_secret": CUSTOM_SECRET})
    custom = connect(org, "custom", {}, {"signing_secret": CUSTOM_SECRET})
    assert org.client.get(f"/orgs/c/connections/{sandbox['id']}/sandbox-messages").json() == {"items": []}
    assert org.client.get(f"/orgs/c/connections/{custom['id']}/sandbox-messages").status_code == 404
    assert other_org.client.get(f"/orgs/c/connections/{sandbox['id']}/sandbox-messages").status_code == 404
    assert sandbox["channel"] == "sms"
