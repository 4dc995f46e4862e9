"""Status receipts of broadcast messages: WhatsApp statuses through the real webhook path move recipients
forward and the broadcast's counters with them, once, whatever the order and the repeats."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.channels import GraphStub, Webhooks, connect_whatsapp, whatsapp_status

PHONE_IDS = iter(range(700000001, 700009999))


pytestmark = pytest.mark.usefixtures("graph_api")


def _whatsapp_broadcast(org: Any, contacts: int) -> tuple[str, str]:
    """A marketing WhatsApp broadcast to `contacts` new contacts, scheduled: (phone number id, broadcast id)."""
    phone_number_id = str(next(PHONE_IDS))
    connection = connect_whatsapp(org, phone_number_id, waba=str(int(phone_number_id) + 1_000_000))
    for n in range(contacts):
        answer = org.client.post("/orgs/c/contacts", json={"first_name": f"W{n}", "phone": f"+6281100{n:05d}"})
        assert answer.status_code == 201, answer.text
    body = {
        "type": "marketing",
        "name": "Promo",
        "audience_all": True,
        "channels": [
            {
                "channel": "whatsapp",
                "connection_id": connection["id"],
                "whatsapp": {"name": "promo", "language": "en_US", "body": [{"kind": "contact_first_name"}]},
            }
        ],
    }
    broadcast = org.client.post("/orgs/c/broadcasts", json=body).json()
    assert org.client.post(f"/orgs/c/broadcasts/{broadcast['id']}/schedule", json={}).status_code == 200
    return phone_number_id, broadcast["id"]


def _rows(org: Any, broadcast_id: str) -> list[dict[str, Any]]:
    return org.client.get(f"/orgs/c/broadcasts/{broadcast_id}/recipients", params={"take": 100}).json()["items"]


def _stats(org: Any, broadcast_id: str) -> dict[str, Any]:
    return org.client.get(f"/orgs/c/broadcasts/{broadcast_id}").json()["stats"]


def test_receipts_move_recipients_and_counters_once(stack: Any, org: Any, graph: GraphStub) -> None:
    phone_number_id, broadcast_id = _whatsapp_broadcast(org, 4)
    stack.drain()
    rows = _rows(org, broadcast_id)
    assert sorted(r["status"] for r in rows) == ["SENT"] * 4
    assert all(r["provider_message_id"].startswith("wamid.TEST") for r in rows)
    hooks = Webhooks(stack)
    first, second, third, fourth = sorted(rows, key=lambda r: r["provider_message_id"])
    to = "6281100"
    events = [
        (first, "delivered", None),
        (first, "read", None),
        (first, "delivered", None),  # late and repeated: no move
        (second, "read", None),  # read before delivered: counted as read (it was delivered)
        (second, "delivered", None),
        (third, "failed", (131026, "Message undeliverable")),
        (fourth, "delivered", None),
        (fourth, "delivered", None),  # the same call again
    ]
    for n, (row, status, error) in enumerate(events):
        payload = whatsapp_status(
            phone_number_id, row["provider_message_id"], status, recipient=to, at=int(time.time()) + n, error=error
        )
        assert hooks.meta(_connection_id(org, phone_number_id), payload).status_code == 200
    stack.drain()
    by_id = {r["provider_message_id"]: r for r in _rows(org, broadcast_id)}
    assert by_id[first["provider_message_id"]]["status"] == "READ"
    assert by_id[second["provider_message_id"]]["status"] == "READ"
    assert by_id[third["provider_message_id"]]["status"] == "FAILED"
    assert by_id[third["provider_message_id"]]["error_code"] == "131026"
    assert by_id[fourth["provider_message_id"]]["status"] == "DELIVERED"
    stats = _stats(org, broadcast_id)
    assert stats["by_status"] == {
        "pending": 0,
        "sent": 0,
        "delivered": 1,
        "read": 2,
        "failed": 1,
        "skipped": 0,
        "cancelled": 0,
    }
    assert (stats["total"], stats["sent"], stats["delivered"], stats["read"], stats["failed"]) == (4, 3, 3, 2, 1)

    # Each contact's engagement counts its message once: received (a read that skipped "delivered" too),
    # read, and a broadcast received; the 131026 failure makes the third unreachable on WhatsApp.
    def contact(row: dict[str, Any]) -> dict[str, Any]:
        return org.client.get(f"/orgs/c/contacts/{row['contact_id']}").json()

    def counted(row: dict[str, Any]) -> tuple[int, int, int]:
        shown = contact(row)["engagement"]
        return shown["messages_received_30d"], shown["messages_read_30d"], shown["broadcasts_received"]

    assert counted(first) == (1, 1, 1)
    assert counted(second) == (1, 1, 1)
    assert counted(third) == (0, 0, 0)
    assert counted(fourth) == (1, 0, 1)
    assert contact(third)["quality"]["reachability"]["whatsapp"] == 10
    assert contact(fourth)["quality"]["reachability"]["whatsapp"] == 80  # a mobile (50) delivered to (30)


def test_a_receipt_before_the_sender_records_the_send_is_not_lost(stack: Any, org: Any) -> None:
    """WhatsApp can call back before the sender writes SENT: the row moves on, the tally still counts it."""
    from audience import container

    phone_number_id, broadcast_id = _whatsapp_broadcast(org, 1)
    repository = container.broadcasts_repository()
    original = repository.finish
    hooks = Webhooks(stack)
    sqs, queue = stack.client("sqs"), stack.outputs["InboundQueueUrl"]

    def finish_after_a_receipt(item: dict[str, Any], outcome: str, at: str, **fields: Any) -> dict[str, Any]:
        if outcome == "SENT":
            payload = whatsapp_status(
                phone_number_id, fields["provider_message_id"], "delivered", recipient="6281100", at=1781000000
            )
            assert hooks.meta(_connection_id(org, phone_number_id), payload).status_code == 200
            for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]:
                container.inbound_processor().process(message["Body"])
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            assert _rows(org, broadcast_id)[0]["status"] == "DELIVERED"
        return original(item, outcome, at, **fields)

    repository.finish = finish_after_a_receipt  # type: ignore[method-assign]
    try:
        stack.drain()
    finally:
        repository.finish = original  # type: ignore[method-assign]
    (row,) = _rows(org, broadcast_id)
    assert (row["status"], row["provider_message_id"].startswith("wamid.")) == ("DELIVERED", True)
    stats = _stats(org, broadcast_id)
    assert (stats["total"], stats["sent"], stats["delivered"]) == (1, 1, 1)
    assert stats["by_status"]["delivered"] == 1
    assert sum(stats["by_status"].values()) == 1
    assert org.client.get(f"/orgs/c/broadcasts/{broadcast_id}").json()["status"] == "SENT"


def _connection_id(org: Any, phone_number_id: str) -> str:
    for item in org.client.get("/orgs/c/connections").json()["items"]:
        if item["settings"].get("phone_number_id") == phone_number_id:
            return str(item["id"])
    raise AssertionError(f"no connection for {phone_number_id}")
