"""Helpers of the channel tests: fixture payloads from events/, signed the way each platform signs them,
and webhook calls through the local HTTP API (so the WebhookFunction route is what answers)."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

EVENTS = Path(__file__).resolve().parent.parent / "events"
APP_SECRET = "meta-app-secret-0123456789abcdef"
VERIFY_TOKEN = "verify-me-please"
CUSTOM_SECRET = "custom-signing-secret-0123456789"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def whatsapp_payload(name: str, phone_number_id: str, **message: Any) -> dict[str, Any]:
    """A WhatsApp fixture sent to `phone_number_id`; `message` overrides fields of its first message."""
    payload = copy.deepcopy(fixture(name))
    for entry in payload["entry"]:
        for change in entry["changes"]:
            change["value"]["metadata"]["phone_number_id"] = phone_number_id
            if message and change["value"].get("messages"):
                change["value"]["messages"][0].update(message)
    return payload


def text_message(
    phone_number_id: str, wamid: str, text: str, *, wa_id: str = "6281234567890", at: int = 1781000000
) -> dict[str, Any]:
    payload = whatsapp_payload("webhook_whatsapp_text", phone_number_id)
    value = payload["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["wa_id"] = wa_id
    value["messages"][0].update({"id": wamid, "from": wa_id, "timestamp": str(at), "text": {"body": text}})
    return payload


def meta_signature(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def custom_headers(body: bytes, secret: str = CUSTOM_SECRET, *, at: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if at is None else at)
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Audience-Timestamp": stamp, "X-Audience-Signature": f"v1={digest}", "Content-Type": "application/json"}


class Webhooks:
    """Calls /webhooks/{connection_id} through the stack's HTTP API, as the platforms would."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.http = TestClient(stack.http_app)

    def meta(
        self,
        connection_id: str,
        payload: dict[str, Any] | bytes,
        *,
        secret: str = APP_SECRET,
        headers: dict[str, str] | None = None,
    ) -> Any:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = {"X-Hub-Signature-256": meta_signature(body, secret), "Content-Type": "application/json"}
        if headers is not None:
            sent = headers
        return self.http.post(f"/webhooks/{connection_id}", content=body, headers=sent)

    def handshake(self, connection_id: str, token: str, challenge: str = "1158201444") -> Any:
        return self.http.get(
            f"/webhooks/{connection_id}",
            params={"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": challenge},
        )

    def post(self, connection_id: str, body: bytes, headers: dict[str, str]) -> Any:
        return self.http.post(f"/webhooks/{connection_id}", content=body, headers=headers)

    def queued(self) -> int:
        """Messages waiting on InboundQueue (visible and in flight)."""
        url = self.stack.outputs["InboundQueueUrl"]
        attributes = self.stack.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def whatsapp_promo(tenant: Any, name: str, connection_id: str, phones: list[str]) -> dict[str, Any]:
    """Contacts with these phones (first names S0, S1...) and a draft marketing broadcast to everyone of a
    WhatsApp template greeting each by first name, through `connection_id`."""
    for n, phone in enumerate(phones):
        assert tenant.client.post("/orgs/c/contacts", json={"first_name": f"S{n}", "phone": phone}).status_code == 201
    body = {
        "type": "marketing",
        "name": name,
        "audience_all": True,
        "channels": [
            {
                "channel": "whatsapp",
                "connection_id": connection_id,
                "whatsapp": {"name": "promo", "language": "en_US", "body": [{"kind": "contact_first_name"}]},
            }
        ],
    }
    answer = tenant.client.post("/orgs/c/broadcasts", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def connect(
    tenant: Any, platform: str, settings: dict[str, Any], secrets: dict[str, str] | None = None
) -> dict[str, Any]:
    response = tenant.client.post(
        "/orgs/c/connections",
        json={"platform": platform, "name": f"{platform} line", "settings": settings, "secrets": secrets or {}},
    )
    assert response.status_code == 201, response.text
    return response.json()


def connect_whatsapp(
    tenant: Any, phone_number_id: str, *, waba: str = "102290129340398", secret: str = APP_SECRET
) -> dict[str, Any]:
    return connect(
        tenant,
        "whatsapp",
        {"phone_number_id": phone_number_id, "business_account_id": waba},
        {"app_secret": secret, "verify_token": VERIFY_TOKEN, "access_token": "EAAG-test-token"},
    )


# -- SNS ---------------------------------------------------------------------------------------------


class SnsSigner:
    """Signs SNS messages as SNS does, with a key whose certificate the webhook is given to trust."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )
        self.fetched: list[str] = []

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if url != CERT_URL:
            raise AssertionError(f"fetched {url}")
        return self.pem()

    def sign(self, message: dict[str, Any], *, version: str = "2", cert_url: str = CERT_URL) -> dict[str, Any]:
        from audience.webhooks.sns import string_to_sign

        signed = {
            **message,
            "SignatureVersion": version,
            "SigningCertURL": cert_url,
            "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(string_to_sign(signed), padding.PKCS1v15(), digest)
        signed["Signature"] = base64.b64encode(signature).decode()
        return signed


def trust(signer: SnsSigner) -> None:
    """Make the webhook's SNS certificate cache fetch the signer's certificate (the URL check stays)."""
    from audience.webhooks import ack, sns

    ack.acknowledger().certificates = sns.CertificateCache(fetch=signer.fetch)


# -- more helpers --------------------------------------------------------------------------------------


def dead_letters(stack: Any) -> int:
    """Messages in InboundDLQ: records the inbound processor failed on every attempt."""
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.template.ref("InboundDLQ"),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def respond(handler: BaseHTTPRequestHandler, status: int, answer: dict[str, Any]) -> None:
    """Write `answer` as a JSON response with `status` (for the stand-in servers below)."""
    data = json.dumps(answer).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class BotApiStub:
    """A stand-in Telegram Bot API on 127.0.0.1: records every call, answers setWebhook like Telegram
    (`refuse = True` answers as Telegram does for a revoked bot token: 401 Unauthorized) and sendMessage
    with a new message id, or with what `faults` holds first (each an (HTTP status, answer) pair, used
    once), or 403 "bot was blocked by the user" for chats in `blocked`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.refuse = False
        self.faults: list[tuple[int, dict[str, Any]]] = []
        self.blocked: set[str] = set()
        self._lock = threading.Lock()
        self._next_id = 1000
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode("latin-1")}
                respond(self, *stub.answer(self.path, body))

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="bot-api-stub", daemon=True)
        self.thread.start()

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self.refuse:
                self.calls.append((path, body))
                return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            if not path.endswith("/sendMessage"):
                self.calls.append((path, body))
                return 200, {"ok": True, "result": True, "description": "Webhook was set"}
            if self.faults:
                status, answer = self.faults.pop(0)
                self.calls.append((path, {**body, "_answered": status}))
                return status, answer
            self.calls.append((path, body))
            if str(body.get("chat_id")) in self.blocked:
                return 403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
            self._next_id += 1
            chat = {"id": body.get("chat_id"), "type": "private"}
            return 200, {"ok": True, "result": {"message_id": self._next_id, "chat": chat, "text": body.get("text")}}

    def sent(self, bot_token: str) -> list[dict[str, Any]]:
        """sendMessage calls the bot answered with a message (what reached people)."""
        return [
            body
            for path, body in self.calls
            if path == f"/bot{bot_token}/sendMessage"
            and "_answered" not in body
            and str(body.get("chat_id")) not in self.blocked
        ]

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def set_webhook_calls(self, bot_token: str) -> list[dict[str, Any]]:
        return [body for path, body in self.calls if path == f"/bot{bot_token}/setWebhook"]

    def secret_token(self, bot_token: str) -> str:
        """The secret_token of the last setWebhook call for the bot."""
        return str(self.set_webhook_calls(bot_token)[-1]["secret_token"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class GraphStub:
    """A stand-in Graph API on 127.0.0.1 for sending: POST /{version}/{phone_number_id}/messages answers as
    the WhatsApp Cloud API does (a new wamid per message); `faults` holds (HTTP status, answer) pairs, each
    used once, for the next calls. Every request body is kept in `sent` with its path."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.faults: list[tuple[int, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._next = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with stub._lock:
                    if stub.faults:
                        status, answer = stub.faults.pop(0)
                    else:
                        stub._next += 1
                        stub.sent.append((self.path, body))
                        status = 200
                        answer = {
                            "messaging_product": "whatsapp",
                            "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                            "messages": [{"id": f"wamid.TEST{stub._next:08d}"}],
                        }
                respond(self, status, answer)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="graph-stub", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def whatsapp_status(
    phone_number_id: str, wamid: str, status: str, *, recipient: str, at: int, error: tuple[int, str] | None = None
) -> dict[str, Any]:
    """A WhatsApp status webhook for one message."""
    payload = whatsapp_payload("webhook_whatsapp_status_failed", phone_number_id)
    item = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
    item.update({"id": wamid, "status": status, "timestamp": str(at), "recipient_id": recipient})
    if error is None:
        item.pop("errors")
    else:
        item["errors"] = [{"code": error[0], "title": error[1], "message": error[1]}]
    return payload


# -- one stack for a whole module ----------------------------------------------------------------------

PUBLIC_BASE_URL = "https://hooks.example.com"


@contextmanager
def module_stack(bot_api: BotApiStub) -> Iterator[Any]:
    """The application's stack for a whole test module (tests then use their own orgs and account ids),
    with Telegram's Bot API at `bot_api` and webhook URLs under PUBLIC_BASE_URL."""
    from tests.stacks import module_stack as stack_for_module

    with stack_for_module(TELEGRAM_API_URL=bot_api.url, PUBLIC_BASE_URL=PUBLIC_BASE_URL) as running:
        yield running


@dataclass
class Tenant:
    org_id: str
    client: TestClient


def new_tenant(app: Any, name: str, country: str) -> Tenant:
    """A new org with a client of `app` (one app per module: building one per test costs ~0.3 s)."""
    from audience import admin

    created = admin.create_org(name, default_country=country)
    return Tenant(created["org_id"], TestClient(app, headers={"Authorization": f"Bearer {created['api_key']}"}))


def discard_inbound(stack: Any) -> None:
    """Delete whatever waits on InboundQueue (PurgeQueue works only once a minute)."""
    sqs, url = stack.client("sqs"), stack.outputs["InboundQueueUrl"]
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        sqs.delete_message_batch(QueueUrl=url, Entries=entries)
