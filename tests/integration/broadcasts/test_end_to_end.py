"""A marketing broadcast end to end on the local stack: contacts in two overlapping segments, some
unsubscribed, blocked or on the do-not-contact list, scheduled a moment ahead, sent through a sandbox
WhatsApp connection whose statuses come back through the real webhook path. Every eligible contact gets
exactly one message, no ineligible one gets any, and the analytics add up.

The suite runs it with 200 contacts (about 90 s); `E2E_CONTACTS=1000` runs it at 1,000, which takes the
local stack several minutes, most of them keeping segment memberships (moto answers an index query by
reading the whole table)."""

from __future__ import annotations

import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.channels import CUSTOM_SECRET, connect
from tests.integration.broadcasts.conftest import drain_with_sandbox

pytestmark = pytest.mark.usefixtures("live_api")

CONTACTS = int(os.environ.get("E2E_CONTACTS", "200"))
DRAIN_SECONDS = 3 * CONTACTS  # generous: a drain that ends by timing out fails the test


def test_contacts_in_segments_get_exactly_what_they_should(stack: Any, org: Any) -> None:
    from audience import container
    from audience.providers.sandbox import fate

    phones = [f"+6281300{n:05d}" for n in range(CONTACTS)]
    n = CONTACTS // 100  # 1%
    unsubscribed, blocked, dnc = set(phones[: 5 * n]), set(phones[5 * n : 7 * n]), set(phones[7 * n : 10 * n])
    outside = set(phones[98 * n :])  # in neither segment
    created = org.client.post(
        "/orgs/c/contacts/bulk",
        json={
            "contacts": [
                {
                    "first_name": f"E{n}",
                    "phone": phone,
                    **({"status": "UNSUBSCRIBED"} if phone in unsubscribed else {}),
                    **({"status": "BLOCKED"} if phone in blocked else {}),
                }
                for n, phone in enumerate(phones)
            ]
        },
    )
    assert created.status_code == 200, created.text
    ids = {phones[item["index"]]: item["contact_id"] for item in created.json()["results"]}
    assert created.json()["summary"]["created"] == CONTACTS
    assert len(ids) == CONTACTS
    for phone in sorted(dnc):
        added = org.client.post("/orgs/c/do-not-contact", json={"identifier": phone, "channel": "whatsapp"})
        assert added.status_code == 201, added.text
    segments = []
    for name, members in (("First", phones[: 60 * n]), ("Second", phones[40 * n : 98 * n])):
        segment = org.client.post("/orgs/c/segments", json={"name": name, "type": "static"}).json()
        added = org.client.post(
            f"/orgs/c/segments/{segment['id']}/contacts", json={"contact_ids": [ids[p] for p in members]}
        )
        assert added.status_code in (200, 202), added.text
        segments.append(segment["id"])
    stack.drain(timeout=DRAIN_SECONDS)

    connection = connect(org, "sandbox", {"channel": "whatsapp"}, {"signing_secret": CUSTOM_SECRET})
    broadcast = org.client.post(
        "/orgs/c/broadcasts",
        json={
            "type": "marketing",
            "name": "Thousand",
            "segment_ids": segments,
            "channels": [
                {
                    "channel": "whatsapp",
                    "connection_id": connection["id"],
                    "whatsapp": {"name": "promo", "language": "en", "body": [{"kind": "contact_first_name"}]},
                }
            ],
        },
    ).json()
    at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    scheduled = org.client.post(f"/orgs/c/broadcasts/{broadcast['id']}/schedule", json={"at": at})
    assert scheduled.json()["status"] == "SCHEDULED"
    time.sleep(2.5)
    drain_with_sandbox(stack, rounds=6, timeout=DRAIN_SECONDS)

    eligible = [p for p in phones if p not in unsubscribed | blocked | dnc | outside]
    assert len(eligible) == 88 * n
    # What reached the "platform": one message per eligible contact, none to anyone else.
    taken = container.broadcasts_repository().sandbox_messages(org.org_id, connection["id"], limit=5000)
    fates = {p: fate(p.removeprefix("+")) for p in eligible}
    accepted = sorted(p.removeprefix("+") for p, f in fates.items() if f != "refused")
    assert sorted(m["to"] for m in taken) == accepted
    assert all(m["template"]["body"] == [f"E{phones.index('+' + m['to'])}"] for m in taken)

    view = org.client.get(f"/orgs/c/broadcasts/{broadcast['id']}").json()
    assert view["status"] == "SENT"
    stats = view["stats"]
    expected = Counter(fates.values())
    assert stats["total"] == 88 * n
    assert sum(stats["by_status"].values()) == 88 * n
    assert stats["by_status"] == {
        "pending": 0,
        "sent": 0,
        "delivered": expected["delivered"],
        "read": expected["read"],
        "failed": expected["failed"] + expected["refused"],
        "skipped": 0,
        "cancelled": 0,
    }
    assert stats["excluded"] == {"unsubscribed": 5 * n, "blocked": 2 * n, "do_not_contact": 3 * n}
    assert stats["possible_duplicates"] == 0
    assert (stats["sent"], stats["delivered"], stats["read"]) == (
        88 * n - expected["refused"] - expected["failed"],  # failed after sending counts as failed
        expected["delivered"] + expected["read"],
        expected["read"],
    )
    # The counters agree with a recount of the rows.
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = org.client.get(
            f"/orgs/c/broadcasts/{broadcast['id']}/recipients",
            params={"take": 100, **({"cursor": cursor} if cursor else {})},
        ).json()
        rows.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(rows) == 88 * n
    assert len({r["contact_id"] for r in rows}) == 88 * n
    recount = Counter(r["status"].lower() for r in rows)
    assert {k: v for k, v in stats["by_status"].items() if v} == dict(recount)
    # A contact's profile lists the broadcast with its status.
    first = ids[eligible[0]]
    (received,) = org.client.get(f"/orgs/c/contacts/{first}/broadcasts").json()
    assert (received["broadcast_id"], received["channel"]) == (broadcast["id"], "whatsapp")
    assert org.client.get(f"/orgs/c/contacts/{ids[phones[0]]}/broadcasts").json() == []
