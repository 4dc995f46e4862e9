"""Each platform end to end on the local stack: a connection, its webhook (or the stack's own SNS topic),
InboundFunction on drain, and what the API then shows (contacts, conversation logs, statuses,
subscriptions, do-not-contact entries, consent and eligibility).

One stack serves the whole module; every test has its own orgs and account ids.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.bus import validate
from tests.channels import (
    APP_SECRET,
    CUSTOM_SECRET,
    PUBLIC_BASE_URL,
    VERIFY_TOKEN,
    BotApiStub,
    SnsSigner,
    Webhooks,
    connect,
    connect_whatsapp,
    custom_headers,
    dead_letters,
    fixture,
    text_message,
    trust,
    whatsapp_payload,
)

JSON = {"Content-Type": "application/json"}
TOPIC = fixture("sns_ses_bounce")["TopicArn"]
SARI, RINA, MAYA = "6281234567890", "6281398765432", "12025550143"
_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def _no_dead_letters(stack: Any) -> Iterator[None]:
    """Every test must leave nothing in InboundDLQ."""
    before = dead_letters(stack)
    yield
    assert dead_letters(stack) == before, "InboundFunction failed a record every time (it is in InboundDLQ)"


def number() -> int:
    return next(_numbers)


def digits() -> str:
    """An account id (phone number id, page id, ...) no other test uses."""
    return f"7{number():014d}"


def whatsapp(tenant: Any, phone_number_id: str, *, secret: str = APP_SECRET) -> dict[str, Any]:
    return connect_whatsapp(tenant, phone_number_id, waba=digits(), secret=secret)


def contacts(tenant: Any) -> list[dict[str, Any]]:
    return [
        tenant.client.get(f"/orgs/c/contacts/{c['id']}").json()
        for c in tenant.client.get("/orgs/c/contacts").json()["items"]
    ]


def only_contact(tenant: Any) -> dict[str, Any]:
    found = contacts(tenant)
    assert len(found) == 1, found
    return found[0]


def contact_with_phone(tenant: Any, phone: str) -> dict[str, Any]:
    found = [c for c in contacts(tenant) if c.get("phone") == phone]
    assert len(found) == 1, contacts(tenant)
    return found[0]


def messages(tenant: Any, contact_id: str) -> list[dict[str, Any]]:
    return tenant.client.get(f"/orgs/c/contacts/{contact_id}/messages").json()["items"]


def dnc(tenant: Any) -> list[tuple[str, str | None, str]]:
    items = tenant.client.get("/orgs/c/do-not-contact").json()["items"]
    return sorted((e["identifier"], e["channel"], e["source"]) for e in items)


def eligible(tenant: Any, contact_id: str, channel: str, purpose: str) -> dict[str, Any]:
    reply = tenant.client.get(
        f"/orgs/c/contacts/{contact_id}/eligibility", params={"channel": channel, "purpose": purpose}
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def consent(tenant: Any, contact_id: str) -> list[dict[str, Any]]:
    return tenant.client.get(f"/orgs/c/contacts/{contact_id}/consent").json()["items"]


def stored_message(tenant: Any, channel: str, provider_id: str) -> dict[str, Any] | None:
    from audience import container

    return container.inbound_repository().message(tenant.org_id, channel, provider_id)


# -- Telegram ------------------------------------------------------------------------------------------


def bot_token() -> str:
    return f"{500000000 + number()}:AAH-test_token_abcdefghijklmnopqrstuvwxy"


def telegram(hooks: Webhooks, connection_id: str, payload: dict[str, Any], secret: str) -> Any:
    return hooks.post(connection_id, json.dumps(payload).encode(), {**JSON, "X-Telegram-Bot-Api-Secret-Token": secret})


def registered_bot(tenant: Any, bot_api: BotApiStub) -> tuple[dict[str, Any], str, str]:
    token = bot_token()
    connection = connect(tenant, "telegram", {"bot_username": "acme_shop_bot"}, {"bot_token": token})
    reply = tenant.client.post(f"/orgs/c/connections/{connection['id']}/telegram-webhook")
    assert reply.status_code == 200, reply.text
    return connection, token, bot_api.secret_token(token)


def test_telegram_setwebhook_then_a_message_and_an_edit_reach_the_contact(
    stack: Any, org: Any, hooks: Webhooks, bot_api: BotApiStub
) -> None:
    token = bot_token()
    connection = connect(org, "telegram", {"bot_username": "acme_shop_bot"}, {"bot_token": token})
    assert connection["telegram_webhook"] is None
    assert connection["settings"]["bot_id"] == token.split(":")[0]
    url = f"{PUBLIC_BASE_URL}/webhooks/{connection['id']}"
    assert connection["webhook_url"] == url

    reply = org.client.post(f"/orgs/c/connections/{connection['id']}/telegram-webhook")
    assert reply.status_code == 200, reply.text
    assert reply.json()["telegram_webhook"]["url"] == url
    (call,) = bot_api.set_webhook_calls(token)
    assert call["url"] == url
    secret = call["secret_token"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,256}", secret)
    assert {"message", "edited_message"} <= set(call["allowed_updates"])
    shown = org.client.get(f"/orgs/c/connections/{connection['id']}").json()
    assert secret not in json.dumps(shown)
    assert token not in json.dumps(shown)
    assert shown["secrets_set"] == ["bot_token"]
    assert shown["telegram_webhook"]["url"] == url

    assert telegram(hooks, connection["id"], fixture("webhook_telegram_message"), secret).status_code == 200
    stack.drain()
    contact = only_contact(org)
    assert {"channel": "telegram", "user_id": "5512345678"} in contact["channels"]
    assert contact["full_name"] == "Budi Santoso"
    assert contact["status"] == "SUBSCRIBED"
    assert [(m["id"], m["channel"], m["kind"], m["text"]) for m in messages(org, contact["id"])] == [
        ("5512345678:4521", "telegram", "text", "/start promo_juni")
    ]

    assert telegram(hooks, connection["id"], fixture("webhook_telegram_edited_message"), secret).status_code == 200
    stack.drain()
    assert len(contacts(org)) == 1
    logged = messages(org, contact["id"])
    assert [(m["id"], m["kind"], m["text"]) for m in logged] == [
        ("5512345678:4523:edit:1781001020", "edit", "Saya mau pesan 3, bukan 2"),
        ("5512345678:4521", "text", "/start promo_juni"),
    ]
    assert logged[0]["at"] == "2026-06-09T10:30:20.000Z"  # its edit_date (1781001020), not its date


def test_a_telegram_edit_of_a_message_already_logged_is_logged_as_an_edit(
    stack: Any, org: Any, hooks: Webhooks, bot_api: BotApiStub
) -> None:
    connection, _, secret = registered_bot(org, bot_api)
    telegram(hooks, connection["id"], fixture("webhook_telegram_message"), secret)
    stack.drain()
    edit = fixture("webhook_telegram_edited_message")
    edit["edited_message"]["message_id"] = 4521  # the message received above, edited
    assert telegram(hooks, connection["id"], edit, secret).status_code == 200
    stack.drain()
    logged = messages(org, only_contact(org)["id"])
    assert [(m["kind"], m["text"]) for m in logged] == [
        ("edit", "Saya mau pesan 3, bukan 2"),
        ("text", "/start promo_juni"),
    ]


def test_a_messenger_edit_of_a_message_already_logged_is_logged_as_an_edit(
    stack: Any, org: Any, hooks: Webhooks
) -> None:
    page = digits()
    connection = connect(org, "messenger", {"page_id": page}, {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN})
    payload = fixture("webhook_messenger_message")
    payload["entry"][0]["id"] = page
    event = payload["entry"][0]["messaging"][0]
    event["recipient"]["id"] = page
    hooks.meta(connection["id"], payload)
    stack.drain()
    edit = copy.deepcopy(payload)
    edit["entry"][0]["messaging"][0] = {
        "sender": event["sender"],
        "recipient": event["recipient"],
        "timestamp": event["timestamp"] + 60_000,
        "message_edit": {"mid": event["message"]["mid"], "text": "Do you ship to Malang?", "num_edit": 1},
    }
    assert hooks.meta(connection["id"], edit).status_code == 200
    stack.drain()
    logged = messages(org, only_contact(org)["id"])
    assert [(m["kind"], m["text"]) for m in logged] == [
        ("edit", "Do you ship to Malang?"),
        ("text", "Do you ship to Surabaya?"),
    ]


def test_a_refused_setwebhook_is_a_502_with_telegrams_words(org: Any, bot_api: BotApiStub) -> None:
    token = bot_token()
    connection = connect(org, "telegram", {}, {"bot_token": token})
    bot_api.refuse = True
    try:
        reply = org.client.post(f"/orgs/c/connections/{connection['id']}/telegram-webhook")
    finally:
        bot_api.refuse = False
    assert reply.status_code == 502, reply.text
    assert "Unauthorized" in reply.json()["error"]["message"]
    assert len(bot_api.set_webhook_calls(token)) == 1
    assert org.client.get(f"/orgs/c/connections/{connection['id']}").json()["telegram_webhook"] is None


def test_a_refused_reregistration_keeps_the_secret_telegram_still_sends(
    stack: Any, org: Any, hooks: Webhooks, bot_api: BotApiStub
) -> None:
    from audience.webhooks import ack

    connection, _, secret = registered_bot(org, bot_api)
    bot_api.refuse = True
    try:
        assert org.client.post(f"/orgs/c/connections/{connection['id']}/telegram-webhook").status_code == 502
    finally:
        bot_api.refuse = False
    ack.reset()  # a webhook function started after the failed call
    assert telegram(hooks, connection["id"], fixture("webhook_telegram_message"), secret).status_code == 200


def test_without_setwebhook_no_token_is_accepted(stack: Any, org: Any, hooks: Webhooks) -> None:
    token = bot_token()
    connection = connect(org, "telegram", {}, {"bot_token": token})
    for guess in (token, token.split(":")[1], "anything", VERIFY_TOKEN):
        assert telegram(hooks, connection["id"], fixture("webhook_telegram_message"), guess).status_code == 403
    assert hooks.queued() == 0


# -- Messenger and Instagram ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "setting", "name", "user_id", "text"),
    [
        ("messenger", "page_id", "webhook_messenger_message", "6972145526184383", "Do you ship to Surabaya?"),
        (
            "instagram",
            "instagram_account_id",
            "webhook_instagram_message",
            "1298675312454432",
            "Is the blue one still available in size M?",
        ),
    ],
)
def test_messenger_and_instagram_messages_create_a_contact_by_its_scoped_id(
    stack: Any, org: Any, hooks: Webhooks, platform: str, setting: str, name: str, user_id: str, text: str
) -> None:
    account = digits()
    connection = connect(org, platform, {setting: account}, {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN})
    payload = fixture(name)
    payload["entry"][0]["id"] = account
    payload["entry"][0]["messaging"][0]["recipient"]["id"] = account
    assert hooks.meta(connection["id"], payload, secret="not-the-app-secret").status_code == 401
    assert hooks.meta(connection["id"], payload).status_code == 200
    stack.drain()

    contact = only_contact(org)
    assert contact["channels"] == [{"channel": platform, "user_id": user_id}]
    logged = messages(org, contact["id"])
    message = payload["entry"][0]["messaging"][0]["message"]
    assert [(m["id"], m["channel"], m["direction"], m["kind"], m["text"]) for m in logged] == [
        (message["mid"], platform, "inbound", "text", text)
    ]
    assert logged[0]["connection_id"] == connection["id"]
    assert logged[0]["reply_to"] == (message.get("reply_to") or {}).get("mid")


# -- WhatsApp ------------------------------------------------------------------------------------------


def test_a_multi_entry_batch_goes_to_each_entrys_own_org(stack: Any, org: Any, other_org: Any, hooks: Webhooks) -> None:
    mine, theirs = digits(), digits()
    connection = whatsapp(org, mine)
    whatsapp(other_org, theirs)  # the same Meta app: the same app secret
    payload = fixture("webhook_whatsapp_multi_entry")
    entries = payload["entry"]
    entries[0]["changes"][0]["value"]["metadata"]["phone_number_id"] = mine
    entries[1]["changes"][0]["value"]["metadata"]["phone_number_id"] = theirs
    first, second = (entry["changes"][0]["value"] for entry in entries)

    assert hooks.meta(connection["id"], payload).status_code == 200
    stack.drain()

    sari = only_contact(org)
    assert (sari["phone"], sari["full_name"]) == ("+" + SARI, "Sari Wulandari")
    assert [(m["id"], m["text"]) for m in messages(org, sari["id"])] == [(first["messages"][0]["id"], "Terima kasih!")]
    rina = only_contact(other_org)
    assert (rina["phone"], rina["full_name"]) == ("+" + RINA, "Rina Putri")
    assert [(m["kind"], m["text"], m["reply_to"]) for m in messages(other_org, rina["id"])] == [
        ("reaction", "👍", second["messages"][0]["reaction"]["message_id"])
    ]
    assert stored_message(org, "whatsapp", first["statuses"][0]["id"])["status"] == "delivered"
    assert stored_message(other_org, "whatsapp", first["statuses"][0]["id"]) is None
    assert stored_message(other_org, "whatsapp", second["statuses"][0]["id"])["status"] == "read"
    assert stored_message(org, "whatsapp", second["statuses"][0]["id"]) is None


def test_media_interactive_and_referral_messages_are_logged_with_their_details(
    stack: Any, org: Any, hooks: Webhooks
) -> None:
    phone = digits()
    connection = whatsapp(org, phone)
    media = whatsapp_payload("webhook_whatsapp_media", phone)
    interactive = whatsapp_payload("webhook_whatsapp_interactive", phone)
    referral = whatsapp_payload("webhook_whatsapp_referral", phone)
    for payload in (media, interactive, referral):
        assert hooks.meta(connection["id"], payload).status_code == 200
    stack.drain()

    maya = contact_with_phone(org, "+" + MAYA)
    assert maya["full_name"] == "Maya Chen"
    image, ad = (p["entry"][0]["changes"][0]["value"]["messages"][0] for p in (media, referral))
    by_id = {m["id"]: m for m in messages(org, maya["id"])}
    assert set(by_id) == {image["id"], ad["id"]}
    logged = by_id[image["id"]]
    assert logged["kind"] == "image"
    assert logged["text"] == image["image"]["caption"]
    assert logged["reply_to"] == image["context"]["id"]
    assert {k: logged["media"][k] for k in ("type", "id", "mime_type", "caption")} == {
        "type": "image",
        "id": image["image"]["id"],
        "mime_type": "image/jpeg",
        "caption": image["image"]["caption"],
    }
    logged = by_id[ad["id"]]
    assert (logged["kind"], logged["text"]) == ("text", ad["text"]["body"])
    assert logged["referral"]["source_id"] == "120208461853590087"
    assert logged["referral"]["ctwa_clid"] == ad["referral"]["ctwa_clid"]
    assert logged["referral"]["source_type"] == "ad"

    sari = contact_with_phone(org, "+" + SARI)
    (button,) = messages(org, sari["id"])
    assert (button["kind"], button["text"]) == ("interactive", "Ya, konfirmasi")
    assert button["media"] == {"type": "button_reply", "id": "order_confirm", "title": "Ya, konfirmasi"}


def test_a_marketing_stop_and_error_131050_stop_marketing_but_not_transactional_messages(
    stack: Any, org: Any, hooks: Webhooks
) -> None:
    phone = digits()
    connection = whatsapp(org, phone)
    recipient = "12025550178"
    hooks.meta(connection["id"], text_message(phone, "wamid.sari-hi", "Halo", wa_id=SARI))
    hooks.meta(connection["id"], text_message(phone, "wamid.john-hi", "Hello", wa_id=recipient))
    stack.drain()
    sari = contact_with_phone(org, "+" + SARI)
    john = contact_with_phone(org, "+" + recipient)
    assert eligible(org, sari["id"], "whatsapp", "marketing")["allowed"] is True

    assert hooks.meta(connection["id"], whatsapp_payload("webhook_whatsapp_user_preferences", phone)).status_code == 200
    stack.drain()
    records = consent(org, sari["id"])
    assert [(c["channel"], c["opted_in"], c["source"]) for c in records] == [("whatsapp", False, "platform_signal")]
    marketing = eligible(org, sari["id"], "whatsapp", "marketing")
    assert (marketing["allowed"], marketing["reason"]) == (False, "opted_out")
    assert eligible(org, sari["id"], "whatsapp", "transactional")["allowed"] is True

    def failed(wamid: str, code: int) -> dict[str, Any]:
        payload = whatsapp_payload("webhook_whatsapp_status_failed", phone)
        status = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
        status.update(id=wamid, recipient_id=recipient)
        status["errors"][0]["code"] = code
        return payload

    # Another failure leaves marketing alone; 131050 (the user stopped marketing messages) does not.
    hooks.meta(connection["id"], failed("wamid.out-undeliverable", 131026))
    stack.drain()
    assert consent(org, john["id"]) == []
    assert eligible(org, john["id"], "whatsapp", "marketing")["allowed"] is True

    hooks.meta(connection["id"], failed("wamid.out-marketing", 131050))
    stack.drain()
    assert stored_message(org, "whatsapp", "wamid.out-marketing")["error_code"] == "131050"
    records = consent(org, john["id"])
    assert [(c["channel"], c["opted_in"], c["source"]) for c in records] == [("whatsapp", False, "platform_signal")]
    assert eligible(org, john["id"], "whatsapp", "marketing")["allowed"] is False
    assert eligible(org, john["id"], "whatsapp", "transactional")["allowed"] is True
    assert dnc(org) == []  # a platform signal is consent, not a do-not-contact entry


def test_the_orgs_own_keywords_opt_out_and_in_and_stopall_leaves_every_channel(
    stack: Any, org: Any, hooks: Webhooks
) -> None:
    reply = org.client.put(
        "/orgs/c/inbound-settings", json={"opt_out_keywords": ["BERHENTI"], "opt_in_keywords": ["MULAI"]}
    )
    assert reply.status_code == 200, reply.text
    assert (reply.json()["opt_out_keywords"], reply.json()["opt_in_keywords"]) == (["BERHENTI"], ["MULAI"])
    phone = digits()
    connection = whatsapp(org, phone)
    at = itertools.count(1781000000, 60)

    def say(text: str) -> dict[str, Any]:
        n = next(at)
        assert hooks.meta(connection["id"], text_message(phone, f"wamid.{n}", text, at=n)).status_code == 200
        stack.drain()
        return contact_with_phone(org, "+" + SARI)

    contact = say("please stop sending")
    assert contact["status"] == "SUBSCRIBED"
    assert dnc(org) == []
    assert say("berhenti!")["status"] == "UNSUBSCRIBED"
    assert dnc(org) == [("+" + SARI, "whatsapp", "user_message")]
    assert say("MULAI")["status"] == "SUBSCRIBED"
    assert dnc(org) == []
    assert say("Stop sending me these, BERHENTI")["status"] == "SUBSCRIBED"
    assert dnc(org) == []
    assert say("STOPALL")["status"] == "UNSUBSCRIBED"
    assert dnc(org) == [("+" + SARI, None, "user_message")]
    records = consent(org, contact["id"])
    assert (records[0]["channel"], records[0]["opted_in"], records[0]["source"]) == ("all", False, "end_user_message")
    assert len(messages(org, contact["id"])) == 5


@pytest.mark.parametrize(
    "settings",
    [
        {"opt_out_keywords": ["SELESAI"], "opt_in_keywords": ["selesai!"]},
        {"opt_in_keywords": ["stop"]},
        {"opt_out_keywords": ["Start"]},
    ],
)
def test_a_keyword_in_both_lists_is_422(org: Any, settings: dict[str, list[str]]) -> None:
    reply = org.client.put("/orgs/c/inbound-settings", json=settings)
    assert reply.status_code == 422, reply.text
    assert org.client.get("/orgs/c/inbound-settings").json()["opt_out_keywords"] == []


# -- SES and SMS ---------------------------------------------------------------------------------------


def signed(signer: SnsSigner, name: str, **changes: Any) -> dict[str, Any]:
    dropped = ("Signature", "SignatureVersion", "SigningCertURL", "Timestamp")
    return signer.sign({**{k: v for k, v in fixture(name).items() if k not in dropped}, **changes})


def sns_post(hooks: Webhooks, connection_id: str, message: dict[str, Any]) -> Any:
    headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": message["Type"]}
    return hooks.post(connection_id, json.dumps(message).encode(), headers)


def inner(name: str) -> dict[str, Any]:
    return json.loads(fixture(name)["Message"])


def test_ses_events_over_an_sns_https_subscription(stack: Any, org: Any, hooks: Webhooks) -> None:
    connection = connect(org, "ses", {"identity": f"news{number()}@example.com", "topic_arns": [TOPIC]})
    assert connection["settings"]["topic_arns"] == [TOPIC]
    signer = SnsSigner()
    trust(signer)

    assert sns_post(hooks, connection["id"], signed(signer, "sns_ses_bounce")).status_code == 200
    stack.drain()
    assert dnc(org) == [("old.inbox@example.org", "email", "bounce"), ("rina.putri@example.net", "email", "bounce")]
    bounced = stored_message(org, "email", inner("sns_ses_bounce")["mail"]["messageId"])
    assert (bounced["status"], bounced["error_code"]) == ("failed", "bounce:Permanent")

    assert sns_post(hooks, connection["id"], signed(signer, "sns_ses_complaint")).status_code == 200
    stack.drain()
    assert ("dewi.s@example.net", "email", "complaint") in dnc(org)

    assert sns_post(hooks, connection["id"], signed(signer, "sns_ses_delivery")).status_code == 200
    stack.drain()
    delivered = stored_message(org, "email", inner("sns_ses_delivery")["mail"]["messageId"])
    assert delivered["status"] == "delivered"
    assert len(dnc(org)) == 3
    assert signer.fetched == ["https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"]


def test_a_subscription_confirmation_for_a_listed_topic_is_confirmed(stack: Any, org: Any, hooks: Webhooks) -> None:
    from audience import aws

    arn = stack.client("sns").create_topic(Name=TOPIC.rsplit(":", 1)[1])["TopicArn"]
    assert arn == TOPIC
    connection = connect(org, "ses", {"identity": f"news{number()}@example.com", "topic_arns": [TOPIC]})
    signer = SnsSigner()
    trust(signer)
    confirmed: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        confirmed.append(dict(params))

    sns = aws.regional_client("sns", "us-east-1")
    sns.meta.events.register("before-parameter-build.sns.ConfirmSubscription", record)
    try:
        message = signed(signer, "sns_subscription_confirmation")
        assert sns_post(hooks, connection["id"], message).status_code == 200
        stack.drain()
    finally:
        sns.meta.events.unregister("before-parameter-build.sns.ConfirmSubscription", record)
    assert [(c["TopicArn"], c["Token"]) for c in confirmed] == [(TOPIC, message["Token"])]
    assert dnc(org) == []


def test_ses_events_through_the_stacks_own_topic_find_the_org_by_address_then_domain(
    stack: Any, org: Any, other_org: Any
) -> None:
    domain = f"shop{number()}.example"
    connect(org, "ses", {"identity": f"news@{domain}"})
    connect(other_org, "ses", {"identity": domain.upper()})  # identities are kept lower case
    sns, topic = stack.client("sns"), stack.outputs["ChannelEventsTopicArn"]

    def publish(name: str, source: str) -> None:
        message = inner(name)
        message["mail"]["source"] = source
        sns.publish(TopicArn=topic, Message=json.dumps(message))

    publish("sns_ses_bounce", f"news@{domain}")
    stack.drain()
    assert dnc(org) == [("old.inbox@example.org", "email", "bounce"), ("rina.putri@example.net", "email", "bounce")]
    assert dnc(other_org) == []

    publish("sns_ses_complaint", f"offers@{domain}")  # no connection for the address: the domain's
    publish("sns_ses_delivery", "news@nobody.example")  # nobody's: dropped, not failed
    stack.drain()
    assert dnc(other_org) == [("dewi.s@example.net", "email", "complaint")]
    assert len(dnc(org)) == 2


def test_an_inbound_sms_through_the_stacks_topic_creates_a_contact_and_stop_unsubscribes_it(
    stack: Any, org: Any
) -> None:
    ours = f"+1555{number():07d}"
    connect(org, "sms", {"origination_number": ours})
    sns, topic = stack.client("sns"), stack.outputs["ChannelEventsTopicArn"]

    def text(body: str, message_id: str) -> None:
        message = inner("sns_sms_inbound")
        message.update(destinationNumber=ours, messageBody=body, inboundMessageId=message_id)
        sns.publish(TopicArn=topic, Message=json.dumps(message))
        stack.drain()

    text("Yes, please send me the June catalog", "sms-in-1")
    contact = only_contact(org)
    assert contact["phone"] == "+12025550178"
    assert {"channel": "sms", "user_id": "+12025550178"} in contact["channels"]
    assert contact["status"] == "SUBSCRIBED"
    assert [(m["id"], m["channel"], m["text"]) for m in messages(org, contact["id"])] == [
        ("sms-in-1", "sms", "Yes, please send me the June catalog")
    ]

    text("STOP", "sms-in-2")
    assert only_contact(org)["status"] == "UNSUBSCRIBED"
    assert dnc(org) == [("+12025550178", "sms", "user_message")]
    assert eligible(org, contact["id"], "sms", "marketing")["allowed"] is False


# -- custom channels and web chat ----------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["custom", "webchat"])
def test_a_signed_custom_or_webchat_message_and_status_are_applied(
    stack: Any, org: Any, hooks: Webhooks, platform: str
) -> None:
    connection = connect(org, platform, {}, {"signing_secret": CUSTOM_SECRET})
    events = {
        "events": [
            {
                "type": "message",
                "id": "m1",
                "from": {"id": "visitor-42", "name": "Dewi", "email": "dewi@example.com"},
                "text": "hi",
                "timestamp": 1781000000,
            },
            {"type": "status", "message_id": "out-1", "status": "delivered", "timestamp": 1781000060},
        ]
    }
    body = json.dumps(events).encode()
    assert hooks.post(connection["id"], body, custom_headers(body)).status_code == 200
    stack.drain()

    contact = only_contact(org)
    assert contact["channels"] == [{"channel": platform, "user_id": "visitor-42"}]
    assert (contact["email"], contact["full_name"]) == ("dewi@example.com", "Dewi")
    assert [(m["id"], m["channel"], m["kind"], m["text"]) for m in messages(org, contact["id"])] == [
        ("m1", platform, "text", "hi")
    ]
    status = stored_message(org, platform, "out-1")
    assert status["status"] == "delivered"


# -- conversation events -------------------------------------------------------------------------------


def test_conversation_events_reach_the_bus(stack: Any, org: Any, hooks: Webhooks) -> None:
    events, sqs = stack.client("events"), stack.client("sqs")
    name = f"conversation-events-{number()}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = stack.outputs["EventBusName"]
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps({"source": ["audience.inbound"]}))
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    try:
        phone = digits()
        connection = whatsapp(org, phone)
        hooks.meta(connection["id"], text_message(phone, "wamid.ev-1", "Halo", at=1781000000))
        stack.drain()
        hooks.meta(connection["id"], text_message(phone, "wamid.ev-2", "STOP", at=1781000100))
        stack.drain()
    finally:
        events.remove_targets(Rule=name, EventBusName=bus, Ids=["queue"])
        events.delete_rule(Name=name, EventBusName=bus)

    received: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        received += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    contact = only_contact(org)
    ours = [e for e in received if e["source"] == "audience.inbound" and e["detail"]["org_id"] == org.org_id]
    seen = sorted((e["detail-type"], e["detail"]["data"]["message_id"], e["detail"]["data"]["channel"]) for e in ours)
    assert seen == [
        ("conversation.opted_out", "wamid.ev-2", "whatsapp"),
        ("message.inbound", "wamid.ev-1", "whatsapp"),
        ("message.inbound", "wamid.ev-2", "whatsapp"),
    ]
    assert {e["detail"]["data"]["contact_id"] for e in ours} == {contact["id"]}
    assert len({e["detail"]["id"] for e in ours}) == 3
    for event in ours:  # the envelope of docs/events.md, valid under the committed schemas
        assert event["detail-type"] == event["detail"]["type"]
        validate(event["detail"])


# -- deleting a connection -----------------------------------------------------------------------------


def test_a_deleted_connections_url_is_404_and_its_number_can_be_connected_by_another_org(
    stack: Any, org: Any, other_org: Any, hooks: Webhooks
) -> None:
    from audience.webhooks import ack

    phone, waba = digits(), digits()
    old = connect_whatsapp(org, phone, waba=waba)
    assert hooks.meta(old["id"], text_message(phone, "wamid.before", "Halo")).status_code == 200
    stack.drain()
    assert len(messages(org, only_contact(org)["id"])) == 1

    assert org.client.delete(f"/orgs/c/connections/{old['id']}").status_code == 204
    assert org.client.get(f"/orgs/c/connections/{old['id']}").status_code == 404
    ack.reset()  # a webhook function started after the deletion (the warm case is the test below)
    assert hooks.meta(old["id"], text_message(phone, "wamid.after", "Halo lagi")).status_code == 404
    assert hooks.handshake(old["id"], VERIFY_TOKEN).status_code == 404
    assert hooks.queued() == 0

    new = connect_whatsapp(other_org, phone, waba=waba)
    # Meta posts to the app's one URL: even the old URL's id is refused, the new one is taken.
    assert hooks.meta(new["id"], text_message(phone, "wamid.new-owner", "Halo, toko baru?")).status_code == 200
    stack.drain()
    assert [m["id"] for m in messages(other_org, only_contact(other_org)["id"])] == ["wamid.new-owner"]
    assert [m["id"] for m in messages(org, only_contact(org)["id"])] == ["wamid.before"]


def test_a_warm_webhook_function_stops_routing_to_a_deleted_connection_at_once(
    stack: Any, org: Any, other_org: Any, hooks: Webhooks
) -> None:
    """The webhook's cache may still route a number to its old connection for a minute; the processor
    re-reads the route, so nothing more reaches the old org, and the number's messages go to the org
    that connected it now when they are signed with its app secret (Meta routes by the payload, so the
    URL they came to does not matter)."""
    phone, waba = digits(), digits()
    old = connect_whatsapp(org, phone, waba=waba)
    assert hooks.meta(old["id"], text_message(phone, "wamid.before", "Halo")).status_code == 200
    stack.drain()

    assert org.client.delete(f"/orgs/c/connections/{old['id']}").status_code == 204
    new = connect_whatsapp(other_org, phone, waba=waba)
    hooks.meta(old["id"], text_message(phone, "wamid.old-url", "Halo lagi"))
    hooks.meta(new["id"], text_message(phone, "wamid.new-owner", "Halo, toko baru?"))
    stack.drain()
    assert [m["id"] for m in messages(org, only_contact(org)["id"])] == ["wamid.before"]
    assert sorted(m["id"] for m in messages(other_org, only_contact(other_org)["id"])) == [
        "wamid.new-owner",
        "wamid.old-url",
    ]


def test_a_number_that_changed_hands_is_not_applied_without_its_new_owners_signature(
    stack: Any, org: Any, other_org: Any, hooks: Webhooks
) -> None:
    phone, waba = digits(), digits()
    old = connect_whatsapp(org, phone, waba=waba)
    assert hooks.meta(old["id"], text_message(phone, "wamid.warm", "Halo")).status_code == 200
    stack.drain()
    assert org.client.delete(f"/orgs/c/connections/{old['id']}").status_code == 204
    connect_whatsapp(other_org, phone, waba=waba, secret="another-app-secret-0123456789")
    # Signed with the old owner's secret: the warm webhook still accepts it from its cache ...
    assert hooks.meta(old["id"], text_message(phone, "wamid.stale", "Halo lagi")).status_code == 200
    stack.drain()
    # ... but neither org gets it: the old one is gone, the new one never signed it.
    assert [m["id"] for m in messages(org, only_contact(org)["id"])] == ["wamid.warm"]
    assert contacts(other_org) == []
