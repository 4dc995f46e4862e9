"""Channel webhooks on the local stack: a call through the HTTP API is acknowledged by WebhookFunction,
queued, and applied by InboundFunction when the stack drains."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.channels import (
    APP_SECRET,
    VERIFY_TOKEN,
    Webhooks,
    connect_whatsapp,
    text_message,
    whatsapp_payload,
)

PHONE_NUMBER_ID = "106540352242922"
WA_ID = "6281234567890"


@pytest.fixture
def hooks(stack: Any) -> Webhooks:
    return Webhooks(stack)


def _contact_by_phone(tenant: Any, phone: str) -> dict[str, Any]:
    found = tenant.client.get("/orgs/c/contacts", params={"q": phone}).json()["items"]
    assert len(found) == 1, found
    return tenant.client.get(f"/orgs/c/contacts/{found[0]['id']}").json()


def test_a_whatsapp_message_from_an_unknown_number_creates_a_subscribed_contact_and_stop_unsubscribes_it(
    stack: Any, org: Any, hooks: Webhooks
) -> None:
    connection = connect_whatsapp(org, PHONE_NUMBER_ID)
    assert connection["webhook_url"].endswith(f"/webhooks/{connection['id']}")
    assert "secrets" not in connection
    assert APP_SECRET not in json.dumps(connection)
    assert VERIFY_TOKEN not in json.dumps(connection)
    assert connection["secrets_set"] == ["access_token", "app_secret", "verify_token"]

    reply = hooks.meta(connection["id"], text_message(PHONE_NUMBER_ID, "wamid.first", "Halo, masih ada?"))
    assert reply.status_code == 200
    stack.drain()

    contact = _contact_by_phone(org, "+" + WA_ID)
    assert contact["status"] == "SUBSCRIBED"
    assert contact["phone"] == "+" + WA_ID
    assert contact["full_name"] == "Sari Wulandari"
    assert {"channel": "whatsapp", "user_id": WA_ID} in contact["channels"]
    messages = org.client.get(f"/orgs/c/contacts/{contact['id']}/messages").json()["items"]
    assert [(m["id"], m["direction"], m["text"]) for m in messages] == [("wamid.first", "inbound", "Halo, masih ada?")]
    conversations = org.client.get(f"/orgs/c/contacts/{contact['id']}/conversations").json()["items"]
    assert conversations[0]["channel"] == "whatsapp"
    assert conversations[0]["inbound_count"] == 1
    assert conversations[0]["last_inbound_at"].startswith("2026-06-09")

    hooks.meta(connection["id"], text_message(PHONE_NUMBER_ID, "wamid.stop", "STOP", at=1781000100))
    stack.drain()

    contact = org.client.get(f"/orgs/c/contacts/{contact['id']}").json()
    assert contact["status"] == "UNSUBSCRIBED"
    entries = org.client.get("/orgs/c/do-not-contact").json()["items"]
    assert [(e["identifier"], e["channel"], e["source"]) for e in entries] == [
        ("+" + WA_ID, "whatsapp", "user_message")
    ]
    consent = org.client.get(f"/orgs/c/contacts/{contact['id']}/consent").json()["items"]
    assert any(c["channel"] == "whatsapp" and not c["opted_in"] and c["source"] == "end_user_message" for c in consent)
    eligibility = org.client.get(
        f"/orgs/c/contacts/{contact['id']}/eligibility", params={"channel": "whatsapp", "purpose": "marketing"}
    ).json()
    assert eligibility["allowed"] is False

    hooks.meta(connection["id"], text_message(PHONE_NUMBER_ID, "wamid.start", "start", at=1781000200))
    stack.drain()
    contact = org.client.get(f"/orgs/c/contacts/{contact['id']}").json()
    assert contact["status"] == "SUBSCRIBED"
    assert org.client.get("/orgs/c/do-not-contact").json()["items"] == []


def test_a_payload_replayed_five_times_stores_one_message(stack: Any, org: Any, hooks: Webhooks) -> None:
    connection = connect_whatsapp(org, PHONE_NUMBER_ID)
    payload = text_message(PHONE_NUMBER_ID, "wamid.replayed", "once only")
    for _ in range(5):
        assert hooks.meta(connection["id"], payload).status_code == 200
    stack.drain()
    contact = _contact_by_phone(org, "+" + WA_ID)
    messages = org.client.get(f"/orgs/c/contacts/{contact['id']}/messages").json()["items"]
    assert len(messages) == 1
    activity = org.client.get(f"/orgs/c/contacts/{contact['id']}/activity").json()["items"]
    assert [a["type"] for a in activity].count("message_received") == 1
    conversations = org.client.get(f"/orgs/c/contacts/{contact['id']}/conversations").json()["items"]
    assert conversations[0]["inbound_count"] == 1


def test_the_handshake_answers_exactly_the_challenge_for_the_right_token_only(org: Any, hooks: Webhooks) -> None:
    connection = connect_whatsapp(org, PHONE_NUMBER_ID)
    ok = hooks.handshake(connection["id"], VERIFY_TOKEN, challenge="1158201444")
    assert ok.status_code == 200
    assert ok.text == "1158201444"
    assert hooks.handshake(connection["id"], "wrong-token").status_code == 403
    missing_mode = hooks.http.get(
        f"/webhooks/{connection['id']}", params={"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}
    )
    assert missing_mode.status_code == 403
    assert hooks.handshake("ch_00000000000000000000000000", VERIFY_TOKEN).status_code == 404


def test_statuses_never_move_backwards_and_failures_keep_the_provider_error(
    stack: Any, org: Any, hooks: Webhooks
) -> None:
    from audience import container

    connection = connect_whatsapp(org, PHONE_NUMBER_ID)
    wamid = "wamid.outbound-1"

    def status(name: str, at: int) -> dict[str, Any]:
        payload = whatsapp_payload(f"webhook_whatsapp_status_{name}", PHONE_NUMBER_ID)
        value = payload["entry"][0]["changes"][0]["value"]
        value["statuses"][0].update({"id": wamid, "timestamp": str(at)})
        return payload

    for name, at in (("read", 1781000300), ("delivered", 1781000200), ("sent", 1781000100)):
        assert hooks.meta(connection["id"], status(name, at)).status_code == 200
        stack.drain()
    record = container.inbound_repository().message(org.org_id, "whatsapp", wamid)
    assert record is not None
    assert record["status"] == "read"
    assert (record["sent_at"], record["delivered_at"], record["read_at"]) == (
        "2026-06-09T10:15:00.000Z",
        "2026-06-09T10:16:40.000Z",
        "2026-06-09T10:18:20.000Z",
    )

    failed = status("failed", 1781000400)
    failed["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = "wamid.outbound-2"
    hooks.meta(connection["id"], failed)
    stack.drain()
    record = container.inbound_repository().message(org.org_id, "whatsapp", "wamid.outbound-2")
    assert record["status"] == "failed"
    assert record["error_code"] == "131026"
    assert record["error_title"]


def test_the_sample_events_run_through_their_functions(stack: Any, org: Any) -> None:
    from tests.channels import EVENTS, connect

    connection = connect(
        org,
        "whatsapp",
        {"phone_number_id": PHONE_NUMBER_ID, "business_account_id": "102290129340398"},
        {"app_secret": "example-app-secret", "verify_token": VERIFY_TOKEN},
    )
    call = json.loads((EVENTS / "webhook_call.json").read_text())
    call["pathParameters"]["connection_id"] = connection["id"]
    reply = stack.invoke("WebhookFunction", call)
    assert reply["statusCode"] == 200, reply
    # The queue record the sample shows, addressed to this org, applies as the queued one does.
    record = json.loads((EVENTS / "inbound_record.json").read_text())
    envelope = json.loads(record["Records"][0]["body"])
    envelope["routes"] = {f"whatsapp#{PHONE_NUMBER_ID}": [org.org_id, connection["id"]]}
    record["Records"][0]["body"] = json.dumps(envelope)
    assert stack.invoke("InboundFunction", record) == {"batchItemFailures": []}
    stack.drain()
    contact = _contact_by_phone(org, "+" + WA_ID)
    assert len(org.client.get(f"/orgs/c/contacts/{contact['id']}/messages").json()["items"]) == 1
