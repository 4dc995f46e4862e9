"""The forgery corpus: webhook calls that must be refused, each with the status the platform's rules give
it, nothing enqueued on InboundQueue and, once the stack drains, nothing applied to any org. Every family
ends with the genuine call answered 200, so a refusal is the forgery's doing, not a broken setup.

One stack serves the whole module (the corpus is large); every test has its own org and account ids,
and starts from an empty InboundQueue.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.channels import (
    APP_SECRET,
    CERT_URL,
    CUSTOM_SECRET,
    VERIFY_TOKEN,
    BotApiStub,
    SnsSigner,
    Webhooks,
    connect,
    connect_whatsapp,
    custom_headers,
    fixture,
    meta_signature,
    text_message,
    trust,
)

pytestmark = pytest.mark.corpus

OTHER_SECRET = "other-app-secret-fedcba9876543210"
TOPIC = fixture("sns_ses_bounce")["TopicArn"]
JSON = {"Content-Type": "application/json"}
_numbers = itertools.count(1)


@pytest.fixture
def phone() -> str:
    """A phone number id no other test connects."""
    return f"10654{next(_numbers):010d}"


def whatsapp(tenant: Any, phone: str) -> dict[str, Any]:
    """A WhatsApp connection of `phone`, with a business account id of its own (both are routes)."""
    return connect_whatsapp(tenant, phone, waba="9" + phone[1:])


def bot_token() -> str:
    return f"{100000000 + next(_numbers)}:AAH-test_token_abcdefghijklmnopqrstuvwxy"


def refused(hooks: Webhooks, reply: Any, status: int) -> None:
    """The call (an HTTP reply, or a Lambda result) got `status` and enqueued nothing."""
    if isinstance(reply, dict):
        assert reply["statusCode"] == status, reply
    else:
        assert reply.status_code == status, reply.text
    assert hooks.queued() == 0


def nothing_applied(stack: Any, *tenants: Any) -> None:
    """Once the stack drains, no org gained a contact or a do-not-contact entry."""
    stack.drain()
    for tenant in tenants:
        assert tenant.client.get("/orgs/c/contacts").json()["items"] == []
        assert tenant.client.get("/orgs/c/do-not-contact").json()["items"] == []


def accepted(hooks: Webhooks, reply: Any) -> None:
    """The genuine call of a forgery test: 200 and one record queued (not applied: the next test's
    queue starts empty)."""
    assert reply.status_code == 200, reply.text
    assert hooks.queued() == 1


def contacts(tenant: Any) -> list[dict[str, Any]]:
    return tenant.client.get("/orgs/c/contacts").json()["items"]


def messages(tenant: Any, contact_id: str) -> list[dict[str, Any]]:
    return tenant.client.get(f"/orgs/c/contacts/{contact_id}/messages").json()["items"]


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def hub(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {**JSON, "X-Hub-Signature-256": meta_signature(body, secret)}


# -- Meta: X-Hub-Signature-256 ------------------------------------------------------------------------

Forge = Callable[[bytes], tuple[bytes, dict[str, str]]]


def _header(make: Callable[[bytes], str]) -> Forge:
    return lambda body: (body, {**JSON, "X-Hub-Signature-256": make(body)})


def _sha1_only(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {**JSON, "X-Hub-Signature": "sha1=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha1).hexdigest()}


def _reserialised(body: bytes) -> tuple[bytes, dict[str, str]]:
    payload = json.loads(body)
    sent = json.dumps(payload, indent=2).encode()
    signed = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    assert sent != signed
    assert json.loads(sent) == json.loads(signed)
    return sent, hub(signed)


def _another_body(body: bytes) -> tuple[bytes, dict[str, str]]:
    payload = json.loads(body)
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "a different text"
    return body, hub(body_of(payload))


def _signed_garbage(raw: bytes) -> Forge:
    return lambda _: (raw, hub(raw))


META_FORGERIES: dict[str, tuple[Forge, int]] = {
    "wrong app secret": (_header(lambda body: meta_signature(body, "not-the-app-secret")), 401),
    "no signature header": (lambda body: (body, dict(JSON)), 401),
    "only the old X-Hub-Signature sha1 header": (_sha1_only, 401),
    "a sha1 digest in the sha256 header": (
        _header(lambda body: "sha256=" + _sha1_only(body)[1]["X-Hub-Signature"][5:]),
        401,
    ),
    "non-hex digest": (_header(lambda _: "sha256=" + "g" * 64), 401),
    "empty digest": (_header(lambda _: "sha256="), 401),
    "digest without sha256=": (_header(lambda body: meta_signature(body)[7:]), 401),
    "short digest": (_header(lambda body: meta_signature(body)[:-2]), 401),
    "digest two hex digits too long": (_header(lambda body: meta_signature(body) + "00"), 401),
    "signature over re-serialised JSON": (_reserialised, 401),
    "signature of another body": (_another_body, 401),
    "signed, but not JSON": (_signed_garbage(b"object=page&entry=1"), 400),
    "signed, but a JSON array": (_signed_garbage(b"[]"), 400),
    "signed, but not a Meta object": (_signed_garbage(b'{"object":"user","entry":[]}'), 400),
}


@pytest.mark.parametrize("case", list(META_FORGERIES))
def test_a_forged_meta_call_is_refused_and_nothing_is_applied(
    stack: Any, org: Any, hooks: Webhooks, phone: str, case: str
) -> None:
    connection = whatsapp(org, phone)
    genuine = body_of(text_message(phone, "wamid.genuine", "Halo"))
    forge, status = META_FORGERIES[case]
    body, headers = forge(genuine)

    refused(hooks, hooks.post(connection["id"], body, headers), status)
    nothing_applied(stack, org)

    accepted(hooks, hooks.post(connection["id"], genuine, hub(genuine)))


def test_a_payload_naming_another_orgs_number_must_carry_that_orgs_signature(
    stack: Any, org: Any, other_org: Any, hooks: Webhooks
) -> None:
    mine_phone, their_phone = f"20{next(_numbers):013d}", f"30{next(_numbers):013d}"
    mine = connect_whatsapp(org, mine_phone, waba=f"40{next(_numbers):013d}")
    theirs = connect_whatsapp(other_org, their_phone, waba=f"50{next(_numbers):013d}", secret=OTHER_SECRET)
    aimed_at_them = text_message(their_phone, "wamid.spoofed", "Halo", wa_id="6281398765432")
    both = fixture("webhook_whatsapp_multi_entry")
    both["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = mine_phone
    both["entry"][1]["changes"][0]["value"]["metadata"]["phone_number_id"] = their_phone

    # Valid JSON signed with org A's app secret, naming org B's number, at either org's URL.
    for url_of in (mine, theirs):
        refused(hooks, hooks.meta(url_of["id"], aimed_at_them, secret=APP_SECRET), 401)
    # A batch naming both numbers must hold with both secrets; either one alone is not enough.
    for secret in (APP_SECRET, OTHER_SECRET):
        refused(hooks, hooks.meta(mine["id"], both, secret=secret), 401)
    # A number nobody connected, signed with a real app secret.
    stranger = text_message(f"60{next(_numbers):013d}", "wamid.stranger", "Halo")
    refused(hooks, hooks.meta(mine["id"], stranger), 404)
    nothing_applied(stack, org, other_org)

    # Control: with org B's own secret the payload is accepted (the URL does not pick the org), for B only.
    assert hooks.meta(mine["id"], aimed_at_them, secret=OTHER_SECRET).status_code == 200
    stack.drain()
    assert contacts(org) == []
    assert [c["phone"] for c in contacts(other_org)] == ["+6281398765432"]


# -- base64 bodies, as API Gateway delivers binary content ---------------------------------------------


def lambda_event(connection_id: str, body: str, headers: dict[str, str]) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event of the webhook route with a base64 body, as API Gateway builds it
    for a content type it does not treat as text."""
    return {
        "version": "2.0",
        "routeKey": "ANY /webhooks/{connection_id}",
        "rawPath": f"/webhooks/{connection_id}",
        "rawQueryString": "",
        "headers": {"content-type": "application/octet-stream", "user-agent": "facebookexternalua", **headers},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "hooks.example.com",
            "http": {
                "method": "POST",
                "path": f"/webhooks/{connection_id}",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "facebookexternalua",
            },
            "requestId": "req-1",
            "routeKey": "ANY /webhooks/{connection_id}",
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "pathParameters": {"connection_id": connection_id},
        "body": body,
        "isBase64Encoded": True,
    }


def test_a_base64_body_is_verified_over_the_decoded_bytes(stack: Any, org: Any, hooks: Webhooks, phone: str) -> None:
    connection = whatsapp(org, phone)
    text = "Halo 👋 kak, stok masih ada?"
    raw = json.dumps(text_message(phone, "wamid.b64", text), ensure_ascii=False).encode()
    encoded = base64.b64encode(raw).decode()

    over_the_text = lambda_event(connection["id"], encoded, {"x-hub-signature-256": meta_signature(encoded.encode())})
    refused(hooks, stack.invoke("WebhookFunction", over_the_text), 401)
    garbage = lambda_event(connection["id"], "not*base64!", {"x-hub-signature-256": meta_signature(b"not*base64!")})
    refused(hooks, stack.invoke("WebhookFunction", garbage), 400)
    nothing_applied(stack, org)

    result = stack.invoke(
        "WebhookFunction", lambda_event(connection["id"], encoded, {"x-hub-signature-256": meta_signature(raw)})
    )
    assert result["statusCode"] == 200, result
    assert hooks.queued() == 1
    stack.drain()
    (contact,) = contacts(org)
    assert [(m["id"], m["text"]) for m in messages(org, contact["id"])] == [("wamid.b64", text)]


# -- the URL and the method ----------------------------------------------------------------------------


MALFORMED_IDS = [
    "ch_short",
    "ch_" + "A" * 26,
    "ch_" + "0" * 27,
    "CH_00000000000000000000000000",
    "00000000000000000000000000",
    "ch_0000000000000000000000000%20",
    "ch_0000000000000000000000000%00",
    "ch_00000000000000000000000000%2F..",
]


def test_an_unknown_or_malformed_connection_id_is_404_even_for_a_valid_payload(
    stack: Any, org: Any, hooks: Webhooks, phone: str
) -> None:
    whatsapp(org, phone)
    payload = text_message(phone, "wamid.nowhere", "Halo")  # rightly signed, for a connected number
    for connection_id in ["ch_00000000000000000000000000", *MALFORMED_IDS]:  # the first is well formed
        refused(hooks, hooks.meta(connection_id, payload), 404)
        assert hooks.handshake(connection_id, VERIFY_TOKEN).status_code == 404, connection_id
    nothing_applied(stack, org)


def test_only_post_delivers_events(stack: Any, org: Any, hooks: Webhooks, phone: str) -> None:
    connection = whatsapp(org, phone)
    body = body_of(text_message(phone, "wamid.method", "Halo"))
    for method in ("PUT", "DELETE", "PATCH"):
        refused(
            hooks, hooks.http.request(method, f"/webhooks/{connection['id']}", content=body, headers=hub(body)), 405
        )
    nothing_applied(stack, org)
    accepted(hooks, hooks.post(connection["id"], body, hub(body)))


def test_get_is_the_meta_handshake_only(stack: Any, org: Any, hooks: Webhooks) -> None:
    custom = connect(org, "custom", {}, {"signing_secret": CUSTOM_SECRET})
    query = {"hub.mode": "subscribe", "hub.verify_token": CUSTOM_SECRET, "hub.challenge": "1158201444"}
    refused(hooks, hooks.http.get(f"/webhooks/{custom['id']}", params=query), 405)
    nothing_applied(stack, org)


def test_a_body_over_256_kib_is_413_even_when_signed(stack: Any, org: Any, hooks: Webhooks, phone: str) -> None:
    connection = whatsapp(org, phone)
    refused(hooks, hooks.meta(connection["id"], text_message(phone, "wamid.huge", "x" * 256 * 1024)), 413)
    nothing_applied(stack, org)
    accepted(hooks, hooks.meta(connection["id"], text_message(phone, "wamid.big", "y" * 250 * 1024)))


# -- Telegram: X-Telegram-Bot-Api-Secret-Token ---------------------------------------------------------

UPDATE = fixture("webhook_telegram_message")


def registered_bot(tenant: Any, bot_api: BotApiStub) -> tuple[dict[str, Any], str]:
    """A Telegram connection whose webhook was registered (setWebhook) with a fresh secret token."""
    token = bot_token()
    connection = connect(tenant, "telegram", {}, {"bot_token": token})
    reply = tenant.client.post(f"/orgs/c/connections/{connection['id']}/telegram-webhook")
    assert reply.status_code == 200, reply.text
    return connection, bot_api.secret_token(token)


def _token(value: Callable[[str], str], body: bytes = body_of(UPDATE)) -> Callable[[str], tuple[bytes, dict[str, str]]]:
    return lambda secret: (body, {**JSON, "X-Telegram-Bot-Api-Secret-Token": value(secret)})


TELEGRAM_FORGERIES: dict[str, tuple[Callable[[str], tuple[bytes, dict[str, str]]], int]] = {
    "no secret token": (lambda _: (body_of(UPDATE), dict(JSON)), 401),
    "an empty secret token": (_token(lambda _: ""), 401),
    "a wrong secret token": (_token(lambda _: "guessed_token_0123456789"), 403),
    "the token with its last character changed": (_token(lambda s: s[:-1] + ("A" if s[-1] != "A" else "B")), 403),
    "the token without its last character": (_token(lambda s: s[:-1]), 403),
    "the token with a character more": (_token(lambda s: s + "x"), 403),
    "the token in another case": (_token(lambda s: s.swapcase()), 403),
    "right token, not JSON": (_token(lambda s: s, b"update_id=1"), 400),
    "right token, no update_id": (_token(lambda s: s, body_of({"message": UPDATE["message"]})), 400),
    "right token, update_id a string": (_token(lambda s: s, body_of({**UPDATE, "update_id": "781234561"})), 400),
    "right token, update_id true": (_token(lambda s: s, body_of({**UPDATE, "update_id": True})), 400),
}


@pytest.mark.parametrize("case", list(TELEGRAM_FORGERIES))
def test_a_forged_telegram_call_is_refused(
    stack: Any, org: Any, hooks: Webhooks, bot_api: BotApiStub, case: str
) -> None:
    connection, secret = registered_bot(org, bot_api)
    forge, status = TELEGRAM_FORGERIES[case]
    body, headers = forge(secret)

    refused(hooks, hooks.post(connection["id"], body, headers), status)
    nothing_applied(stack, org)

    accepted(hooks, hooks.post(connection["id"], body_of(UPDATE), {**JSON, "X-Telegram-Bot-Api-Secret-Token": secret}))


def test_another_bots_secret_token_does_not_open_this_bot(
    stack: Any, org: Any, other_org: Any, hooks: Webhooks, bot_api: BotApiStub
) -> None:
    mine, _ = registered_bot(org, bot_api)
    _, theirs = registered_bot(other_org, bot_api)
    reply = hooks.post(mine["id"], body_of(UPDATE), {**JSON, "X-Telegram-Bot-Api-Secret-Token": theirs})
    refused(hooks, reply, 403)
    nothing_applied(stack, org, other_org)


def test_a_telegram_update_replayed_five_times_stores_one_message(
    stack: Any, org: Any, hooks: Webhooks, bot_api: BotApiStub
) -> None:
    connection, secret = registered_bot(org, bot_api)
    for _ in range(5):
        reply = hooks.post(connection["id"], body_of(UPDATE), {**JSON, "X-Telegram-Bot-Api-Secret-Token": secret})
        assert reply.status_code == 200
    assert hooks.queued() == 5
    stack.drain()
    (contact,) = contacts(org)
    assert [m["id"] for m in messages(org, contact["id"])] == ["5512345678:4521"]
    activity = org.client.get(f"/orgs/c/contacts/{contact['id']}/activity").json()["items"]
    assert [a["type"] for a in activity].count("message_received") == 1
    conversations = org.client.get(f"/orgs/c/contacts/{contact['id']}/conversations").json()["items"]
    assert [(c["channel"], c["inbound_count"]) for c in conversations] == [("telegram", 1)]


# -- SNS (SES and SMS over HTTPS) ----------------------------------------------------------------------


def ses_connection(tenant: Any) -> tuple[dict[str, Any], SnsSigner]:
    """An SES connection listing the fixtures' topic, and a signer whose certificate the webhook trusts."""
    connection = connect(tenant, "ses", {"identity": f"news{next(_numbers)}@example.com", "topic_arns": [TOPIC]})
    signer = SnsSigner()
    trust(signer)
    return connection, signer


def unsigned(name: str, **changes: Any) -> dict[str, Any]:
    """An SNS fixture without its (made up) signature fields, ready for `SnsSigner.sign`."""
    dropped = ("Signature", "SignatureVersion", "SigningCertURL", "Timestamp")
    return {**{k: v for k, v in fixture(name).items() if k not in dropped}, **changes}


def sns_post(hooks: Webhooks, connection_id: str, message: dict[str, Any]) -> Any:
    headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": str(message["Type"])}
    return hooks.post(connection_id, body_of(message), headers)


@pytest.mark.parametrize(
    "cert_url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-test.pem",
        "https://evil.com/sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/SimpleNotificationService-test.pem",
        "https://evil.com/?u=https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem?.pem",
        "https://sns-us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
    ],
)
def test_an_sns_certificate_url_off_the_sns_hosts_is_never_fetched(
    stack: Any, org: Any, hooks: Webhooks, cert_url: str
) -> None:
    connection, signer = ses_connection(org)
    forged = signer.sign(unsigned("sns_ses_bounce"), cert_url=cert_url)

    refused(hooks, sns_post(hooks, connection["id"], forged), 403)
    nothing_applied(stack, org)
    assert signer.fetched == []

    accepted(hooks, sns_post(hooks, connection["id"], signer.sign(unsigned("sns_ses_bounce"))))
    assert signer.fetched == [CERT_URL]


def _tampered(signer: SnsSigner) -> dict[str, Any]:
    signed = signer.sign(unsigned("sns_ses_bounce"))
    inner = json.loads(signed["Message"])
    inner["bounce"]["bouncedRecipients"] = [{"emailAddress": "ceo@victim.example", "action": "failed"}]
    inner["mail"]["destination"] = ["ceo@victim.example"]
    return {**signed, "Message": json.dumps(inner)}


ELSEWHERE = "arn:aws:sns:us-east-1:123456789012:somebody-elses-topic"
SNS_FORGERIES: dict[str, Callable[[SnsSigner], dict[str, Any]]] = {
    "a topic the connection does not list": lambda signer: signer.sign(unsigned("sns_ses_bounce", TopicArn=ELSEWHERE)),
    "the Message changed after signing": _tampered,
    "the TopicArn changed after signing": lambda signer: {
        **signer.sign(unsigned("sns_ses_bounce", TopicArn=ELSEWHERE)),
        "TopicArn": TOPIC,
    },
    "a SubscriptionConfirmation for an unexpected topic": lambda signer: signer.sign(
        unsigned("sns_subscription_confirmation", TopicArn="arn:aws:sns:us-east-1:210987654321:attacker-topic")
    ),
    "signed with a key that is not the certificate's": lambda _: SnsSigner().sign(unsigned("sns_ses_bounce")),
    "the fixture's made-up signature": lambda _: fixture("sns_ses_bounce"),
    "SignatureVersion 3": lambda signer: {**signer.sign(unsigned("sns_ses_bounce")), "SignatureVersion": "3"},
}


@pytest.mark.parametrize("case", list(SNS_FORGERIES))
def test_a_forged_sns_message_is_403(stack: Any, org: Any, hooks: Webhooks, case: str) -> None:
    connection, signer = ses_connection(org)
    refused(hooks, sns_post(hooks, connection["id"], SNS_FORGERIES[case](signer)), 403)
    nothing_applied(stack, org)
    accepted(hooks, sns_post(hooks, connection["id"], signer.sign(unsigned("sns_ses_bounce"))))


# -- custom channels and web chat: X-Audience-Signature ------------------------------------------------

EVENTS = {
    "events": [
        {
            "type": "message",
            "id": "m1",
            "from": {"id": "visitor-42", "name": "Dewi", "email": "dewi@example.com"},
            "text": "hi",
            "timestamp": 1781000000,
        }
    ]
}


def _v1(stamp: str, body: bytes, secret: str = CUSTOM_SECRET) -> str:
    return "v1=" + hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _without(*names: str) -> Callable[[bytes], dict[str, str]]:
    return lambda body: {k: v for k, v in custom_headers(body).items() if k not in names}


def _with(**changes: Callable[[bytes], str]) -> Callable[[bytes], dict[str, str]]:
    return lambda body: {**custom_headers(body), **{k.replace("_", "-"): make(body) for k, make in changes.items()}}


def _milliseconds(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time() * 1000))
    return {**JSON, "X-Audience-Timestamp": stamp, "X-Audience-Signature": _v1(stamp, body)}


CUSTOM_FORGERIES: dict[str, Callable[[bytes], dict[str, str]]] = {
    "timestamp 6 minutes old": lambda body: custom_headers(body, at=int(time.time()) - 360),
    "timestamp 6 minutes ahead": lambda body: custom_headers(body, at=int(time.time()) + 360),
    "wrong secret": lambda body: custom_headers(body, "not-the-signing-secret-0000"),
    "no headers": _without("X-Audience-Timestamp", "X-Audience-Signature"),
    "no timestamp": _without("X-Audience-Timestamp"),
    "no signature": _without("X-Audience-Signature"),
    "signature over the body alone": _with(
        X_Audience_Signature=lambda body: "v1=" + hmac.new(CUSTOM_SECRET.encode(), body, hashlib.sha256).hexdigest()
    ),
    "an old signature under a fresh timestamp": lambda body: {
        **custom_headers(body, at=int(time.time()) - 600),
        "X-Audience-Timestamp": str(int(time.time())),
    },
    "timestamp in milliseconds": _milliseconds,
    "non-hex signature": _with(X_Audience_Signature=lambda _: "v1=" + "z" * 64),
    "sha256= instead of v1=": _with(
        X_Audience_Signature=lambda body: custom_headers(body)["X-Audience-Signature"].replace("v1=", "sha256=")
    ),
}


@pytest.mark.parametrize("case", list(CUSTOM_FORGERIES))
def test_a_forged_custom_channel_call_is_401(stack: Any, org: Any, hooks: Webhooks, case: str) -> None:
    connection = connect(org, "custom", {}, {"signing_secret": CUSTOM_SECRET})
    body = body_of(EVENTS)
    refused(hooks, hooks.post(connection["id"], body, CUSTOM_FORGERIES[case](body)), 401)
    nothing_applied(stack, org)
    accepted(hooks, hooks.post(connection["id"], body, custom_headers(body)))


def test_a_custom_channel_call_replayed_five_times_stores_one_message(stack: Any, org: Any, hooks: Webhooks) -> None:
    connection = connect(org, "webchat", {}, {"signing_secret": CUSTOM_SECRET})
    body = body_of(EVENTS)
    for _ in range(5):
        assert hooks.post(connection["id"], body, custom_headers(body)).status_code == 200
    # The same event in another envelope (a client retrying with a new body) is the same message too.
    again = body_of({"events": [copy.deepcopy(EVENTS["events"][0])], "retry": 1})
    assert hooks.post(connection["id"], again, custom_headers(again)).status_code == 200
    assert hooks.queued() == 6
    stack.drain()
    (contact,) = contacts(org)
    assert [(m["id"], m["channel"], m["text"]) for m in messages(org, contact["id"])] == [("m1", "webchat", "hi")]
    activity = org.client.get(f"/orgs/c/contacts/{contact['id']}/activity").json()["items"]
    assert [a["type"] for a in activity].count("message_received") == 1
