"""Contact quality on the local stack: webhooks feed reachability and engagement, the contact shows them,
and a segment on "reachability on WhatsApp >= 70" follows them (a 131026 failure takes the contact out)."""

from __future__ import annotations

import time
from typing import Any

from audience import clock
from tests.channels import Webhooks, text_message, whatsapp_status
from tests.integration.channels.test_webhook_channels import contact_with_phone, digits, whatsapp

SARI = "6281234567890"


def now() -> int:
    return int(time.time())


def members(tenant: Any, segment_id: str) -> set[str]:
    page = tenant.client.get(f"/orgs/c/segments/{segment_id}/contacts", params={"take": 100}).json()
    return {c["id"] for c in page["items"]}


def reachable_on_whatsapp(tenant: Any) -> str:
    rules = {
        "match": "all",
        "rules": [{"attribute": "reachability.whatsapp", "operator": "greater_or_equal", "value": 70}],
    }
    reply = tenant.client.post("/orgs/c/segments", json={"name": "Reachable", "type": "dynamic", "rules": rules})
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def fetch(tenant: Any, contact_id: str) -> dict[str, Any]:
    return tenant.client.get(f"/orgs/c/contacts/{contact_id}").json()


def test_a_reachability_segment_follows_messages_and_a_131026_failure(stack: Any, org: Any, hooks: Webhooks) -> None:
    phone = digits()
    connection = whatsapp(org, phone)
    segment = reachable_on_whatsapp(org)
    hello = text_message(phone, "wamid.q-hi", "Halo", wa_id=SARI, at=now())
    hooks.meta(connection["id"], hello)
    hooks.meta(connection["id"], hello)  # Meta's retry
    stack.drain()
    sari = contact_with_phone(org, "+" + SARI)
    shown = fetch(org, sari["id"])
    assert shown["quality"]["phone_type"] == "mobile"
    assert shown["quality"]["reachability"] == {"whatsapp": 90, "sms": 60}
    assert shown["quality"]["validation_score"] == (100 if shown["full_name"] else 90)  # a mobile number
    assert shown["engagement"]["messages_replied_30d"] == 1  # the retried webhook is not counted twice
    assert shown["engagement"]["last_engaged_at"] is not None
    assert members(org, segment) == {sari["id"]}

    failed = whatsapp_status(phone, "wamid.q-out", "failed", recipient=SARI, at=now(), error=(131026, "x"))
    hooks.meta(connection["id"], failed)
    stack.drain()
    shown = fetch(org, sari["id"])
    assert shown["quality"]["reachability"]["whatsapp"] == 10
    assert "unreachable_whatsapp" in shown["quality"]["system_tags"]
    assert members(org, segment) == set()

    # A failure with a code that does not mean "unreachable" changes nothing.
    other = whatsapp_status(phone, "wamid.q-out2", "failed", recipient=SARI, at=now() + 1, error=(131047, "y"))
    hooks.meta(connection["id"], other)
    stack.drain()
    assert fetch(org, sari["id"])["quality"]["reachability"]["whatsapp"] == 10


def test_statuses_of_messages_the_stack_sent_count_as_received_and_read(stack: Any, org: Any, hooks: Webhooks) -> None:
    from audience import container

    phone = digits()
    connection = whatsapp(org, phone)
    hooks.meta(connection["id"], text_message(phone, "wamid.r-hi", "Halo", wa_id=SARI, at=now()))
    stack.drain()
    sari = contact_with_phone(org, "+" + SARI)
    # A message the API sent: its provider-id item names the contact.
    container.inbound_repository().record_message(
        org_id=org.org_id,
        contact_id=sari["id"],
        channel="whatsapp",
        connection_id=connection["id"],
        provider_id="wamid.r-out",
        direction="outbound",
        at=clock.now_iso(),
        entry={"kind": "text", "text": "Thanks"},
        activity=None,
    )
    for status in ("sent", "delivered", "read", "delivered"):  # a late "delivered" does not move it back
        hooks.meta(connection["id"], whatsapp_status(phone, "wamid.r-out", status, recipient=SARI, at=now()))
    stack.drain()
    engagement = fetch(org, sari["id"])["engagement"]
    assert engagement["messages_received_30d"] == 1
    assert engagement["messages_read_90d"] == 1
    assert engagement["messages_replied_30d"] == 1
    assert engagement["broadcasts_received"] == 0  # not a broadcast
