"""Outbound session messages (the 24-hour window of WhatsApp), follow-ups requested for a time, and the
rules' validation, through the API on the local stack with the Graph API played by a local stand-in."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from tests.channels import GraphStub, Tenant, Webhooks, connect_whatsapp, text_message
from tests.integration.followups.conftest import TOKENS, telegram_bot
from tests.integration.followups.test_follow_ups import _contact, _executions, _rules, _texts

PHONE_IDS = itertools.count(880000000000001)


pytestmark = pytest.mark.usefixtures("graph_api")


def _whatsapp(org: Tenant) -> tuple[str, str]:
    phone_number_id = str(next(PHONE_IDS))
    connection = connect_whatsapp(org, phone_number_id, waba=str(int(phone_number_id) + 1_000_000))
    return connection["id"], phone_number_id


def _sent_to(graph: GraphStub, phone_number_id: str) -> list[dict[str, Any]]:
    return [body for path, body in graph.sent if f"/{phone_number_id}/messages" in path]


def test_whatsapp_free_text_needs_the_24_hour_window_and_a_template_does_not(
    stack: Any, org: Tenant, graph: GraphStub
) -> None:
    connection_id, phone_number_id = _whatsapp(org)
    wa_id = "6281299990001"
    contact = org.client.post("/orgs/c/contacts", json={"first_name": "Sari", "phone": f"+{wa_id}"}).json()
    url = f"/orgs/c/contacts/{contact['id']}/messages"

    refused = org.client.post(url, json={"connection_id": connection_id, "text": "Hi Sari"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["fields"][0]["field"] == "template"
    assert "24-hour window" in error["message"]
    assert "only a template" in error["message"]
    assert _sent_to(graph, phone_number_id) == []

    template = {"name": "order_update", "language": "en", "body": ["Sari"]}
    sent = org.client.post(url, json={"connection_id": connection_id, "text": "Hi Sari", "template": template})
    assert sent.status_code == 201, sent.text
    assert sent.json()["kind"] == "template"
    assert sent.json()["id"].startswith("wamid.TEST")
    (body,) = _sent_to(graph, phone_number_id)
    assert body["type"] == "template"
    assert body["to"] == wa_id
    assert body["template"]["name"] == "order_update"

    # The contact writes: the window opens, and free text goes. (Platforms stamp messages to the second.)
    time.sleep(1.1)
    hooks = Webhooks(stack)
    payload = text_message(phone_number_id, "wamid.IN-1", "hello?", wa_id=wa_id, at=int(time.time()))
    assert hooks.meta(connection_id, payload).status_code == 200
    stack.drain()
    time.sleep(1.1)
    sent = org.client.post(url, json={"connection_id": connection_id, "text": "Hi Sari, how can we help?"})
    assert sent.status_code == 201, sent.text
    assert sent.json()["kind"] == "text"
    assert _sent_to(graph, phone_number_id)[-1]["text"]["body"] == "Hi Sari, how can we help?"
    log = org.client.get(f"/orgs/c/contacts/{contact['id']}/messages").json()["items"]
    assert [(m["direction"], m["kind"]) for m in log] == [
        ("outbound", "text"),
        ("inbound", "text"),
        ("outbound", "template"),
    ]
    timeline = org.client.get(f"/orgs/c/contacts/{contact['id']}/activity").json()["items"]
    assert sum(1 for a in timeline if a["type"] == "message_sent") == 2


def test_a_refused_send_is_clear_and_an_idempotency_key_answers_once(stack: Any, org: Tenant, graph: GraphStub) -> None:
    connection_id, phone_number_id = _whatsapp(org)
    contact = org.client.post("/orgs/c/contacts", json={"phone": "+6281299990002"}).json()
    url = f"/orgs/c/contacts/{contact['id']}/messages"
    template = {"name": "order_update", "language": "en"}

    graph.faults.append((429, {"error": {"code": 130429, "message": "Rate limit hit"}}))
    limited = org.client.post(url, json={"connection_id": connection_id, "template": template})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1

    graph.faults.append((400, {"error": {"code": 132001, "message": "Template name does not exist"}}))
    refused = org.client.post(url, json={"connection_id": connection_id, "template": template})
    assert refused.status_code == 422
    assert "132001" in refused.json()["error"]["message"]

    first = org.client.post(
        url, json={"connection_id": connection_id, "template": template}, headers={"Idempotency-Key": "k-1"}
    )
    again = org.client.post(
        url, json={"connection_id": connection_id, "template": template}, headers={"Idempotency-Key": "k-1"}
    )
    other = org.client.post(url, json={"connection_id": connection_id, "text": "x"}, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert other.status_code == 422
    assert len(_sent_to(graph, phone_number_id)) == 1

    assert org.client.post(url, json={"connection_id": connection_id}).status_code == 422  # no text nor template
    blocked = org.client.post("/orgs/c/contacts", json={"phone": "+6281299990003", "status": "BLOCKED"}).json()
    answer = org.client.post(
        f"/orgs/c/contacts/{blocked['id']}/messages", json={"connection_id": connection_id, "template": template}
    )
    assert answer.status_code == 409
    assert answer.json()["error"]["reason"] == "blocked"


def test_a_follow_up_requested_for_a_time_goes_then_and_can_be_listed_and_cancelled(
    stack: Any, org: Tenant, bot_api: Any
) -> None:
    connection_id, token, _secret = telegram_bot(org, bot_api, next(TOKENS))
    contact_id = _contact(org, user=5512340001)
    url = f"/orgs/c/contacts/{contact_id}/follow-ups"

    later = org.client.post(url, json={"connection_id": connection_id, "in": "24h", "text": "Talk tomorrow?"})
    assert later.status_code == 201, later.text
    assert later.json()["due_in"] == "in 23 hours"
    assert later.json()["status"] == "scheduled"
    soon = org.client.post(url, json={"connection_id": connection_id, "in": 1, "text": "As promised: your quote"})
    assert soon.status_code == 201, soon.text
    listed = org.client.get(url).json()["items"]
    assert [f["id"] for f in listed] == [soon.json()["id"], later.json()["id"]]

    cancelled = org.client.delete(f"{url}/{later.json()['id']}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert org.client.delete(f"{url}/{later.json()['id']}").status_code == 409
    stack.drain(timeout=30)

    assert _texts(bot_api, token) == ["As promised: your quote"]
    everything = {f["id"]: f for f in org.client.get(url, params={"status": "all"}).json()["items"]}
    assert everything[soon.json()["id"]]["status"] == "sent"
    assert everything[soon.json()["id"]]["message_id"]
    assert everything[later.json()["id"]]["status"] == "cancelled"
    assert org.client.get(url).json()["items"] == []
    assert all(e["status"] != "RUNNING" for e in _executions(stack, contact_id))


def test_requested_follow_ups_are_checked(stack: Any, org: Tenant, bot_api: Any, graph: GraphStub) -> None:
    connection_id, _, _ = telegram_bot(org, bot_api, next(TOKENS))
    contact_id = _contact(org, user=5512340002)
    url = f"/orgs/c/contacts/{contact_id}/follow-ups"
    cases = [
        ({"connection_id": connection_id, "text": "x"}, "at"),
        ({"connection_id": connection_id, "text": "x", "in": "1h", "at": "2030-01-01T00:00:00Z"}, "at"),
        ({"connection_id": connection_id, "text": "x", "in": "soon"}, "in"),
        ({"connection_id": connection_id, "text": "x", "in": "\u00b2h"}, "in"),
        ({"connection_id": connection_id, "text": "x", "in": "24h\n"}, "in"),
        ({"connection_id": connection_id, "text": "x", "in": 10**13}, "in"),
        ({"connection_id": connection_id, "text": "x", "in": "400d"}, "in"),
        ({"connection_id": connection_id, "text": "x", "at": "2030-01-01T00:00:00"}, "at"),
        ({"connection_id": connection_id, "text": "x", "at": "2001-01-01T00:00:00Z"}, "at"),
        ({"connection_id": connection_id, "in": "1h"}, "message"),
    ]
    for body, field in cases:
        answer = org.client.post(url, json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]["fields"][0]["field"] == field, (body, answer.text)
    # On WhatsApp, free text due after the window has closed needs a template.
    whatsapp_id, _ = _whatsapp(org)
    phone_contact = org.client.post("/orgs/c/contacts", json={"phone": "+6281299990004"}).json()
    answer = org.client.post(
        f"/orgs/c/contacts/{phone_contact['id']}/follow-ups",
        json={"connection_id": whatsapp_id, "in": "2d", "text": "x"},
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["fields"][0]["field"] == "template"
    assert org.client.get(f"/orgs/c/contacts/{contact_id}/follow-ups/fu_nope").status_code in (404, 405)
    assert org.client.delete(f"{url}/fu_{'0' * 26}").status_code == 404


def test_rules_per_org_and_per_connection(stack: Any, org: Tenant, bot_api: Any) -> None:
    connection_id, _, _ = telegram_bot(org, bot_api, next(TOKENS))
    assert org.client.get("/orgs/c/follow-up-rules").json()["enabled"] is False
    rules = _rules(
        org, business_hours={"days": ["mon", "fri"], "start": "09:00", "end": "17:30", "timezone": "Asia/Jakarta"}
    )
    assert rules["business_hours"] == {
        "days": ["mon", "fri"],
        "start": "09:00",
        "end": "17:30",
        "timezone": "Asia/Jakarta",
    }
    assert org.client.get("/orgs/c/follow-up-rules").json() == rules
    path = f"/orgs/c/connections/{connection_id}/follow-up-rules"
    assert org.client.get(path).status_code == 404
    own = org.client.put(path, json={"enabled": False})
    assert own.status_code == 200
    assert own.json()["connection_id"] == connection_id
    assert org.client.get(path).json()["enabled"] is False
    assert org.client.delete(path).status_code == 204
    assert org.client.delete(path).status_code == 404
    bad = [
        ({"enabled": True, "max_follow_ups": 2}, "messages"),
        ({"messages": [{"template": {"name": "Bad Name"}}]}, "messages[0].template.name"),
        ({"messages": [{}]}, "messages[0]"),
        ({"business_hours": {"start": "18:00", "end": "09:00"}}, "business_hours.end"),
        ({"business_hours": {"start": "09:00", "end": "17:00", "timezone": "Mars/Olympus"}}, "business_hours.timezone"),
        ({"idle_seconds": 0}, "idle_seconds"),
        ({"max_follow_ups": 11}, "max_follow_ups"),
    ]
    for body, field in bad:
        answer = org.client.put("/orgs/c/follow-up-rules", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert field in answer.text, (body, answer.text)
