"""Deleting a contact erases it: one person goes through every flow that stores or carries data about a
person (an inbound WhatsApp message, API updates, consent, a CSV import, a static segment, a marketing
broadcast with property values and receipts, a transactional send with an Idempotency-Key, a follow-up,
an export, an outbound webhook, an opt-out), is deleted through the API, and then none of the person's
values is left in any DynamoDB item, SQS message, S3 object, Step Functions execution or secret of the
stack, apart from the few places listed in KEPT, each kept on purpose and explained there."""

from __future__ import annotations

import base64
import contextlib
import csv
import gzip
import io
import json
import re
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.channels import (
    BotApiStub,
    GraphStub,
    Webhooks,
    connect_whatsapp,
    text_message,
    whatsapp_status,
)
from tests.integration.outbound.conftest import Receiver, add_endpoint

# The person's values: each unique in the stack, so any hit is theirs.
WA_ID = "6281377724681"  # WhatsApp id: the phone's digits
PHONE_E164 = "+" + WA_ID
PHONE_NATIONAL = "81377724681"  # digits-only without the country code: inside every phone form
FULL_NAME = "Ratna Kusumawardhani"
EMAIL = "Ratna.Kusuma-Erasure@Example.org"
MEMBER_CODE = "loyalty-zx81q"  # a custom field value
TELEGRAM_ID = "5519988776"
INBOUND_TEXT = "Halo, paket quetzal-7731 masih ada?"
OUTBOUND_TEXT = "Paket kiwifruit-4410 siap diambil"
CODE = "otp-tapir-9925"  # a transactional variable
COUPON = "coupon-okapi-5521"  # a marketing broadcast's property value for the person

MARKERS = {
    "phone": PHONE_NATIONAL,
    "name": "kusumawardhani",
    "email": EMAIL.lower(),
    "email local part": "ratna.kusuma-erasure",
    "custom field": MEMBER_CODE,
    "telegram id": TELEGRAM_ID,
    "inbound text": "quetzal-7731",
    "outbound text": "kiwifruit-4410",
    "transactional variable": CODE,
    "property value": COUPON,
}

PHONE_NUMBER_ID = "700000000077001"


@dataclass(frozen=True)
class Found:
    store: str  # "dynamodb", "sqs", "s3", "stepfunctions", "secretsmanager"
    place: str  # table, queue, bucket, state machine or secret (logical name where there is one)
    key: str  # item key, message id, object key, execution name or secret name
    markers: frozenset[str]

    def __str__(self) -> str:
        return f"{self.store}:{self.place}:{self.key} {sorted(self.markers)}"


# Where the person's values may stay after the deletion, on purpose: (store, logical name, key pattern,
# why). Anything found elsewhere fails the test, and so does an entry here that matches nothing.
KEPT: list[tuple[str, str, str, str]] = [
    (
        "dynamodb",
        "ContactsTable",
        r"O#[^#]+#D(#(phone|email|[a-z]+)#[^|]+ \| (?!#DEDUPE)|I#dnc_)",
        # The person's STOP put their phone on the org's do-not-contact list. The list is the org's record
        # of whom it must never message again, not the contact's data: it keeps suppressing the address if
        # the person is imported or written to again, and stays until the org removes the entry.
        "do-not-contact entry: the org's suppression list, kept until the org removes it",
    ),
    (
        "s3",
        "ExportsBucket",
        r"exports/",
        # A file the org downloaded before the deletion; its link lasts 15 minutes and the bucket expires
        # every export 7 days after it was written (ExpireExports).
        "export file: expires 7 days after it was written",
    ),
    (
        "dynamodb",
        "ContactsTable",
        r"O#[^#]+#IMPORTS? \| imp_|O#[^#]+#IMPORT#imp_[^|]+ \| S#run_",
        # The import's record shows the first values of each column and the first rows of each outcome
        # (created, updated, invalid...) to the org that ran it; the record expires 30 days after the import
        # was created (expires_at). The uploaded file itself is deleted once the import completes.
        "import record samples: expire 30 days after the import was created",
    ),
    (
        "dynamodb",
        "BroadcastsTable",
        r"O#[^#]+#B#bc_[^#]+#K#[0-9a-f]{64} \| #K",
        # An Idempotency-Key's stored answer (ids and statuses of the send; a Telegram message id is
        # "{chat id}:{message id}") replays the same answer to a retried call, and expires 24 hours after
        # the call (expires_at).
        "idempotency record: expires 24 hours after the call",
    ),
    (
        "dynamodb",
        "ContactsTable",
        r"O#[^#]+#P#[a-z]+#[^|]+ \| #MSG",
        # A message of the person's conversation, by the provider's id (a Telegram message id is "{chat id}:
        # {message id}"): only its key is left, a tombstone that keeps a status arriving later from storing the
        # message again; it expires when the message's item would have (35 days after the message).
        "message tombstone: key only, expires 35 days after the message",
    ),
    (
        "dynamodb",
        "BroadcastsTable",
        r"O#[^#]+#WH#we_[^|]+ \| D#wd_",
        # The delivery log of the org's own webhook endpoint: the events already sent to the org (ids only;
        # a Telegram message id carries the chat id), shown for debugging deliveries; expires 30 days after
        # the delivery (expires_at).
        "webhook delivery log: expires 30 days after the delivery",
    ),
]

# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture
def bot_api() -> Iterator[BotApiStub]:
    stub = BotApiStub()
    yield stub
    stub.close()


@pytest.fixture
def graph() -> Iterator[GraphStub]:
    stub = GraphStub()
    yield stub
    stub.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def acme(stack: Any, bot_api: BotApiStub, graph: GraphStub, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An org whose Telegram and WhatsApp sends reach the stand-ins."""
    from audience import container
    from tests.conftest import _tenant

    monkeypatch.setenv("TELEGRAM_API_URL", bot_api.url)
    monkeypatch.setenv("GRAPH_API_URL", graph.url)
    container.reset()
    return _tenant("Acme", "ID")


# -- the person's journey ---------------------------------------------------------------------------------


def _ok(answer: Any, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return dict(answer.json()) if answer.content else {}


def _inbound(hooks: Webhooks, connection_id: str, wamid: str, text: str) -> None:
    payload = text_message(PHONE_NUMBER_ID, wamid, text, wa_id=WA_ID, at=int(time.time()))
    payload["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["name"] = FULL_NAME
    _ok(hooks.meta(connection_id, payload))


def _import_row(stack: Any, client: TestClient) -> None:
    """A CSV with the person's row (and someone else's), imported to the end."""
    rows = [["name", "email", "phone"], [FULL_NAME, EMAIL, "0" + PHONE_NATIONAL], ["Budi Santoso", "budi@x.io", ""]]
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    created = client.post(
        "/orgs/c/imports/file", params={"file_name": "fair.csv", "kind": "contacts"}, content=out.getvalue().encode()
    )
    import_id = _ok(created, 202)["id"]
    stack.drain()
    imp = _ok(client.get(f"/orgs/c/imports/{import_id}"))
    assert imp["status"] == "analysed", imp
    columns = [
        {"index": c["index"], "target": c["target"], **({"field": c["field"]} if c["field"] else {})}
        for c in imp["columns"]
    ]
    _ok(client.put(f"/orgs/c/imports/{import_id}/mapping", json={"columns": columns}))
    _ok(client.post(f"/orgs/c/imports/{import_id}/start", json={"consent_confirmed": True}), 202)
    stack.drain()
    assert _ok(client.get(f"/orgs/c/imports/{import_id}"))["status"] == "completed"


def _marketing_with_receipts(stack: Any, client: TestClient, hooks: Webhooks, wa: str, segment_id: str) -> None:
    body = {
        "type": "marketing",
        "name": "Promo",
        "segment_ids": [segment_id],
        "channels": [
            {
                "channel": "whatsapp",
                "connection_id": wa,
                "whatsapp": {
                    "name": "promo",
                    "language": "en_US",
                    "body": [
                        {"kind": "contact_name"},
                        {"kind": "custom_field", "value": "member_code"},
                        {"kind": "property", "value": "coupon"},
                    ],
                },
            }
        ],
        "properties": [{"name": "coupon", "default": "WELCOME"}],
    }
    broadcast = _ok(client.post("/orgs/c/broadcasts", json=body), 201)
    values = f"email,coupon\n{EMAIL},{COUPON}\n".encode()
    uploaded = client.post(
        f"/orgs/c/broadcasts/{broadcast['id']}/property-values", content=values, headers={"Content-Type": "text/csv"}
    )
    assert _ok(uploaded)["matched"] == 1
    _ok(client.post(f"/orgs/c/broadcasts/{broadcast['id']}/schedule", json={}))
    stack.drain()
    (row,) = _ok(client.get(f"/orgs/c/broadcasts/{broadcast['id']}/recipients"))["items"]
    assert row["status"] == "SENT", row
    for n, status in enumerate(("delivered", "read")):
        receipt = whatsapp_status(
            PHONE_NUMBER_ID, row["provider_message_id"], status, recipient=WA_ID, at=int(time.time()) + n
        )
        _ok(hooks.meta(wa, receipt))
    stack.drain()
    (row,) = _ok(client.get(f"/orgs/c/broadcasts/{broadcast['id']}/recipients"))["items"]
    assert row["status"] == "READ", row


def _transactional(client: TestClient, telegram: str) -> None:
    body = {
        "type": "transactional",
        "name": "Login code",
        "channels": [{"channel": "telegram", "connection_id": telegram, "text": {"text": "Hi {{name}}: {{code}}"}}],
        "properties": [{"name": "code"}, {"name": "name"}],
    }
    broadcast = _ok(client.post("/orgs/c/broadcasts", json=body), 201)
    _ok(client.post(f"/orgs/c/broadcasts/{broadcast['id']}/activate"))
    send = {
        "contact_channel_id": f"telegram:{TELEGRAM_ID}",
        "variables": {"code": CODE, "name": FULL_NAME},
        "template_ids": ["telegram"],
    }
    url = f"/orgs/c/broadcasts/{broadcast['id']}/send"
    first = client.post(url, json=send, headers={"Idempotency-Key": "login-1"})
    assert first.status_code in (200, 201), first.text
    replay = client.post(url, json=send, headers={"Idempotency-Key": "login-1"})
    assert replay.json() == first.json()


def test_a_deleted_contact_leaves_no_personal_data_anywhere(
    stack: Any, acme: Any, bot_api: BotApiStub, graph: GraphStub, receiver: Receiver
) -> None:
    client = acme.client
    hooks = Webhooks(stack)
    # Given an org with WhatsApp and Telegram, a custom field and an endpoint taking every event
    wa = connect_whatsapp(acme, PHONE_NUMBER_ID, waba="700000000077002")["id"]
    telegram_token = "7000077:" + "A" * 35
    telegram = _ok(
        client.post(
            "/orgs/c/connections",
            json={"platform": "telegram", "name": "Bot", "secrets": {"bot_token": telegram_token}},
        ),
        201,
    )["id"]
    _ok(client.post("/orgs/c/contacts/fields", json={"name": "member_code", "type": "string"}), 201)
    add_endpoint(acme, receiver)

    # When the person writes on WhatsApp (a new contact, a conversation, a message log)
    _inbound(hooks, wa, "wamid.ERASURE-1", INBOUND_TEXT)
    stack.drain()
    (contact,) = _ok(client.get("/orgs/c/contacts"))["items"]
    contact_id = contact["id"]
    assert contact["phone"] == PHONE_E164
    # ... is updated through the API (fields, tags, a channel id, consent with its proof)
    _ok(
        client.patch(
            f"/orgs/c/contacts/{contact_id}",
            json={
                "full_name": FULL_NAME,
                "email": EMAIL,
                "custom_fields": {"member_code": MEMBER_CODE},
                "tags": ["vip"],
                "channels": [{"channel": "telegram", "user_id": TELEGRAM_ID}],
            },
        )
    )
    consent = {"channel": "email", "opted_in": True, "proof": f"Signed up on the web form as {EMAIL}"}
    _ok(client.post(f"/orgs/c/contacts/{contact_id}/consent", json=consent), 201)
    # ... is a row of an imported file
    _import_row(stack, client)
    # ... joins a static segment that a marketing broadcast goes to, with receipts
    segment = _ok(client.post("/orgs/c/segments", json={"name": "VIP", "type": "static"}), 201)
    _ok(client.post(f"/orgs/c/segments/{segment['id']}/contacts", json={"contact_ids": [contact_id]}))
    stack.drain()
    _marketing_with_receipts(stack, client, hooks, wa, segment["id"])
    # ... gets a transactional send with an Idempotency-Key and their values as variables
    _transactional(client, telegram)
    # ... gets a message that arms a follow-up
    rules = {
        "enabled": True,
        "idle_seconds": 1,
        "intervals_seconds": [1],
        "max_follow_ups": 1,
        "messages": [{"text": "Still there?"}],
    }
    _ok(client.put("/orgs/c/follow-up-rules", json=rules))
    _ok(
        client.post(f"/orgs/c/contacts/{contact_id}/messages", json={"connection_id": telegram, "text": OUTBOUND_TEXT}),
        201,
    )
    stack.drain(timeout=60)
    # ... is in an export
    export = _ok(client.post("/orgs/c/exports", json={"kind": "contacts"}), 202)
    stack.drain()
    assert _ok(client.get(f"/orgs/c/exports/{export['id']}"))["status"] == "done"
    # ... and finally writes STOP
    _inbound(hooks, wa, "wamid.ERASURE-2", "STOP")
    stack.drain()
    assert receiver.events(), "the endpoint got the contact's events"
    assert [body for _, body in graph.sent], "the broadcast reached WhatsApp"
    sent = [call["text"] for call in bot_api.sent(telegram_token)]
    assert {OUTBOUND_TEXT, "Still there?"} <= set(sent), sent  # the follow-up went, too
    before = _search(stack)
    assert {m for f in before for m in f.markers} == set(MARKERS), "every value was stored somewhere"

    # When the contact is deleted and the stack has done everything that follows
    assert client.delete(f"/orgs/c/contacts/{contact_id}").status_code == 204
    stack.drain(timeout=60)

    # Then the person's values are nowhere but in the places kept on purpose
    found = _search(stack)
    leaks = [f for f in found if not _kept(f)]
    assert leaks == [], "personal data left after the deletion:\n" + "\n".join(map(str, leaks))
    # Every place kept on purpose is still there (the list above is not stale)
    unused = [
        why for store, place, pattern, why in KEPT if not any(_kept(f, [(store, place, pattern, why)]) for f in found)
    ]
    assert unused == []
    # ... a message tombstone holding nothing but its key and expiry
    dynamodb, contacts_table = stack.client("dynamodb"), stack.resources["ContactsTable"]
    for tombstone in [f for f in found if f.place == "ContactsTable" and f.key.endswith(" | #MSG")]:
        key = {"pk": {"S": tombstone.key.split(" | ")[0]}, "sk": {"S": "#MSG"}}
        item = dynamodb.get_item(TableName=contacts_table, Key=key)["Item"]
        assert sorted(item) == ["erased", "expires_at", "pk", "sk"], item
    assert client.get(f"/orgs/c/contacts/{contact_id}").status_code == 404
    # ... and the do-not-contact entry still stops messages to the person's phone
    listed = _ok(client.get("/orgs/c/do-not-contact"))["items"]
    assert [(e["identifier"], e["source"]) for e in listed] == [(PHONE_E164, "user_message")]


def _kept(found: Found, kept: list[tuple[str, str, str, str]] = KEPT) -> bool:
    return any(
        found.store == store and found.place == place and re.match(pattern, found.key)
        for store, place, pattern, _ in kept
    )


# -- the search -------------------------------------------------------------------------------------------


def _markers_in(text: str) -> frozenset[str]:
    lowered = text.lower()
    return frozenset(name for name, value in MARKERS.items() if value.lower() in lowered)


def _decoded(data: bytes) -> str:
    """Bytes as text, through whatever wrapping they may have (zip, gzip, zlib, base64 JSON)."""
    texts = [data.decode("utf-8", "replace")]
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            texts += [archive.read(name).decode("utf-8", "replace") for name in archive.namelist()]
    for unwrap in (gzip.decompress, zlib.decompress):
        with contextlib.suppress(OSError, zlib.error, EOFError):
            texts.append(unwrap(data).decode("utf-8", "replace"))
    return "\n".join(texts)


def _attribute_text(value: Any) -> str:
    if isinstance(value, dict):
        if "B" in value:
            return _decoded(value["B"])
        if "BS" in value:
            return "\n".join(_decoded(b) for b in value["BS"])
        return "\n".join(_attribute_text(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(_attribute_text(v) for v in value)
    return str(value)


def _with_base64(text: str) -> str:
    """The text plus what any base64 run in it decodes to (message bodies and payloads are often encoded)."""
    parts = [text]
    for token in text.replace('"', " ").split():
        if len(token) >= 24 and len(token) % 4 == 0:
            with contextlib.suppress(ValueError):
                parts.append(_decoded(base64.b64decode(token, validate=True)))
    return "\n".join(parts)


def _logical(stack: Any, *suffixes: str) -> dict[str, str]:
    """Physical name (and URL or ARN) → logical id of the resources whose logical id ends with a suffix."""
    names: dict[str, str] = {}
    for logical, physical in stack.resources.items():
        if logical.endswith(suffixes):
            for name in (str(physical), str(physical).rsplit("/", 1)[-1], str(physical).rsplit(":", 1)[-1]):
                names[name] = logical
    return names


def _search(stack: Any) -> list[Found]:
    return [
        *_dynamodb(stack, _logical(stack, "Table")),
        *_sqs(stack, _logical(stack, "Queue", "DLQ")),
        *_s3(stack, _logical(stack, "Bucket")),
        *_executions(stack),
        *_secrets(stack),
    ]


def _dynamodb(stack: Any, names: dict[str, str]) -> Iterator[Found]:
    client = stack.client("dynamodb")
    for table in client.list_tables()["TableNames"]:
        for page in client.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                markers = _markers_in(_with_base64(_attribute_text(item)))
                if markers:
                    key = f"{_attribute_text(item.get('pk', ''))} | {_attribute_text(item.get('sk', ''))}"
                    yield Found("dynamodb", names.get(table, table), key, markers)


def _sqs(stack: Any, names: dict[str, str]) -> Iterator[Found]:
    client = stack.client("sqs")
    for url in client.list_queues().get("QueueUrls", []):
        seen: dict[str, str] = {}
        while True:
            batch = client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, MessageAttributeNames=["All"]
            ).get("Messages", [])
            fresh = [m for m in batch if m["MessageId"] not in seen]
            if not fresh:
                break
            for message in fresh:
                seen[message["MessageId"]] = json.dumps(message, default=str)
        for message_id, text in seen.items():
            markers = _markers_in(_with_base64(text))
            if markers:
                yield Found("sqs", names.get(url, url.rsplit("/", 1)[-1]), message_id, markers)


def _s3(stack: Any, names: dict[str, str]) -> Iterator[Found]:
    client = stack.client("s3")
    for bucket in client.list_buckets()["Buckets"]:
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket["Name"]):
            for version in page.get("Versions", []):
                obj = client.get_object(Bucket=bucket["Name"], Key=version["Key"], VersionId=version["VersionId"])
                text = version["Key"] + "\n" + json.dumps(obj.get("Metadata", {})) + "\n" + _decoded(obj["Body"].read())
                markers = _markers_in(text)
                if markers:
                    yield Found("s3", names.get(bucket["Name"], bucket["Name"]), version["Key"], markers)


def _executions(stack: Any) -> Iterator[Found]:
    client = stack.client("stepfunctions")
    for machine in client.list_state_machines()["stateMachines"]:
        for page in client.get_paginator("list_executions").paginate(stateMachineArn=machine["stateMachineArn"]):
            for execution in page["executions"]:
                described = client.describe_execution(executionArn=execution["executionArn"])
                markers = _markers_in(_with_base64(f"{described.get('input', '')}\n{described.get('output', '')}"))
                if markers:
                    yield Found("stepfunctions", machine["name"], execution["name"], markers)


def _secrets(stack: Any) -> Iterator[Found]:
    client = stack.client("secretsmanager")
    for page in client.get_paginator("list_secrets").paginate():
        for secret in page["SecretList"]:
            value = client.get_secret_value(SecretId=secret["ARN"])
            markers = _markers_in(str(value.get("SecretString", "")) + _decoded(value.get("SecretBinary", b"")))
            if markers:
                yield Found("secretsmanager", "secrets", secret["Name"], markers)
