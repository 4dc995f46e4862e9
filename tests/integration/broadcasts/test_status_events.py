"""broadcast.status_changed and recipient.status_changed from the broadcasts table stream: a marketing
broadcast through a sandbox connection publishes its moves and each recipient's statuses once each."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.bus import tap, validate
from tests.channels import CUSTOM_SECRET, connect, whatsapp_promo
from tests.integration.broadcasts.conftest import drain_with_sandbox

pytestmark = pytest.mark.usefixtures("live_api")


def test_a_broadcasts_moves_and_its_recipients_statuses_reach_the_bus(stack: Any, org: Any) -> None:
    connection = connect(org, "sandbox", {"channel": "whatsapp"}, {"signing_secret": CUSTOM_SECRET})
    phones = [f"+628120001{n:04d}" for n in range(8)]
    broadcast = whatsapp_promo(org, "Evented", connection["id"], phones)
    with tap(stack, ("audience.broadcasts",)) as watch:
        assert org.client.post(f"/orgs/c/broadcasts/{broadcast['id']}/schedule", json={}).status_code == 200
        drain_with_sandbox(stack)
        events = watch.received(org.org_id)
    for event in events:
        assert event["detail-type"] == event["detail"]["type"]
        validate(event["detail"])
    details = [e["detail"] for e in events]
    assert len({d["id"] for d in details}) == len(details)  # once per fact

    moves = sorted(
        (d["data"]["previous_status"], d["data"]["status"]) for d in details if d["type"] == "broadcast.status_changed"
    )
    assert moves == [("DRAFT", "SCHEDULED"), ("SCHEDULED", "SENDING"), ("SENDING", "SENT")]

    rows = org.client.get(f"/orgs/c/broadcasts/{broadcast['id']}/recipients", params={"take": 100}).json()["items"]
    final = {r["contact_id"]: r["status"] for r in rows}
    by_contact: dict[str, list[dict[str, Any]]] = {}
    for d in details:
        if d["type"] == "recipient.status_changed":
            by_contact.setdefault(d["data"]["contact_id"], []).append(d["data"])
    assert set(by_contact) == set(final)
    for contact_id, moved in by_contact.items():
        statuses = [m["status"] for m in moved]
        assert final[contact_id] in statuses  # the status the recipient rests in was published
        assert all(n == 1 for n in Counter(statuses).values())
        assert {m["broadcast_id"] for m in moved} == {broadcast["id"]}
        assert {m["channel"] for m in moved} == {"whatsapp"}
