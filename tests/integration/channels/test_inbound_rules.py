"""Inbound rules per connection and name capture, on the local stack: WhatsApp webhooks create contacts
that get the connection's tags and static segments, the auto-reply check answers from segments, blocked
contacts and the do-not-contact list, and a name a person shares becomes the contact's name."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.channels import Webhooks, text_message
from tests.integration.channels.test_webhook_channels import contact_with_phone, digits, whatsapp

SARI = "6281234567890"
BUDI = "6281298765432"


def now() -> int:
    return int(time.time())


def static_segment(tenant: Any, name: str) -> str:
    reply = tenant.client.post("/orgs/c/segments", json={"name": name, "type": "static"})
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def dynamic_segment(tenant: Any, name: str, tag: str) -> str:
    rules = {"match": "all", "rules": [{"attribute": "tags", "operator": "contains", "value": tag}]}
    reply = tenant.client.post("/orgs/c/segments", json={"name": name, "type": "dynamic", "rules": rules})
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def members(tenant: Any, segment_id: str) -> set[str]:
    page = tenant.client.get(f"/orgs/c/segments/{segment_id}/contacts", params={"take": 100}).json()
    return {c["id"] for c in page["items"]}


def set_rules(tenant: Any, connection_id: str, rules: dict[str, Any]) -> Any:
    return tenant.client.put(f"/orgs/c/connections/{connection_id}/inbound-rules", json=rules)


def check(tenant: Any, connection_id: str, **query: str) -> dict[str, Any]:
    reply = tenant.client.get(f"/orgs/c/connections/{connection_id}/auto-reply-check", params=query)
    assert reply.status_code == 200, reply.text
    return reply.json()


def activity(tenant: Any, contact_id: str, kind: str) -> list[dict[str, Any]]:
    items = tenant.client.get(f"/orgs/c/contacts/{contact_id}/activity").json()["items"]
    return [a for a in items if a["type"] == kind]


def message(phone_number_id: str, wamid: str, text: str, *, wa_id: str, profile: str | None) -> dict[str, Any]:
    payload = text_message(phone_number_id, wamid, text, wa_id=wa_id, at=now())
    value = payload["entry"][0]["changes"][0]["value"]
    if profile is None:
        value["contacts"][0].pop("profile", None)
    else:
        value["contacts"][0]["profile"] = {"name": profile}
    return payload


# -- on_new_contact ---------------------------------------------------------------------------------------


def test_a_new_contact_gets_the_connections_tags_and_static_segment_and_an_existing_one_does_not(
    stack: Any, org: Any, hooks: Webhooks
) -> None:
    # Given a WhatsApp connection whose new contacts get a tag and a static segment
    phone = digits()
    connection = whatsapp(org, phone)
    leads = static_segment(org, "WhatsApp leads")
    existing = org.client.post("/orgs/c/contacts", json={"phone": "+" + BUDI, "tags": ["customer"]}).json()
    reply = set_rules(
        org, connection["id"], {"on_new_contact": {"tags": ["lead", "whatsapp-ads"], "segments": [leads]}}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["on_new_contact"] == {"tags": ["lead", "whatsapp-ads"], "segments": [leads]}
    assert org.client.get(f"/orgs/c/connections/{connection['id']}/inbound-rules").json() == reply.json()

    # When a new person and an existing contact write
    hooks.meta(connection["id"], message(phone, "wamid.ir-1", "Halo", wa_id=SARI, profile="Sari"))
    hooks.meta(connection["id"], message(phone, "wamid.ir-2", "Halo", wa_id=BUDI, profile="Budi"))
    stack.drain()

    # Then only the new contact has the tags and the membership
    sari = contact_with_phone(org, "+" + SARI)
    assert sari["tags"] == ["lead", "whatsapp-ads"]
    budi = org.client.get(f"/orgs/c/contacts/{existing['id']}").json()
    assert budi["tags"] == ["customer"]
    assert members(org, leads) == {sari["id"]}


def test_inbound_rules_are_validated(org: Any, other_org: Any) -> None:
    connection = whatsapp(org, digits())
    dynamic = dynamic_segment(org, "VIPs", "vip")
    theirs = static_segment(other_org, "Theirs")
    mine = static_segment(org, "Mine")
    for rules, field in (
        ({"on_new_contact": {"segments": [dynamic]}}, "on_new_contact.segments"),
        ({"on_new_contact": {"segments": [theirs]}}, "on_new_contact.segments"),
        ({"auto_reply": {"deny_segments": ["sg_" + "0" * 26]}}, "auto_reply.deny_segments"),
        ({"auto_reply": {"allow_segments": [mine], "deny_segments": [mine]}}, "auto_reply.deny_segments"),
        ({"on_new_contact": {"tags": ["x" * 65]}}, "on_new_contact.tags"),
    ):
        reply = set_rules(org, connection["id"], rules)
        assert reply.status_code == 422, (rules, reply.text)
        assert field in reply.text, reply.text
    too_many = set_rules(org, connection["id"], {"on_new_contact": {"segments": [mine] * 21}})
    assert too_many.status_code == 422
    # A dynamic segment may decide automatic replies.
    assert set_rules(org, connection["id"], {"auto_reply": {"allow_segments": [dynamic]}}).status_code == 200
    # Another org's connection is not found.
    assert other_org.client.get(f"/orgs/c/connections/{connection['id']}/inbound-rules").status_code == 404


# -- auto-reply check -------------------------------------------------------------------------------------


def test_the_auto_reply_check_answers_from_segments_blocked_contacts_and_do_not_contact(stack: Any, org: Any) -> None:
    connection = whatsapp(org, digits())
    vips = static_segment(org, "VIPs")
    muted = static_segment(org, "Muted")

    def contact(phone: str, **extra: Any) -> str:
        reply = org.client.post(
            "/orgs/c/contacts",
            json={"phone": phone, "channels": [{"channel": "whatsapp", "user_id": phone[1:]}], **extra},
        )
        assert reply.status_code == 201, reply.text
        return reply.json()["id"]

    vip, plain, quiet = contact("+6281211110001"), contact("+6281211110002"), contact("+6281211110003")
    org.client.post(f"/orgs/c/segments/{vips}/contacts", json={"contact_ids": [vip, quiet]})
    org.client.post(f"/orgs/c/segments/{muted}/contacts", json={"contact_ids": [quiet]})

    # No rules: everyone may get automatic replies, an unsubscribed contact too (they are service messages).
    assert check(org, connection["id"], contact_id=plain)["allowed"] is True
    unsubscribed = contact("+6281211110004", status="UNSUBSCRIBED")
    assert check(org, connection["id"], contact_id=unsubscribed)["reason"] == "allowed"

    rules = {"auto_reply": {"allow_segments": [vips], "deny_segments": [muted]}}
    assert set_rules(org, connection["id"], rules).status_code == 200
    assert check(org, connection["id"], contact_id=vip) | {"detail": ""} == {
        "allowed": True,
        "reason": "allowed",
        "detail": "",
        "contact_id": vip,
        "segment_id": vips,
    }
    assert check(org, connection["id"], contact_id=plain)["reason"] == "not_in_allowed_segments"
    denied = check(org, connection["id"], contact_id=quiet)
    assert (denied["allowed"], denied["reason"], denied["segment_id"]) == (False, "denied_segment", muted)
    # By phone or by the id on this channel instead of the contact id.
    assert check(org, connection["id"], phone="+6281211110001")["contact_id"] == vip
    assert check(org, connection["id"], user_id="6281211110002")["contact_id"] == plain

    # A blocked contact, and a do-not-contact entry for the channel, say no whatever the segments.
    org.client.patch(f"/orgs/c/contacts/{vip}", json={"status": "BLOCKED"})
    assert check(org, connection["id"], contact_id=vip)["reason"] == "blocked"
    set_rules(org, connection["id"], {})
    entry = org.client.post("/orgs/c/do-not-contact", json={"identifier": "+6281211110002", "channel": "whatsapp"})
    assert entry.status_code == 201, entry.text
    assert check(org, connection["id"], contact_id=plain)["reason"] == "do_not_contact"

    # Unknown contacts are 404; no contact named is 422.
    url = f"/orgs/c/connections/{connection['id']}/auto-reply-check"
    assert org.client.get(url, params={"phone": "+6281299999999"}).status_code == 404
    assert org.client.get(url).status_code == 422


# -- name capture -----------------------------------------------------------------------------------------


def test_a_name_shared_in_a_message_replaces_the_profile_name_once_and_keeps_the_original(
    stack: Any, org: Any, hooks: Webhooks
) -> None:
    phone = digits()
    connection = whatsapp(org, phone)
    hooks.meta(connection["id"], message(phone, "wamid.nc-1", "Halo", wa_id=SARI, profile="S W"))
    stack.drain()
    sari = contact_with_phone(org, "+" + SARI)
    assert (sari["full_name"], sari["original_name"]) == ("S W", None)
    (profile,) = activity(org, sari["id"], "name_captured")
    assert profile["data"] == {"name": "S W", "previous": None, "source": "profile", "message_id": "wamid.nc-1"}

    hooks.meta(
        connection["id"], message(phone, "wamid.nc-2", "Halo kak, nama saya sari wijaya", wa_id=SARI, profile="S W")
    )
    stack.drain()
    shown = org.client.get(f"/orgs/c/contacts/{sari['id']}").json()
    assert (shown["full_name"], shown["original_name"]) == ("Sari Wijaya", "S W")
    captured = [a["data"] for a in activity(org, sari["id"], "name_captured") if a["data"]["source"] == "message"]
    assert captured == [{"name": "Sari Wijaya", "previous": "S W", "source": "message", "message_id": "wamid.nc-2"}]

    # A part of the name never cuts it short; the profile never overrides.
    hooks.meta(connection["id"], message(phone, "wamid.nc-3", "call me Sari", wa_id=SARI, profile="S W"))
    hooks.meta(connection["id"], message(phone, "wamid.nc-4", "ok thanks", wa_id=SARI, profile="Someone Else"))
    stack.drain()
    shown = org.client.get(f"/orgs/c/contacts/{sari['id']}").json()
    assert (shown["full_name"], shown["original_name"]) == ("Sari Wijaya", "S W")
    # A later capture changes the name; the original stays the first one.
    hooks.meta(connection["id"], message(phone, "wamid.nc-5", "call me Sarah.", wa_id=SARI, profile="S W"))
    stack.drain()
    shown = org.client.get(f"/orgs/c/contacts/{sari['id']}").json()
    assert (shown["full_name"], shown["original_name"]) == ("Sarah", "S W")
    assert org.client.get("/orgs/c/contacts", params={"q": "sarah"}).json()["items"][0]["id"] == sari["id"]


def test_a_profile_name_fills_only_an_empty_name(stack: Any, org: Any, hooks: Webhooks) -> None:
    phone = digits()
    connection = whatsapp(org, phone)
    nameless = org.client.post("/orgs/c/contacts", json={"phone": "+" + SARI}).json()
    named = org.client.post("/orgs/c/contacts", json={"phone": "+" + BUDI, "first_name": "Budi"}).json()
    hooks.meta(connection["id"], message(phone, "wamid.pf-1", "Halo", wa_id=SARI, profile="Sari Wulandari"))
    hooks.meta(connection["id"], message(phone, "wamid.pf-2", "Halo", wa_id=BUDI, profile="B."))
    stack.drain()
    sari = org.client.get(f"/orgs/c/contacts/{nameless['id']}").json()
    assert (sari["full_name"], sari["original_name"]) == ("Sari Wulandari", None)
    (entry,) = activity(org, sari["id"], "name_captured")
    assert (entry["data"]["source"], entry["data"]["previous"]) == ("profile", None)
    budi = org.client.get(f"/orgs/c/contacts/{named['id']}").json()
    assert (budi["full_name"], budi["original_name"]) == ("Budi", None)
    assert activity(org, budi["id"], "name_captured") == []


def test_a_redelivered_message_captures_the_name_once(
    stack: Any, org: Any, hooks: Webhooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audience import container

    phone = digits()
    connection = whatsapp(org, phone)
    org.client.post("/orgs/c/contacts", json={"phone": "+" + SARI, "full_name": "Imported Name"})
    # The processed-event mark is never written: as if each delivery failed just before it.
    monkeypatch.setattr(container.inbound_repository(), "mark", lambda *args, **kwargs: None)
    payload = message(phone, "wamid.rd-1", "my name is Sari", wa_id=SARI, profile=None)
    hooks.meta(connection["id"], payload)
    stack.drain()
    hooks.meta(connection["id"], payload)
    stack.drain()
    sari = contact_with_phone(org, "+" + SARI)
    assert (sari["full_name"], sari["original_name"]) == ("Sari", "Imported Name")
    (entry,) = activity(org, sari["id"], "name_captured")
    assert entry["data"]["previous"] == "Imported Name"
    # An operator's edit after the capture is not reverted by the same message delivered again.
    assert org.client.patch(f"/orgs/c/contacts/{sari['id']}", json={"full_name": "Sari Operator"}).status_code == 200
    hooks.meta(connection["id"], payload)
    stack.drain()
    assert org.client.get(f"/orgs/c/contacts/{sari['id']}").json()["full_name"] == "Sari Operator"
    (entry,) = activity(org, sari["id"], "name_captured")
    assert entry["data"]["previous"] == "Imported Name"


def test_a_failing_name_capture_neither_delays_nor_loses_a_stop(
    stack: Any, org: Any, hooks: Webhooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audience import container
    from audience.errors import ConcurrentUpdateError

    phone = digits()
    connection = whatsapp(org, phone)
    calls: list[str] = []

    def failing(*args: Any, **kwargs: Any) -> bool:
        calls.append("capture")
        raise ConcurrentUpdateError("the contact keeps changing")

    monkeypatch.setattr(container.inbound_processor(), "_capture_name", failing)
    hooks.meta(connection["id"], message(phone, "wamid.fs-1", "my name is Sari", wa_id=SARI, profile=None))
    hooks.meta(connection["id"], message(phone, "wamid.fs-2", "STOP", wa_id=SARI, profile=None))
    stack.drain()
    sari = contact_with_phone(org, "+" + SARI)
    assert calls == ["capture"]
    assert sari["status"] == "UNSUBSCRIBED"
    assert sari["full_name"] is None


def test_a_profile_name_is_cleaned_and_needs_a_letter(stack: Any, org: Any, hooks: Webhooks) -> None:
    phone = digits()
    connection = whatsapp(org, phone)
    nameless = org.client.post("/orgs/c/contacts", json={"phone": "+" + BUDI}).json()
    hooks.meta(connection["id"], message(phone, "wamid.cl-1", "Halo", wa_id=SARI, profile="Sari\n\u202eW\x07"))
    hooks.meta(connection["id"], message(phone, "wamid.cl-2", "Halo", wa_id=BUDI, profile="\u0301\u0302"))
    stack.drain()
    assert contact_with_phone(org, "+" + SARI)["full_name"] == "Sari W"
    assert org.client.get(f"/orgs/c/contacts/{nameless['id']}").json()["full_name"] is None


def test_the_org_switch_turns_name_capture_off_and_its_own_phrases_apply(stack: Any, org: Any, hooks: Webhooks) -> None:
    phone = digits()
    connection = whatsapp(org, phone)
    off = org.client.put("/orgs/c/inbound-settings", json={"name_capture": {"enabled": False}})
    assert off.status_code == 200, off.text
    assert off.json()["name_capture"]["enabled"] is False
    assert "nama saya" in off.json()["name_capture"]["default_phrases"]["id"]
    hooks.meta(connection["id"], message(phone, "wamid.off-1", "my name is Sari", wa_id=SARI, profile=None))
    stack.drain()
    sari = contact_with_phone(org, "+" + SARI)
    assert sari["full_name"] is None
    assert activity(org, sari["id"], "name_captured") == []

    own = {"enabled": True, "phrases": {"jv": ["jenengku"]}}
    assert org.client.put("/orgs/c/inbound-settings", json={"name_capture": own}).status_code == 200
    # The keywords are kept when only name capture is given.
    hooks.meta(connection["id"], message(phone, "wamid.off-2", "Jenengku Slamet", wa_id=SARI, profile=None))
    stack.drain()
    assert org.client.get(f"/orgs/c/contacts/{sari['id']}").json()["full_name"] == "Slamet"
    bad = org.client.put("/orgs/c/inbound-settings", json={"name_capture": {"phrases": {"en": ["(a+)+$"]}}})
    assert bad.status_code == 422
    assert "name_capture.phrases.en" in bad.text


def test_a_deleted_segment_in_the_rules_is_ignored_and_can_be_put_back(org: Any) -> None:
    connection = whatsapp(org, digits())
    vips, muted = static_segment(org, "VIPs"), static_segment(org, "Muted")
    reply = org.client.post(
        "/orgs/c/contacts", json={"phone": "+6281211119001", "channels": [{"channel": "whatsapp", "user_id": "1"}]}
    )
    contact_id = reply.json()["id"]
    rules = {"on_new_contact": {"segments": [vips]}, "auto_reply": {"allow_segments": [vips], "deny_segments": [muted]}}
    assert set_rules(org, connection["id"], rules).status_code == 200
    assert check(org, connection["id"], contact_id=contact_id)["reason"] == "not_in_allowed_segments"

    # The allow segment is deleted: it no longer keeps every automatic reply from everyone.
    assert org.client.delete(f"/orgs/c/segments/{vips}").status_code in (200, 202, 204)
    answer = check(org, connection["id"], contact_id=contact_id)
    assert (answer["allowed"], answer["reason"]) == (True, "allowed")
    assert vips in answer["detail"]
    # GET leaves it out, and the rules as they were stored can be PUT back (the deleted id is dropped).
    shown = org.client.get(f"/orgs/c/connections/{connection['id']}/inbound-rules").json()
    assert shown["auto_reply"] == {"allow_segments": [], "deny_segments": [muted]}
    assert shown["on_new_contact"]["segments"] == []
    again = set_rules(org, connection["id"], rules)
    assert again.status_code == 200, again.text
    assert again.json()["auto_reply"]["allow_segments"] == []
    # An id the rules never named is still refused.
    unknown = set_rules(org, connection["id"], {"auto_reply": {"allow_segments": ["sg_" + "1" * 26]}})
    assert unknown.status_code == 422
