"""Webhook payloads, as each platform documents them, turned into inbound events."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from audience.inbound.events import Message, Other, Preference, Sender, Status
from audience.inbound.parse import (
    MAX_TEXT,
    PayloadError,
    parse_custom,
    parse_meta,
    parse_sns,
    parse_telegram,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"
PNID = "106540352242922"
PNID_2 = "106540352242923"
WABA = "102290129340398"
PAGE = "1143207162471512"
IG = "17841405822304914"
OUT_WAMID = "wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABEYEjU2QjlFMTdDNkQzRjg0QTJCMAA="
SARI = Sender(channel="whatsapp", user_id="6281234567890", phone="+6281234567890", name="Sari Wulandari")
MAYA = Sender(channel="whatsapp", user_id="12025550143", phone="+12025550143", name="Maya Chen")


def fixture(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def only(events):
    assert len(events) == 1, events
    return events[0]


def wa_body(value: dict, field: str = "messages", pnid: str = PNID) -> dict:
    """A WhatsApp webhook body with one change."""
    metadata = {"display_phone_number": "15550783881", "phone_number_id": pnid}
    change = {"value": {"messaging_product": "whatsapp", "metadata": metadata, **value}, "field": field}
    return {"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [change]}]}


def wa_message(type_: str, content: dict | None = None, **extra) -> dict:
    message = {"from": "6281234567890", "id": "wamid.TEST1", "timestamp": "1781000000", "type": type_, **extra}
    if content is not None:
        message[type_] = content
    return message


def parse_wa_message(message: dict, contacts: list | None = None) -> Message:
    contacts = contacts if contacts is not None else [{"profile": {"name": "Sari"}, "wa_id": "6281234567890"}]
    return only(parse_meta(wa_body({"contacts": contacts, "messages": [message]})))


def messaging_body(*events: dict, obj: str = "page", account: str = PAGE) -> dict:
    return {"object": obj, "entry": [{"id": account, "time": 1781000700999, "messaging": list(events)}]}


def messaging_event(**content) -> dict:
    return {"sender": {"id": "6972145526184383"}, "recipient": {"id": PAGE}, "timestamp": 1781000700123, **content}


def sns_envelope(message, message_id: str = "11111111-2222-5333-8444-555555555555") -> dict:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:audience-dev-ses-events",
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": "2026-06-09T11:00:00.250Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
    }


def ses_event(event_type: str, detail_key: str | None = None, detail: dict | None = None, **extra) -> dict:
    mail = {
        "timestamp": "2026-06-09T10:00:00.000Z",
        "source": "News@Example.com",
        "messageId": "0100019c-ses-message-000000",
        "destination": ["Rina.Putri@example.net", "other@example.org"],
    }
    event = {"eventType": event_type, "mail": mail, **extra}
    if detail_key:
        event[detail_key] = detail or {}
    return event


# --- WhatsApp fixtures --------------------------------------------------------------------------------


def test_whatsapp_text_message():
    body = fixture("webhook_whatsapp_text.json")
    message = only(parse_meta(body))
    assert message == Message(
        account_id=PNID,
        provider_id="wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABIYFjNFQjBDMkE3RjQ1RDZBODlCMUMyRDMA",
        dedupe_key="whatsapp:msg:wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABIYFjNFQjBDMkE3RjQ1RDZBODlCMUMyRDMA",
        sender=SARI,
        at="2026-06-09T10:13:20.000Z",
        kind="text",
        text="Halo, apakah paket keluarga masih tersedia bulan ini?",
        raw=body["entry"][0]["changes"][0]["value"]["messages"][0],
    )


def test_whatsapp_image_with_caption_replying_to_a_business_message():
    message = only(parse_meta(fixture("webhook_whatsapp_media.json")))
    assert message.kind == "image"
    assert message.sender == MAYA
    assert message.text == "This is the one I got, the zip is broken"
    assert message.media == {
        "type": "image",
        "id": "1290311855476632",
        "mime_type": "image/jpeg",
        "sha256": "o4u4WG0YqWzHTSdT4VtOF8CbaB0mqV5IuqG4mpLG7Pw=",
        "caption": "This is the one I got, the zip is broken",
    }
    assert message.reply_to == "wamid.HBgLMTIwMjU1NTAxNDMVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
    assert message.at == "2026-06-09T10:15:20.000Z"


def test_whatsapp_button_reply_gives_the_title_and_the_button_id():
    message = only(parse_meta(fixture("webhook_whatsapp_interactive.json")))
    assert message.kind == "interactive"
    assert message.text == "Ya, konfirmasi"
    assert message.media == {"type": "button_reply", "id": "order_confirm", "title": "Ya, konfirmasi"}
    assert message.reply_to == "wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABEYEjRCNzE4QzlEMkU1RjZBMDhCMQA="
    assert message.dedupe_key == "whatsapp:msg:wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABIYFjNFQjA5RDRCMUE3QzJGOEU2RDVCNDEA"


def test_whatsapp_click_to_whatsapp_referral_is_kept_whole():
    message = only(parse_meta(fixture("webhook_whatsapp_referral.json")))
    assert message.kind == "text"
    assert message.text == "Hi, I'd like to know more about the free shipping offer"
    assert message.referral is not None
    assert message.referral["source_type"] == "ad"
    assert message.referral["source_id"] == "120208461853590087"
    assert message.referral["source_url"] == "https://fb.me/3kQ9xWmPz"
    assert message.referral["headline"] == "Chat with us on WhatsApp"
    assert message.referral["ctwa_clid"].startswith("ARAkLkA8rmlFeiCk")
    assert message.sender.phone == "+12025550143"


@pytest.mark.parametrize(
    ("name", "status", "at", "name_of_recipient"),
    [
        ("webhook_whatsapp_status_sent.json", "sent", "2026-06-09T10:20:00.000Z", None),
        ("webhook_whatsapp_status_delivered.json", "delivered", "2026-06-09T10:20:05.000Z", "Sari Wulandari"),
        ("webhook_whatsapp_status_read.json", "read", "2026-06-09T10:21:00.000Z", None),
    ],
)
def test_whatsapp_statuses(name, status, at, name_of_recipient):
    body = fixture(name)
    event = only(parse_meta(body))
    assert event == Status(
        account_id=PNID,
        channel="whatsapp",
        provider_id=OUT_WAMID,
        dedupe_key=f"whatsapp:status:{OUT_WAMID}:{status}",
        status=status,
        at=at,
        recipient=Sender(channel="whatsapp", user_id="6281234567890", phone="+6281234567890", name=name_of_recipient),
        raw=body["entry"][0]["changes"][0]["value"]["statuses"][0],
    )


def test_whatsapp_failed_status_carries_the_error_code_as_text_and_its_title():
    status = only(parse_meta(fixture("webhook_whatsapp_status_failed.json")))
    assert isinstance(status, Status)
    assert status.status == "failed"
    assert status.error_code == "131026"
    assert status.error_title == "Message undeliverable"
    assert status.recipient == Sender(channel="whatsapp", user_id="12025550178", phone="+12025550178")
    assert status.dedupe_key == "whatsapp:status:wamid.HBgLMTIwMjU1NTAxNzgVAgARGBJGQjYzNEE4QzdEMUUyOTBBNTcA:failed"


def test_whatsapp_multi_entry_batch_yields_every_event_with_its_own_phone_number():
    events = parse_meta(fixture("webhook_whatsapp_multi_entry.json"))
    assert [(type(e).__name__, e.account_id) for e in events] == [
        ("Message", PNID),
        ("Status", PNID),
        ("Message", PNID_2),
        ("Status", PNID_2),
    ]
    first, delivered, reaction, read = events
    assert first.text == "Terima kasih!"
    assert first.sender == SARI
    assert delivered.status == "delivered"
    assert delivered.provider_id == OUT_WAMID
    assert reaction.kind == "reaction"
    assert reaction.text == "\U0001f44d"
    assert reaction.reply_to == "wamid.HBgNNjI4MTM5ODc2NTQzMhUCABEYEjFBMkIzQzRENUU2RjdBOEI5AA=="
    assert reaction.sender == Sender(
        channel="whatsapp", user_id="6281398765432", phone="+6281398765432", name="Rina Putri"
    )
    assert read.status == "read"
    assert read.recipient.name == "Rina Putri"
    assert len({e.dedupe_key for e in events}) == 4


def test_whatsapp_marketing_stop_is_a_preference():
    body = fixture("webhook_whatsapp_user_preferences.json")
    preference = only(parse_meta(body))
    assert preference == Preference(
        account_id=PNID,
        channel="whatsapp",
        dedupe_key="whatsapp:pref:6281234567890:marketing_messages:stop:1781000600",
        kind="marketing_stop",
        subject=SARI,
        at="2026-06-09T10:23:20.000Z",
        detail="User requested to stop marketing messages",
        raw=body["entry"][0]["changes"][0]["value"]["user_preferences"][0],
    )


def test_whatsapp_marketing_resume_and_other_preference_categories():
    items = [
        {"wa_id": "12025550143", "category": "marketing_messages", "value": "resume", "timestamp": 1781000700},
        {"wa_id": "12025550143", "category": "something_new", "value": "on", "timestamp": 1781000701},
    ]
    resume, other = parse_meta(wa_body({"user_preferences": items}, field="user_preferences"))
    assert isinstance(resume, Preference)
    assert resume.kind == "marketing_resume"
    assert resume.subject == Sender(channel="whatsapp", user_id="12025550143", phone="+12025550143")
    assert isinstance(other, Other)
    assert other.kind == "whatsapp:user_preferences"
    assert other.dedupe_key == "whatsapp:pref:12025550143:something_new:on:1781000701"


# --- WhatsApp message types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "kind", "text", "media", "reply_to"),
    [
        (
            wa_message("audio", {"mime_type": "audio/ogg; codecs=opus", "id": "8812", "voice": True}),
            "audio",
            None,
            {"type": "audio", "id": "8812", "mime_type": "audio/ogg; codecs=opus", "voice": True},
            None,
        ),
        (
            wa_message("document", {"filename": "invoice.pdf", "mime_type": "application/pdf", "id": "77"}),
            "document",
            None,
            {"type": "document", "id": "77", "mime_type": "application/pdf", "filename": "invoice.pdf"},
            None,
        ),
        (
            wa_message("sticker", {"mime_type": "image/webp", "id": "55", "animated": False}),
            "sticker",
            None,
            {"type": "sticker", "id": "55", "mime_type": "image/webp", "animated": False},
            None,
        ),
        (
            wa_message("location", {"latitude": -6.2, "longitude": 106.8, "name": "Monas", "address": "Jakarta"}),
            "location",
            None,
            {"type": "location", "latitude": -6.2, "longitude": 106.8, "name": "Monas", "address": "Jakarta"},
            None,
        ),
        (
            wa_message(
                "interactive",
                {"type": "list_reply", "list_reply": {"id": "size_m", "title": "M", "description": "Medium"}},
            ),
            "interactive",
            "M",
            {"type": "list_reply", "id": "size_m", "title": "M", "description": "Medium"},
            None,
        ),
        (
            wa_message(
                "interactive",
                {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent", "response_json": '{"a": 1}'}},
            ),
            "interactive",
            "Sent",
            {"type": "nfm_reply", "name": "flow", "response_json": '{"a": 1}'},
            None,
        ),
        (
            wa_message("button", {"payload": "STOP_PROMOS", "text": "Stop promotions"}, context={"id": "wamid.T"}),
            "button",
            "Stop promotions",
            {"type": "button", "payload": "STOP_PROMOS"},
            "wamid.T",
        ),
        (wa_message("reaction", {"message_id": "wamid.OUT"}), "reaction", None, None, "wamid.OUT"),
        (
            wa_message("order", {"catalog_id": "991", "text": "for Friday", "product_items": [{"qty": 2}]}),
            "order",
            "for Friday",
            {"type": "order", "catalog_id": "991", "product_items": [{"qty": 2}]},
            None,
        ),
        (
            wa_message("system", {"body": "User changed number", "type": "user_changed_number"}),
            "system",
            None,
            None,
            None,
        ),
        (wa_message("unsupported", errors=[{"code": 131051}]), "unsupported", None, None, None),
        (wa_message("unknown"), "unsupported", None, None, None),
        (wa_message("request_welcome"), "request_welcome", None, None, None),
    ],
)
def test_whatsapp_message_types(message, kind, text, media, reply_to):
    parsed = parse_wa_message(message)
    assert parsed.kind == kind
    assert parsed.media == media
    assert parsed.reply_to == reply_to
    if kind == "system":
        assert parsed.text == "User changed number"
    else:
        assert parsed.text == text
    assert parsed.raw == message


def test_whatsapp_contacts_message_keeps_the_shared_cards():
    cards = [{"name": {"formatted_name": "Ani"}, "phones": [{"phone": "+62 812 0000 1111", "type": "CELL"}]}]
    parsed = parse_wa_message(wa_message("contacts", contacts=cards))
    assert parsed.kind == "contacts"
    assert parsed.media == {"type": "contacts", "contacts": cards}


def test_whatsapp_user_with_a_username_is_known_by_business_scoped_id_without_a_phone():
    contacts = [{"profile": {"name": "Sheena", "username": "@sheena.n"}, "user_id": "US.1349120865530274"}]
    message = {"from_user_id": "US.1349120865530274", "id": "wamid.B1", "timestamp": "1781000000", "type": "text"}
    message["text"] = {"body": "hi"}
    parsed = parse_wa_message(message, contacts)
    assert parsed.sender == Sender(
        channel="whatsapp", user_id="US.1349120865530274", phone=None, name="Sheena", username="sheena.n"
    )


@pytest.mark.parametrize(
    ("wa_id", "phone"),
    [
        ("123456", "+123456"),
        ("123456789012345", "+123456789012345"),
        ("12345", None),
        ("1234567890123456", None),
        ("62812abc", None),
    ],
)
def test_whatsapp_phone_is_e164_only_for_6_to_15_digits(wa_id, phone):
    parsed = parse_wa_message(wa_message("text", {"body": "x"}, **{"from": wa_id}), contacts=[])
    assert parsed.sender.user_id == wa_id
    assert parsed.sender.phone == phone
    assert parsed.sender.name is None


def test_whatsapp_profile_name_comes_from_the_matching_contact():
    contacts = [
        {"profile": {"name": "Someone Else"}, "wa_id": "12025550199"},
        {"profile": {"name": "Sari"}, "wa_id": "6281234567890"},
    ]
    assert parse_wa_message(wa_message("text", {"body": "x"}), contacts).sender.name == "Sari"


def test_whatsapp_deleted_and_unknown_statuses_are_kept_as_other():
    statuses = [
        {"id": "wamid.D", "status": "deleted", "timestamp": "1781000000", "recipient_id": "6281234567890"},
        {"id": "wamid.W", "status": "warning", "timestamp": "1781000001", "recipient_id": "6281234567890"},
    ]
    deleted, warning = parse_meta(wa_body({"statuses": statuses}))
    assert isinstance(deleted, Other)
    assert deleted.kind == "whatsapp:status_deleted"
    assert deleted.dedupe_key == "whatsapp:status:wamid.D:deleted"
    assert deleted.sender.phone == "+6281234567890"
    assert isinstance(warning, Other)
    assert warning.kind == "whatsapp:status_warning"


def test_whatsapp_other_fields_are_kept_not_dropped():
    account_update = {"phone_number": "15550783881", "event": "VERIFIED_ACCOUNT"}
    template = {"event": "APPROVED", "message_template_id": 1234, "message_template_name": "june_sale"}
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA,
                "time": 1781000000,
                "changes": [
                    {"field": "account_update", "value": account_update},
                    {"field": "message_template_status_update", "value": template},
                ],
            }
        ],
    }
    first, second = parse_meta(body)
    assert isinstance(first, Other)
    assert first.kind == "whatsapp:account_update"
    assert first.account_id == WABA
    assert first.raw == account_update
    assert first.dedupe_key.startswith(f"whatsapp:account_update:{WABA}:")
    assert second.kind == "whatsapp:message_template_status_update"
    assert parse_meta(copy.deepcopy(body))[0].dedupe_key == first.dedupe_key  # stable across deliveries
    assert first.dedupe_key != second.dedupe_key


def test_whatsapp_extra_arrays_on_the_messages_field_become_other():
    clicks = [{"action_type": "marketing_messages_link_click", "timestamp": "1781000000"}]
    event = only(parse_meta(wa_body({"user_actions": clicks})))
    assert isinstance(event, Other)
    assert event.kind == "whatsapp:user_actions"
    assert event.account_id == PNID
    assert event.at == "2026-06-09T10:13:20.000Z"
    assert event.raw == {"user_actions": clicks}


# --- Messenger and Instagram --------------------------------------------------------------------------


def test_messenger_text_message_fixture():
    body = fixture("webhook_messenger_message.json")
    message = only(parse_meta(body))
    mid = "m_Qk3XbH0yZ2x7Tn1cVr8sEw4pLmN9aJ6dFgK5uYiO2hW1qA3zBvC8eR7tS0xU4yP6oL9nM2jK5gH8fD1sA3wE6rT"
    assert message == Message(
        account_id=PAGE,
        provider_id=mid,
        dedupe_key=f"messenger:msg:{mid}",
        sender=Sender(channel="messenger", user_id="6972145526184383"),
        at="2026-06-09T10:25:00.123Z",
        kind="text",
        text="Do you ship to Surabaya?",
        reply_to="m_Zp8LmN3qRt6YwE1xC9vB4nK7jH2gF5dS0aQ3wE6rT9yU1iO4pL7kJ2hG5fD8sA1zX",
        raw=body["entry"][0]["messaging"][0],
    )


def test_instagram_message_fixture():
    message = only(parse_meta(fixture("webhook_instagram_message.json")))
    assert message.account_id == IG
    assert message.sender == Sender(channel="instagram", user_id="1298675312454432")
    assert message.text == "Is the blue one still available in size M?"
    assert message.dedupe_key == f"instagram:msg:{message.provider_id}"
    assert message.provider_id.startswith("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE")
    assert message.at == "2026-06-09T10:26:40.245Z"


def test_messenger_attachments_quick_replies_and_ad_referrals():
    image = messaging_event(
        message={"mid": "m_1", "attachments": [{"type": "image", "payload": {"url": "https://cdn.example/1.jpg"}}]}
    )
    files = messaging_event(
        message={
            "mid": "m_2",
            "attachments": [
                {"type": "file", "payload": {"url": "https://cdn.example/a.pdf"}},
                {"type": "image", "payload": {"url": "https://cdn.example/b.png"}},
            ],
        }
    )
    quick = messaging_event(message={"mid": "m_3", "text": "Yes please", "quick_reply": {"payload": "YES"}})
    ad = {"ref": "summer", "source": "ADS", "type": "OPEN_THREAD", "ad_id": "6045246247433"}
    from_ad = messaging_event(message={"mid": "m_4", "text": "Hi", "referral": ad})
    events = parse_meta(messaging_body(image, files, quick, from_ad))
    assert [(e.kind, e.provider_id) for e in events] == [
        ("image", "m_1"),
        ("document", "m_2"),
        ("quick_reply", "m_3"),
        ("text", "m_4"),
    ]
    assert events[0].media == {"type": "image", "url": "https://cdn.example/1.jpg"}
    assert events[1].media["url"] == "https://cdn.example/a.pdf"
    assert [a["type"] for a in events[1].media["attachments"]] == ["document", "image"]
    assert events[2].text == "Yes please"
    assert events[2].media == {"type": "quick_reply", "payload": "YES", "title": "Yes please"}
    assert events[3].referral == ad


def test_messenger_echo_is_other_about_the_recipient():
    echo = messaging_event(message={"mid": "m_echo", "is_echo": True, "text": "Thanks!", "app_id": 1517776481860111})
    echo["sender"], echo["recipient"] = {"id": PAGE}, {"id": "6972145526184383"}
    event = only(parse_meta(messaging_body(echo)))
    assert event == Other(
        account_id=PAGE,
        channel="messenger",
        dedupe_key="messenger:echo:m_echo",
        kind="messenger:echo",
        at="2026-06-09T10:25:00.123Z",
        sender=Sender(channel="messenger", user_id="6972145526184383"),
        raw=echo,
    )


def test_messenger_delivery_gives_one_status_per_mid_and_read_is_other():
    delivery = messaging_event(delivery={"mids": ["m_a", "m_b"], "watermark": 1781000700000})
    watermark_only = messaging_event(delivery={"watermark": 1781000700000})
    read = messaging_event(read={"watermark": 1781000700500})
    events = parse_meta(messaging_body(delivery, watermark_only, read))
    first, second, no_mids, read_event = events
    assert isinstance(first, Status)
    assert (first.provider_id, first.status, first.dedupe_key) == ("m_a", "delivered", "messenger:status:m_a:delivered")
    assert second.dedupe_key == "messenger:status:m_b:delivered"
    assert first.recipient == Sender(channel="messenger", user_id="6972145526184383")
    assert isinstance(no_mids, Other)
    assert no_mids.kind == "messenger:delivery"
    assert isinstance(read_event, Other)
    assert read_event.kind == "messenger:read"
    assert read_event.dedupe_key == "messenger:read:6972145526184383:1781000700500"


def test_instagram_read_names_the_message_so_it_is_a_status():
    read = messaging_event(read={"mid": "aWdf_out_1"})
    status = only(parse_meta(messaging_body(read, obj="instagram", account=IG)))
    assert isinstance(status, Status)
    assert (status.channel, status.status, status.provider_id) == ("instagram", "read", "aWdf_out_1")
    assert status.dedupe_key == "instagram:status:aWdf_out_1:read"


def test_messenger_postbacks_with_and_without_a_mid():
    with_mid = messaging_event(postback={"mid": "m_pb", "title": "Get Started", "payload": "GET_STARTED"})
    without = messaging_event(postback={"title": "Menu", "payload": "MENU"})
    first, second = parse_meta(messaging_body(with_mid, without))
    assert (first.kind, first.text, first.dedupe_key) == ("postback", "Get Started", "messenger:msg:m_pb")
    assert first.media == {"type": "postback", "payload": "GET_STARTED", "title": "Get Started"}
    assert second.dedupe_key == "messenger:postback:6972145526184383:1781000700123"


def test_messenger_reactions_point_at_the_message():
    react = messaging_event(reaction={"mid": "m_out", "action": "react", "reaction": "love", "emoji": "\u2764"})
    unreact = messaging_event(reaction={"mid": "m_out", "action": "unreact"})
    first, second = parse_meta(messaging_body(react, unreact))
    assert (first.kind, first.text, first.reply_to) == ("reaction", "\u2764", "m_out")
    assert (second.kind, second.text, second.reply_to) == ("reaction", None, "m_out")
    assert first.dedupe_key != second.dedupe_key


def test_messenger_unknown_events_and_instagram_changes_are_other():
    referral = messaging_event(referral={"ref": "june", "source": "SHORTLINK", "type": "OPEN_THREAD"})
    body = messaging_body(referral, obj="instagram", account=IG)
    comment = {"field": "comments", "value": {"id": "1789", "text": "nice", "from": {"id": "99", "username": "a"}}}
    body["entry"][0]["changes"] = [comment]
    ref_event, comment_event = parse_meta(body)
    assert (ref_event.kind, ref_event.account_id) == ("instagram:referral", IG)
    assert ref_event.sender == Sender(channel="instagram", user_id="6972145526184383")
    assert isinstance(comment_event, Other)
    assert comment_event.kind == "instagram:comments"
    assert comment_event.raw == comment
    assert comment_event.at == "2026-06-09T10:25:00.999Z"  # the entry's time, in milliseconds


def test_messenger_multi_entry_keeps_each_pages_id():
    body = {
        "object": "page",
        "entry": [
            {"id": "111111", "time": 1, "messaging": [messaging_event(message={"mid": "m_1", "text": "a"})]},
            {"id": "222222", "time": 1, "messaging": [messaging_event(message={"mid": "m_2", "text": "b"})]},
        ],
    }
    assert [(e.account_id, e.provider_id) for e in parse_meta(body)] == [("111111", "m_1"), ("222222", "m_2")]


# --- Telegram -----------------------------------------------------------------------------------------


def test_telegram_message_fixture():
    update = fixture("webhook_telegram_message.json")
    message = only(parse_telegram(update, "tgc_01"))
    assert message == Message(
        account_id="tgc_01",
        provider_id="5512345678:4521",
        dedupe_key="telegram:tgc_01:781234561",
        sender=Sender(channel="telegram", user_id="5512345678", name="Budi Santoso", username="budisantoso"),
        at="2026-06-09T10:28:20.000Z",
        kind="text",
        text="/start promo_juni",
        raw=update["message"],
    )


def test_telegram_edited_message_fixture():
    message = only(parse_telegram(fixture("webhook_telegram_edited_message.json"), "tgc_01"))
    assert message.kind == "edit"
    assert message.provider_id == "5512345678:4523:edit:1781001020"
    assert message.reply_to == "5512345678:4523"
    assert message.dedupe_key == "telegram:tgc_01:781234563"
    assert message.text == "Saya mau pesan 3, bukan 2"
    assert message.at == "2026-06-09T10:30:20.000Z"  # edit_date, not date


def tg_update(**message) -> dict:
    base = {
        "message_id": 10,
        "from": {"id": 42, "is_bot": False, "first_name": "Ani"},
        "chat": {"id": 42, "type": "private"},
        "date": 1781000000,
    }
    return {"update_id": 900, "message": {**base, **message}}


def test_telegram_photo_uses_the_largest_size_and_the_caption():
    photo = [
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 60, "file_size": 1200},
        {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 853, "file_size": 98000},
        {"file_id": "medium", "file_unique_id": "m", "width": 320, "height": 213, "file_size": 14000},
    ]
    message = only(parse_telegram(tg_update(photo=photo, caption="Ini fotonya"), "c"))
    assert message.kind == "image"
    assert message.text == "Ini fotonya"
    assert message.media == {
        "type": "image",
        "id": "large",
        "file_unique_id": "l",
        "width": 1280,
        "height": 853,
        "caption": "Ini fotonya",
    }
    assert message.sender == Sender(channel="telegram", user_id="42", name="Ani")


@pytest.mark.parametrize(
    ("content", "kind", "media"),
    [
        (
            {
                "document": {
                    "file_id": "d1",
                    "file_unique_id": "u",
                    "file_name": "a.pdf",
                    "mime_type": "application/pdf",
                }
            },
            "document",
            {
                "type": "document",
                "id": "d1",
                "file_unique_id": "u",
                "mime_type": "application/pdf",
                "filename": "a.pdf",
            },
        ),
        (
            {"voice": {"file_id": "v1", "file_unique_id": "u", "duration": 3, "mime_type": "audio/ogg"}},
            "audio",
            {
                "type": "audio",
                "id": "v1",
                "file_unique_id": "u",
                "mime_type": "audio/ogg",
                "duration": 3,
                "voice": True,
            },
        ),
        (
            {"sticker": {"file_id": "s1", "file_unique_id": "u", "emoji": "\U0001f600"}},
            "sticker",
            {"type": "sticker", "id": "s1", "file_unique_id": "u", "emoji": "\U0001f600"},
        ),
        (
            {"location": {"latitude": -6.2, "longitude": 106.8}},
            "location",
            {"type": "location", "latitude": -6.2, "longitude": 106.8},
        ),
    ],
)
def test_telegram_media(content, kind, media):
    message = only(parse_telegram(tg_update(**content), "c"))
    assert (message.kind, message.media, message.text) == (kind, media, None)


def test_telegram_shared_contact_phone_goes_to_media_not_to_the_sender():
    contact = {"phone_number": "+6281234567890", "first_name": "Budi", "user_id": 5512345678}
    message = only(parse_telegram(tg_update(contact=contact), "c"))
    assert message.kind == "contacts"
    assert message.media == {
        "type": "contacts",
        "phone": "+6281234567890",
        "first_name": "Budi",
        "user_id": "5512345678",
    }
    assert message.sender.phone is None


def test_telegram_bot_senders_replies_and_channel_posts():
    bot = tg_update(text="ping", **{"from": {"id": 7, "is_bot": True, "first_name": "Helper", "username": "h_bot"}})
    assert only(parse_telegram(bot, "c")).sender == Sender(
        channel="telegram", user_id="7", name="Helper", username="h_bot"
    )
    reply = tg_update(text="yes", reply_to_message={"message_id": 9, "chat": {"id": 42}, "date": 1, "text": "?"})
    assert only(parse_telegram(reply, "c")).reply_to == "42:9"
    post = {
        "update_id": 901,
        "channel_post": {
            "message_id": 3,
            "sender_chat": {"id": -1001234567890, "title": "Promo Channel", "username": "promo", "type": "channel"},
            "chat": {"id": -1001234567890, "title": "Promo Channel", "type": "channel"},
            "date": 1781000000,
            "text": "New arrivals",
        },
    }
    message = only(parse_telegram(post, "c"))
    assert message.provider_id == "-1001234567890:3"
    assert message.sender == Sender(
        channel="telegram", user_id="-1001234567890", name="Promo Channel", username="promo"
    )


def test_telegram_other_updates_are_other_with_the_sender():
    callback = {
        "update_id": 902,
        "callback_query": {
            "id": "4382bfdwdsb323b2d9",
            "from": {"id": 42, "is_bot": False, "first_name": "Ani", "last_name": "Lestari", "username": "ani"},
            "message": {"message_id": 10, "chat": {"id": 42, "type": "private"}, "date": 1781000000},
            "chat_instance": "-8150123",
            "data": "size_m",
        },
    }
    event = only(parse_telegram(callback, "c"))
    assert isinstance(event, Other)
    assert event.kind == "telegram:callback_query"
    assert event.dedupe_key == "telegram:c:902"
    assert event.sender == Sender(channel="telegram", user_id="42", name="Ani Lestari", username="ani")
    assert event.at == "2026-06-09T10:13:20.000Z"
    assert event.raw == callback
    member = {"update_id": 903, "my_chat_member": {"chat": {"id": 42}, "from": {"id": 42}, "date": 1781000060}}
    assert only(parse_telegram(member, "c")).kind == "telegram:my_chat_member"
    assert only(parse_telegram(member, "c")).at == "2026-06-09T10:14:20.000Z"


# --- SNS: SES, SMS ------------------------------------------------------------------------------------


def test_ses_permanent_bounce_fails_the_message_and_suppresses_each_recipient():
    events = parse_sns(fixture("sns_ses_bounce.json"))
    message_id = "0100019c5a7e3b21-8f4d2c6a-1e9b-4a7d-b3c5-2f6e8a1d4c7b-000000"
    key = "sns:5c2f8a1e-7b3d-5e9f-a1c4-6d8b2e4f7a9c"
    status, first, second = events
    assert isinstance(status, Status)
    assert (status.account_id, status.channel, status.provider_id) == ("news@example.com", "email", message_id)
    assert (status.status, status.error_code, status.error_title) == ("failed", "bounce:Permanent", "General")
    assert status.dedupe_key == f"{key}:0"
    assert status.at == "2026-06-09T10:33:22.518Z"
    assert [(p.kind, p.subject.email, p.subject.user_id, p.detail, p.dedupe_key) for p in (first, second)] == [
        ("bounce", "rina.putri@example.net", "rina.putri@example.net", "General", f"{key}:1"),
        ("bounce", "old.inbox@example.org", "old.inbox@example.org", "General", f"{key}:2"),
    ]
    assert all(isinstance(p, Preference) and p.channel == "email" for p in (first, second))
    assert first.account_id == "news@example.com"


def test_ses_complaint_in_the_notification_form():
    preference = only(parse_sns(fixture("sns_ses_complaint.json")))
    assert preference == Preference(
        account_id="news@example.com",
        channel="email",
        dedupe_key="sns:8d1e4b7a-2c5f-5a8d-b3e6-9f1a4c7d2e5b",
        kind="complaint",
        subject=Sender(channel="email", user_id="dewi.s@example.net", email="dewi.s@example.net"),
        at="2026-06-09T14:02:11.000Z",
        detail="abuse",
        raw=preference.raw,
    )
    assert preference.raw["recipient"] == {"emailAddress": "dewi.s@example.net"}
    assert "headers" not in preference.raw["mail"]


def test_ses_delivery():
    status = only(parse_sns(fixture("sns_ses_delivery.json")))
    assert isinstance(status, Status)
    assert status.status == "delivered"
    assert status.provider_id == "0100019c5a83f1a9-6b2d8e4c-9a1f-4d3b-a7e5-3c8f1b6d9a2e-000000"
    assert status.recipient == Sender(channel="email", user_id="maya.chen@example.org", email="maya.chen@example.org")
    assert status.at == "2026-06-09T10:36:03.914Z"
    assert status.dedupe_key == "sns:2a7d5c9e-4f1b-5d3a-8e6c-1b9f3d7a5c2e"


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_sns_confirmations_are_left_to_the_processor(kind):
    envelope = fixture("sns_subscription_confirmation.json")
    envelope["Type"] = kind
    assert parse_sns(envelope) == []


def test_sms_inbound_message():
    envelope = fixture("sns_sms_inbound.json")
    message = only(parse_sns(envelope))
    assert message == Message(
        account_id="+15550100999",
        provider_id="c4e2a9f1-7b3d-5e8a-9f2c-1d6b4a8e3c7f",
        dedupe_key="sns:6e3b9d1f-8a2c-5f7e-b4d1-3a9c6e2f8b5d",
        sender=Sender(channel="sms", user_id="+12025550178", phone="+12025550178"),
        at="2026-06-09T11:04:17.268Z",
        kind="text",
        text="Yes, please send me the June catalog",
        raw=json.loads(envelope["Message"]),
    )


@pytest.mark.parametrize(
    ("event_type", "detail_key", "detail", "expected"),
    [
        ("Send", "send", {}, ("Status", "sent", None, "2026-06-09T10:00:00.000Z")),
        (
            "Open",
            "open",
            {"timestamp": "2026-06-09T12:00:00.100Z"},
            ("Status", "read", None, "2026-06-09T12:00:00.100Z"),
        ),
        ("Reject", "reject", {"reason": "Bad content"}, ("Status", "failed", "reject", "2026-06-09T10:00:00.000Z")),
        (
            "Rendering Failure",
            "failure",
            {"errorMessage": "Attribute 'name' is not present", "templateName": "t"},
            ("Status", "failed", "rendering_failure", "2026-06-09T10:00:00.000Z"),
        ),
        (
            "Bounce",
            "bounce",
            {"bounceType": "Undetermined", "bounceSubType": "Undetermined", "timestamp": "2026-06-09T10:05:00Z"},
            ("Status", "failed", "bounce:Undetermined", "2026-06-09T10:05:00.000Z"),
        ),
        (
            "Bounce",
            "bounce",
            {"bounceType": "Transient", "bounceSubType": "MailboxFull", "timestamp": "2026-06-09T10:05:00Z"},
            ("Other", "email:soft_bounce", None, "2026-06-09T10:05:00.000Z"),
        ),
        (
            "DeliveryDelay",
            "deliveryDelay",
            {"delayType": "MailboxFull", "timestamp": "2026-06-09T10:06:00Z"},
            ("Other", "email:delivery_delay", None, "2026-06-09T10:06:00.000Z"),
        ),
        (
            "Click",
            "click",
            {"link": "https://example.com/sale", "timestamp": "2026-06-09T10:07:00Z"},
            ("Other", "email:click", None, "2026-06-09T10:07:00.000Z"),
        ),
        (
            "Subscription",
            "subscription",
            {"timestamp": "2026-06-09T10:08:00Z"},
            ("Other", "email:subscription", None, "2026-06-09T10:08:00.000Z"),
        ),
    ],
)
def test_ses_event_types(event_type, detail_key, detail, expected):
    event = only(parse_sns(sns_envelope(ses_event(event_type, detail_key, detail))))
    cls, what, code, at = expected
    assert type(event).__name__ == cls
    assert event.account_id == "news@example.com"
    assert event.at == at
    assert event.dedupe_key == "sns:11111111-2222-5333-8444-555555555555"
    if cls == "Status":
        assert (event.status, event.error_code, event.provider_id) == (what, code, "0100019c-ses-message-000000")
        assert event.recipient.email == "rina.putri@example.net"
    else:
        assert event.kind == what
        assert event.channel == "email"


def test_ses_reject_names_the_reason():
    event = only(parse_sns(sns_envelope(ses_event("Reject", "reject", {"reason": "Bad content"}))))
    assert event.error_title == "Bad content"


@pytest.mark.parametrize(
    ("event_type", "cls", "status"),
    [
        ("TEXT_SUCCESSFUL", Status, "sent"),
        ("TEXT_DELIVERED", Status, "delivered"),
        ("TEXT_BLOCKED", Status, "failed"),
        ("TEXT_CARRIER_UNREACHABLE", Status, "failed"),
        ("TEXT_TTL_EXPIRED", Status, "failed"),
        ("TEXT_SPAM", Status, "failed"),
        ("TEXT_UNKNOWN", Status, "failed"),
        ("TEXT_QUEUED", Other, "sms:queued"),
        ("TEXT_PENDING", Other, "sms:pending"),
    ],
)
def test_sms_delivery_events(event_type, cls, status):
    record = {
        "eventType": event_type,
        "eventVersion": "1.0",
        "eventTimestamp": 1686975103470,
        "isFinal": True,
        "originationPhoneNumber": "+15550100999",
        "destinationPhoneNumber": "+12025550178",
        "messageId": "862a8790-60c0-4430-9b2b-658bdexample",
        "messageStatus": event_type.removeprefix("TEXT_"),
        "messageStatusDescription": "Carrier said so",
    }
    event = only(parse_sns(sns_envelope(record)))
    assert isinstance(event, cls)
    assert event.account_id == "+15550100999"
    assert event.channel == "sms"
    assert event.at == "2023-06-17T04:11:43.470Z"  # milliseconds, exactly
    if cls is Status:
        assert event.status == status
        assert event.provider_id == "862a8790-60c0-4430-9b2b-658bdexample"
        assert event.recipient == Sender(channel="sms", user_id="+12025550178", phone="+12025550178")
        failed = status == "failed"
        assert event.error_code == (event_type if failed else None)
        assert event.error_title == ("Carrier said so" if failed else None)
    else:
        assert event.kind == status


@pytest.mark.parametrize("message", [{"hello": "world"}, "plain text, not JSON", []])
def test_sns_unknown_messages_are_other(message):
    event = only(parse_sns(sns_envelope(message if not isinstance(message, list) else json.dumps(message))))
    assert isinstance(event, Other)
    assert (event.kind, event.account_id, event.channel) == ("sns:unknown", "", "sns")
    assert event.dedupe_key == "sns:11111111-2222-5333-8444-555555555555"
    assert event.at == "2026-06-09T11:00:00.250Z"
    assert event.raw["TopicArn"].endswith(":audience-dev-ses-events")


# --- custom channels and web chat ---------------------------------------------------------------------


def test_custom_messages_and_statuses():
    body = {
        "events": [
            {
                "type": "message",
                "id": "m-1",
                "from": {"id": "u-9", "name": "Ani", "phone": "+6281234567890", "email": "Ani@Example.com"},
                "text": "Halo",
                "timestamp": "2026-06-09T17:13:20+07:00",
                "referral": {"utm_source": "newsletter"},
            },
            {
                "type": "message",
                "id": "m-2",
                "from": {"id": "u-9"},
                "media": {"type": "image", "url": "https://cdn.example/p.png"},
                "timestamp": 1781000000,
            },
            {
                "type": "status",
                "message_id": "out-7",
                "status": "failed",
                "timestamp": "1781000001",
                "error": {"code": "E42", "title": "Recipient gone"},
            },
        ]
    }
    text, image, status = parse_custom(body, "conn_1", "webchat")
    assert text == Message(
        account_id="conn_1",
        provider_id="m-1",
        dedupe_key="webchat:conn_1:msg:m-1",
        sender=Sender(channel="webchat", user_id="u-9", phone="+6281234567890", email="ani@example.com", name="Ani"),
        at="2026-06-09T10:13:20.000Z",
        kind="text",
        text="Halo",
        referral={"utm_source": "newsletter"},
        raw=body["events"][0],
    )
    assert (image.kind, image.media, image.at) == ("image", body["events"][1]["media"], "2026-06-09T10:13:20.000Z")
    assert status == Status(
        account_id="conn_1",
        channel="webchat",
        provider_id="out-7",
        dedupe_key="webchat:conn_1:status:out-7:failed",
        status="failed",
        at="2026-06-09T10:13:21.000Z",
        error_code="E42",
        error_title="Recipient gone",
        raw=body["events"][2],
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "body: missing events"),
        ({"events": {}}, "events: not a list"),
        ({"events": [{"type": "message"}] * 101}, "events: more than 100 items"),
        ({"events": [{"id": "1"}]}, "events[0]: missing type"),
        ({"events": [{"type": "typing"}]}, "events[0].type: not message or status ('typing')"),
        ({"events": [{"type": "message", "from": {"id": "u"}, "text": "x", "timestamp": 1}]}, "events[0]: missing id"),
        ({"events": [{"type": "message", "id": "1", "text": "x", "timestamp": 1}]}, "events[0]: missing from"),
        (
            {"events": [{"type": "message", "id": "1", "from": {}, "text": "x", "timestamp": 1}]},
            "events[0].from: missing id",
        ),
        (
            {
                "events": [
                    {"type": "message", "id": "1", "from": {"id": "u", "phone": "0812"}, "text": "x", "timestamp": 1}
                ]
            },
            "events[0].from.phone: not E.164",
        ),
        (
            {"events": [{"type": "message", "id": "1", "from": {"id": "u"}, "timestamp": 1}]},
            "events[0]: missing text or media",
        ),
        (
            {"events": [{"type": "message", "id": "1", "from": {"id": "u"}, "text": "x", "timestamp": "yesterday"}]},
            "events[0].timestamp",
        ),
        (
            {"events": [{"type": "status", "message_id": "1", "status": "seen", "timestamp": 1}]},
            "events[0].status: not one of sent, delivered, read, failed",
        ),
    ],
)
def test_custom_payload_errors(body, error):
    with pytest.raises(PayloadError, match=re.escape(error)):
        parse_custom(body, "conn_1", "custom")


# --- malformed payloads, bounds, times, text ----------------------------------------------------------


def _two_changes(second_message: dict) -> dict:
    body = wa_body({"messages": [wa_message("text", {"body": "fine"})]})
    body["entry"][0]["changes"].append(copy.deepcopy(body["entry"][0]["changes"][0]))
    body["entry"][0]["changes"][1]["value"]["messages"] = [second_message]
    return body


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], "body: not an object"),
        ({"entry": []}, "body: missing object"),
        ({"object": "user", "entry": []}, "object: not a Meta webhook object ('user')"),
        ({"object": "page"}, "body: missing entry"),
        ({"object": "page", "entry": {}}, "entry: not a list"),
        ({"object": "page", "entry": ["x"]}, "entry[0]: not an object"),
        (
            _two_changes({"from": "6281234567890", "timestamp": "1", "type": "text"}),
            "entry[0].changes[1].value.messages[0]: missing id",
        ),
        (
            _two_changes({"id": "wamid.X", "timestamp": "1", "type": "text"}),
            "entry[0].changes[1].value.messages[0]: missing from",
        ),
        (
            _two_changes({"id": "wamid.X", "from": "1234567", "timestamp": "yesterday", "type": "text"}),
            "entry[0].changes[1].value.messages[0].timestamp: not a valid time",
        ),
        (
            _two_changes({"id": "wamid.X", "from": "1234567", "type": "text"}),
            "entry[0].changes[1].value.messages[0].timestamp: missing",
        ),
        (
            {
                "object": "whatsapp_business_account",
                "entry": [{"changes": [{"field": "messages", "value": {"messages": []}}]}],
            },
            "entry[0].changes[0].value: missing metadata",
        ),
        (
            wa_body({"statuses": [{"id": "wamid.S", "timestamp": "1"}]}),
            "entry[0].changes[0].value.statuses[0]: missing status",
        ),
        (
            wa_body(
                {"user_preferences": [{"category": "marketing_messages", "value": "stop", "timestamp": 1}]},
                "user_preferences",
            ),
            "entry[0].changes[0].value.user_preferences[0]: missing wa_id",
        ),
        ({"object": "page", "entry": [{"messaging": []}]}, "entry[0]: missing id"),
        (messaging_body({"timestamp": 1, "message": {"mid": "m"}}), "entry[0].messaging[0]: missing sender"),
        (messaging_body({"sender": {}, "timestamp": 1}), "entry[0].messaging[0].sender: missing id"),
        (messaging_body(messaging_event(message={"text": "no mid"})), "entry[0].messaging[0].message: missing mid"),
    ],
)
def test_meta_payload_errors_name_the_path(body, error):
    with pytest.raises(PayloadError) as caught:
        parse_meta(body)
    assert str(caught.value) == error


@pytest.mark.parametrize(
    ("update", "error"),
    [
        ("nope", "update: not an object"),
        ({"message": {}}, "update: missing update_id"),
        ({"update_id": 1, "message": {"message_id": 1, "date": 1}}, "message: missing chat"),
        ({"update_id": 1, "message": {"chat": {"id": 1}, "date": 1}}, "message: missing message_id"),
        (
            {"update_id": 1, "edited_message": {"message_id": 1, "chat": {}, "date": 1}},
            "edited_message.chat: missing id",
        ),
        ({"update_id": 1, "message": {"message_id": 1, "chat": {"id": 1}}}, "message.date: missing"),
    ],
)
def test_telegram_payload_errors(update, error):
    with pytest.raises(PayloadError) as caught:
        parse_telegram(update, "c")
    assert str(caught.value) == error


@pytest.mark.parametrize(
    ("envelope", "error"),
    [
        ({"Type": "Notification", "Message": "{}"}, "envelope: missing MessageId"),
        ({"MessageId": "1", "Message": "{}"}, "envelope: missing Type"),
        ({"Type": "Notification", "MessageId": "1"}, "envelope: missing Message"),
        ({"Type": "Notification", "MessageId": "1", "Message": {"a": 1}}, "envelope.Message: not a string"),
        (sns_envelope({"eventType": "Delivery", "mail": {"source": "a@b.c"}}), "Message.mail: missing messageId"),
        (
            sns_envelope(
                {
                    "eventType": "Bounce",
                    "mail": {"messageId": "x"},
                    "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{}]},
                }
            ),
            "Message.bounce.bouncedRecipients[0]: missing emailAddress",
        ),
        (sns_envelope({"eventType": "TEXT_DELIVERED", "eventTimestamp": 1}), "Message: missing messageId"),
        (
            sns_envelope({"originationNumber": "+12025550178", "inboundMessageId": "i"}),
            "Message: missing destinationNumber",
        ),
    ],
)
def test_sns_payload_errors(envelope, error):
    with pytest.raises(PayloadError) as caught:
        parse_sns(envelope)
    assert str(caught.value) == error


def test_event_count_is_bounded():
    def msgs(n, start=0):
        return [wa_message("text", {"body": "x"}, id=f"wamid.{start + i}") for i in range(n)]

    assert len(parse_meta(wa_body({"messages": msgs(1000)}))) == 1000
    with pytest.raises(PayloadError, match=r"entry\[0\].changes\[0\].value.messages: more than 1000 items"):
        parse_meta(wa_body({"messages": msgs(1001)}))
    body = wa_body({"messages": msgs(600)})
    body["entry"].append(wa_body({"messages": msgs(401, start=600)})["entry"][0])
    with pytest.raises(PayloadError, match="payload: more than 1000 events"):
        parse_meta(body)


def test_timestamps_in_seconds_milliseconds_and_iso():
    as_string = parse_wa_message(wa_message("text", {"body": "x"}, timestamp="1781000000"))
    as_int = parse_wa_message(wa_message("text", {"body": "x"}, timestamp=1781000000))
    assert as_string.at == as_int.at == "2026-06-09T10:13:20.000Z"
    # Messenger counts milliseconds: the same instant, with its milliseconds kept.
    messenger = only(parse_meta(messaging_body(messaging_event(message={"mid": "m", "text": "x"}))))
    assert messenger.at == "2026-06-09T10:25:00.123Z"
    # WhatsApp counts seconds: a millisecond value there is no time at all.
    with pytest.raises(PayloadError, match="timestamp: not a valid time"):
        parse_wa_message(wa_message("text", {"body": "x"}, timestamp="1781000000000"))
    naive = parse_custom(
        {
            "events": [
                {"type": "message", "id": "1", "from": {"id": "u"}, "text": "x", "timestamp": "2026-06-09T10:13:20"}
            ]
        },
        "c",
        "custom",
    )
    assert only(naive).at == "2026-06-09T10:13:20.000Z"


def test_text_is_cut_to_4096_characters():
    long = "a" * 5000
    assert parse_wa_message(wa_message("text", {"body": long})).text == "a" * MAX_TEXT
    caption = parse_wa_message(wa_message("image", {"id": "1", "caption": long}))
    assert caption.text == caption.media["caption"] == "a" * MAX_TEXT
    telegram = only(parse_telegram(tg_update(text=long), "c"))
    assert len(telegram.text) == MAX_TEXT
    sms = only(
        parse_sns(
            sns_envelope(
                {"originationNumber": "+1", "destinationNumber": "+2", "inboundMessageId": "i", "messageBody": long}
            )
        )
    )
    assert len(sms.text) == MAX_TEXT
    assert sms.sender.phone is None  # "+1" is no E.164 number


def test_a_custom_event_without_a_timestamp_happened_when_it_is_read() -> None:
    from audience import clock

    before = clock.now_iso()
    (message,) = parse_custom(
        {"events": [{"type": "message", "id": "1", "from": {"id": "u"}, "text": "x"}]}, "ch", "webchat"
    )
    assert before <= message.at <= clock.now_iso()


def test_a_messenger_edit_is_a_message_of_its_own_pointing_at_the_original() -> None:
    body = {
        "object": "page",
        "entry": [
            {
                "id": "1143207162471512",
                "time": 1781000000000,
                "messaging": [
                    {
                        "sender": {"id": "6543210987654321"},
                        "recipient": {"id": "1143207162471512"},
                        "timestamp": 1781000000000,
                        "message_edit": {"mid": "m_original", "text": "corrected", "num_edit": 2},
                    }
                ],
            }
        ],
    }
    (edit,) = parse_meta(body)
    assert isinstance(edit, Message)
    assert edit.kind == "edit"
    assert edit.provider_id == "m_original:edit:2"
    assert edit.reply_to == "m_original"
    assert edit.text == "corrected"
