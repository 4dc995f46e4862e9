"""The webhook acknowledge path: authenticate the caller as its platform documents, find the tenant,
enqueue the raw event on the inbound queue, answer. Nothing else happens here.

One SQS SendMessage per accepted call is the only AWS request on the warm path: connections, routes and
secrets are cached per execution environment (a minute; a signature that fails against a cached secret
re-reads it once, so a rotated secret takes effect at once). Imports are stdlib, boto3 and the key
formats; SNS certificate checks (cryptography) load only when an SNS call arrives.

Every connection has one URL, `/webhooks/{connection_id}`:
- Meta (WhatsApp Cloud API, Messenger, Instagram): GET is the subscription handshake (`hub.verify_token`
  of the connection); POST carries `X-Hub-Signature-256`, HMAC-SHA256 of the raw body with the app
  secret. The tenant comes from each entry's account id in the payload (phone_number_id, business
  account id, page id, Instagram account id), and the signature must hold with the app secret of every
  connection the payload names; the URL only picks the verify token.
- Telegram: `X-Telegram-Bot-Api-Secret-Token` equals the secret set with setWebhook.
- SES and SMS (SNS HTTPS subscriptions): the SNS signature, from a topic the connection lists.
- Custom channels and web chat: `X-Audience-Signature: v1=<hex>`, HMAC-SHA256 over
  `{X-Audience-Timestamp}.{body}` with the signing secret, within 5 minutes of the timestamp.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from audience import aws
from audience.channels import keys

MAX_BODY_BYTES = 256 * 1024
CACHE_SECONDS = 60.0
MISS_SECONDS = 10.0  # an unknown id is asked again after this long (a connection may have been added)
REFRESH_AFTER_SECONDS = 2.0  # a failed signature re-reads secrets at most this often per connection
CUSTOM_TOLERANCE_SECONDS = 300
MAX_ACCOUNTS = 50

_CONNECTION_ID = re.compile(r"^ch_[0-9a-z]{26}$")
_META_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_CUSTOM_SIGNATURE = re.compile(r"^v1=([0-9a-fA-F]{64})$")
_META_OBJECTS = {"whatsapp_business_account": "whatsapp", "page": "messenger", "instagram": "instagram"}
_META = frozenset({"whatsapp", "messenger", "instagram"})
_SNS = frozenset({"ses", "sms"})
_SIGNED_JSON = frozenset({"custom", "webchat", "sandbox"})


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: str = ""
    content_type: str = "application/json"

    def to_lambda(self) -> dict[str, Any]:
        return {"statusCode": self.status, "headers": {"content-type": self.content_type}, "body": self.body}


def _error(status: int, message: str) -> Reply:
    return Reply(status, json.dumps({"error": {"message": message}}))


OK = Reply(200, '{"ok":true}')


class Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.reply = _error(status, message)


# -- cached reads -------------------------------------------------------------------------------------


def _plain(value: dict[str, Any]) -> Any:
    """A DynamoDB attribute as a plain value (the few types connection items hold)."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return inner
    if kind == "N":
        return int(inner) if inner.lstrip("-").isdigit() else float(inner)
    if kind == "BOOL":
        return inner
    if kind == "NULL":
        return None
    if kind == "L":
        return [_plain(v) for v in inner]
    if kind == "M":
        return {k: _plain(v) for k, v in inner.items()}
    return inner


@dataclass
class Directory:
    """Connections, routes and secrets, read once and kept for a minute."""

    table: str
    stage: str
    now: Any = time.monotonic
    _entries: dict[tuple[str, str], tuple[float, Any]] = field(default_factory=dict)

    def _cached(self, key: tuple[str, str], load: Any, *, fresh: bool = False) -> Any:
        hit = self._entries.get(key)
        moment = self.now()
        if hit is not None and not fresh:
            expires, value = hit
            if moment < expires:
                return value
        value = load()
        self._entries[key] = (moment + (CACHE_SECONDS if value is not None else MISS_SECONDS), value)
        if len(self._entries) > 4096:  # bounded: forget the oldest half
            for stale in sorted(self._entries, key=lambda k: self._entries[k][0])[:2048]:
                del self._entries[stale]
        return value

    def connection(self, connection_id: str) -> dict[str, Any] | None:
        def load() -> dict[str, Any] | None:
            item = (
                aws.client("dynamodb")
                .get_item(
                    TableName=self.table,
                    Key={"pk": {"S": keys.connection_pk(connection_id)}, "sk": {"S": keys.CONNECTION_SK}},
                    ProjectionExpression="id, org_id, platform, settings",
                )
                .get("Item")
            )
            return {k: _plain(v) for k, v in item.items()} if item else None

        return self._cached(("connection", connection_id), load)  # type: ignore[no-any-return]

    def route(self, kind: str, account_id: str) -> tuple[str, str] | None:
        def load() -> tuple[str, str] | None:
            item = (
                aws.client("dynamodb")
                .get_item(
                    TableName=self.table, Key={"pk": {"S": keys.route_pk(kind, account_id)}, "sk": {"S": keys.ROUTE_SK}}
                )
                .get("Item")
            )
            return (item["org_id"]["S"], item["connection_id"]["S"]) if item else None

        return self._cached(("route", f"{kind}#{account_id}"), load)  # type: ignore[no-any-return]

    def secrets(self, connection_id: str, *, fresh: bool = False) -> dict[str, str]:
        def load() -> dict[str, str]:
            client = aws.client("secretsmanager")
            try:
                raw = client.get_secret_value(SecretId=keys.secret_name(self.stage, connection_id))["SecretString"]
            except (client.exceptions.ResourceNotFoundException, client.exceptions.InvalidRequestException):
                return {}  # none, or scheduled for deletion with its connection
            return dict(json.loads(raw))

        key = ("secrets", connection_id)
        if fresh:
            hit = self._entries.get(key)
            # Re-read only when the cached copy is not brand new: a flood of bad signatures costs one read
            # per connection every couple of seconds, not one per call.
            if hit is not None and self.now() - (hit[0] - CACHE_SECONDS) < REFRESH_AFTER_SECONDS:
                fresh = False
        return self._cached(key, load, fresh=fresh)  # type: ignore[no-any-return]

    def clear(self) -> None:
        self._entries.clear()


# -- the handler --------------------------------------------------------------------------------------


class Acknowledger:
    def __init__(self, directory: Directory, queue_url: str, *, wall_clock: Any = time.time) -> None:
        self.directory = directory
        self.queue_url = queue_url
        self.wall_clock = wall_clock
        # SNS signing certificates, cached per process (built on the first SNS call).
        self.certificates: Any = None

    def handle(self, event: dict[str, Any]) -> Reply:
        try:
            return self._handle(event)
        except Rejected as rejected:
            return rejected.reply

    def _handle(self, event: dict[str, Any]) -> Reply:
        method = (event.get("requestContext") or {}).get("http", {}).get("method", "")
        connection_id = (event.get("pathParameters") or {}).get("connection_id", "")
        if not _CONNECTION_ID.match(connection_id or ""):
            raise Rejected(404, "no such webhook")
        connection = self.directory.connection(connection_id)
        if connection is None:
            raise Rejected(404, "no such webhook")
        platform = connection["platform"]
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        if method == "GET" and platform in _META:
            return self._handshake(connection, event.get("queryStringParameters") or {})
        if method != "POST":
            raise Rejected(405, "webhooks take POST")
        body = _body(event)
        if platform in _META:
            envelope = self._meta(body, headers)
        elif platform == "telegram":
            envelope = self._telegram(connection, body, headers)
        elif platform in _SNS:
            envelope = self._sns(connection, body, headers)
        elif platform in _SIGNED_JSON:
            envelope = self._signed_json(connection, body, headers)
        else:
            raise Rejected(404, "no such webhook")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected(400, "the body is not UTF-8") from None
        envelope.update(v=1, received_at=_now_iso(self.wall_clock()), body=text)
        aws.client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(envelope))
        return OK

    # -- Meta -----------------------------------------------------------------------------------------

    def _handshake(self, connection: dict[str, Any], query: dict[str, str]) -> Reply:
        token = query.get("hub.verify_token") or ""
        challenge = query.get("hub.challenge")
        if query.get("hub.mode") != "subscribe" or challenge is None:
            raise Rejected(403, "not a subscription handshake")

        def matches(secrets: dict[str, str]) -> bool:
            expected = secrets.get("verify_token") or ""
            return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())

        if not matches(self.directory.secrets(connection["id"])) and not matches(
            self.directory.secrets(connection["id"], fresh=True)
        ):
            raise Rejected(403, "hub.verify_token does not match")
        return Reply(200, challenge, "text/plain")

    def _meta(self, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        header = headers.get("x-hub-signature-256")
        if header is None:
            raise Rejected(401, "X-Hub-Signature-256 is missing")
        match = _META_SIGNATURE.match(header.strip())
        if match is None:
            raise Rejected(401, "X-Hub-Signature-256 must be sha256=<64 hex digits>")
        document = _json(body)
        platform = _META_OBJECTS.get(document.get("object"))  # type: ignore[arg-type]
        entries = document.get("entry")
        if platform is None or not isinstance(entries, list):
            raise Rejected(400, "not a Meta webhook payload (object, entry)")
        accounts = _meta_accounts(platform, entries)
        if not accounts:
            raise Rejected(400, "the payload names no account")
        if len(accounts) > MAX_ACCOUNTS:
            raise Rejected(400, f"the payload names more than {MAX_ACCOUNTS} accounts")
        routes = {f"{kind}#{account}": self.directory.route(kind, account) for kind, account in accounts}
        known = {key: route for key, route in routes.items() if route is not None}
        if not known:
            raise Rejected(404, "no connection for the accounts in this payload")
        signature = bytes.fromhex(match.group(1))
        for connection_id in sorted({route[1] for route in known.values()}):
            if not self._signed(connection_id, "app_secret", body, signature):
                raise Rejected(401, "X-Hub-Signature-256 does not match the payload")
        return {
            "platform": platform,
            "routes": {key: list(route) for key, route in known.items()},
            # Kept so the processor can check the payload against a route's new owner, should the
            # account change hands while this function's cache still held the old one.
            "signature": match.group(1).lower(),
            "dedupe": "meta:" + hashlib.sha256(body).hexdigest()[:40],
        }

    def _signed(self, connection_id: str, secret_name: str, message: bytes, signature: bytes) -> bool:
        for fresh in (False, True):
            secret = self.directory.secrets(connection_id, fresh=fresh).get(secret_name)
            if secret and hmac.compare_digest(hmac.new(secret.encode(), message, hashlib.sha256).digest(), signature):
                return True
        return False

    # -- Telegram -------------------------------------------------------------------------------------

    def _telegram(self, connection: dict[str, Any], body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        token = headers.get("x-telegram-bot-api-secret-token")
        if not token:
            raise Rejected(401, "X-Telegram-Bot-Api-Secret-Token is missing")
        for fresh in (False, True):
            # The pending secret is the one a registration under way is giving Telegram.
            secrets = self.directory.secrets(connection["id"], fresh=fresh)
            expected = [secrets.get("webhook_secret") or "", secrets.get("webhook_secret_pending") or ""]
            if any(e and hmac.compare_digest(token.encode(), e.encode()) for e in expected):
                break
        else:
            raise Rejected(403, "X-Telegram-Bot-Api-Secret-Token does not match")
        update = _json(body)
        update_id = update.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise Rejected(400, "not a Telegram update (update_id)")
        return _routed(connection, "telegram", f"telegram:{connection['id']}:{update_id}")

    # -- SNS (SES and SMS events) ------------------------------------------------------------------------

    def _sns(self, connection: dict[str, Any], body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        message = _json(body)
        kind = headers.get("x-amz-sns-message-type")
        if kind is not None and kind != message.get("Type"):
            raise Rejected(400, "x-amz-sns-message-type does not match the message Type")
        topics = (connection.get("settings") or {}).get("topic_arns") or []
        if message.get("TopicArn") not in topics:
            raise Rejected(403, "the message is from a topic this connection does not list")
        from audience.webhooks import sns

        if self.certificates is None:
            self.certificates = sns.CertificateCache()
        try:
            sns.verify(message, self.certificates)
        except sns.SnsVerificationError as error:
            raise Rejected(403, f"SNS signature: {error}") from None
        return _routed(connection, connection["platform"], f"sns:{message.get('MessageId')}")

    # -- custom channels and web chat -------------------------------------------------------------------

    def _signed_json(self, connection: dict[str, Any], body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        stamp, header = headers.get("x-audience-timestamp"), headers.get("x-audience-signature")
        if not stamp or not header:
            raise Rejected(401, "X-Audience-Timestamp and X-Audience-Signature are required")
        match = _CUSTOM_SIGNATURE.match(header.strip())
        if match is None or not stamp.isdigit() or len(stamp) > 12:
            raise Rejected(401, "X-Audience-Signature must be v1=<64 hex digits> and the timestamp unix seconds")
        if abs(self.wall_clock() - int(stamp)) > CUSTOM_TOLERANCE_SECONDS:
            raise Rejected(401, "X-Audience-Timestamp is more than 5 minutes away")
        if not self._signed(
            connection["id"], "signing_secret", stamp.encode() + b"." + body, bytes.fromhex(match.group(1))
        ):
            raise Rejected(401, "X-Audience-Signature does not match")
        document = _json(body)
        if not isinstance(document.get("events"), list):
            raise Rejected(400, "the body must be an object with an `events` list")
        return _routed(
            connection, connection["platform"], f"{connection['platform']}:" + hashlib.sha256(body).hexdigest()[:40]
        )


def _routed(connection: dict[str, Any], platform: str, dedupe: str) -> dict[str, Any]:
    return {"platform": platform, "org_id": connection["org_id"], "connection_id": connection["id"], "dedupe": dedupe}


def _meta_accounts(platform: str, entries: list[Any]) -> list[tuple[str, str]]:
    """(route kind, account id) of each entry: a WhatsApp change's phone_number_id (or, for changes about
    the business account, the entry id), else the page or Instagram account id."""
    found: dict[tuple[str, str], None] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str | int):
            raise Rejected(400, "every entry needs an id")
        if platform != "whatsapp":
            found[(platform, str(entry["id"]))] = None
            continue
        changes = entry.get("changes")
        if not isinstance(changes, list):
            raise Rejected(400, "a WhatsApp entry needs changes")
        for change in changes:
            value = change.get("value") if isinstance(change, dict) else None
            metadata = value.get("metadata") if isinstance(value, dict) else None
            number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
            if isinstance(number, str | int) and str(number):
                found[("whatsapp", str(number))] = None
            else:
                found[("whatsapp_waba", str(entry["id"]))] = None
    return list(found)


def _body(event: dict[str, Any]) -> bytes:
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        if len(raw) > MAX_BODY_BYTES * 4 // 3 + 4:
            raise Rejected(413, f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise Rejected(400, "the body is not valid base64") from None
    else:
        data = raw.encode("utf-8")
    if len(data) > MAX_BODY_BYTES:
        raise Rejected(413, f"the body is over {MAX_BODY_BYTES} bytes")
    return data


def _json(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "the body is not JSON") from None
    if not isinstance(document, dict):
        raise Rejected(400, "the body must be a JSON object")
    return document


def _now_iso(seconds: float) -> str:
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((seconds - whole) * 1000):03d}Z"


_ACKNOWLEDGER: list[Acknowledger] = []


def acknowledger() -> Acknowledger:
    """The process's acknowledger, built from the environment once."""
    if not _ACKNOWLEDGER:
        queue_url = os.environ.get("INBOUND_QUEUE_URL", "").strip()
        table = os.environ.get("ORGS_TABLE", "").strip()
        if not queue_url or not table:
            raise RuntimeError("INBOUND_QUEUE_URL and ORGS_TABLE must be set")
        _ACKNOWLEDGER.append(Acknowledger(Directory(table, os.environ.get("STAGE", "dev")), queue_url))
    return _ACKNOWLEDGER[0]


def reset() -> None:
    """Forget the acknowledger and its caches (tests and the local stack change the environment)."""
    _ACKNOWLEDGER.clear()
