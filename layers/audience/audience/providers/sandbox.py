"""The sandbox: a provider that plays a channel's platform without leaving the stack.

It takes every message a real platform would take (the same checks of shape as the real adapters), gives
it an id, records it (the org can list what its sandbox connections sent), and has its statuses posted
later through the stack's own webhook path, signed with the connection's signing secret, exactly as a
custom channel posts them: sent, then delivered, then read, or a failure.

What happens to a message is decided by its address, so a run is repeatable (`fate`):

- 2% are refused at once (a permanent failure, as an unknown number is),
- 3% are accepted, then fail (undeliverable, after "sent"),
- 35% are delivered and never read,
- 60% are delivered and read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from audience import ids
from audience.providers.base import Failed, Outbound, Result, Sent, require

KINDS = {"whatsapp": ("text", "template"), "email": ("email",)}
FATES = (("refused", 2), ("failed", 5), ("delivered", 40), ("read", 100))
UNDELIVERABLE = ("undeliverable", "the sandbox does not deliver to this address (2% of addresses, by their hash)")
FAILED_LATER = ("131026", "Message undeliverable (a sandbox failure: 3% of addresses, by their hash)")


def fate(address: str) -> str:
    """What the sandbox does with a message to `address`: refused, failed, delivered or read."""
    bucket = int.from_bytes(hashlib.sha256(address.encode()).digest()[:4], "big") % 100
    return next(name for name, below in FATES if bucket < below)


def summary(message: Outbound) -> dict[str, Any]:
    """What the sandbox records of a message (its content as the recipient would see it, bounded)."""
    found: dict[str, Any] = {"channel": message.channel, "to": message.to, "kind": message.kind}
    if message.text:
        found["text"] = message.text[:4096]
    if message.template is not None:
        found["template"] = {
            "name": message.template.name,
            "language": message.template.language,
            "header": [p.value for p in message.template.header],
            "body": [p.value for p in message.template.body],
        }
    if message.subject:
        found["subject"] = message.subject[:998]
        found["from"] = message.from_address
        found["unsubscribe_url"] = message.unsubscribe_url
    return found


class SandboxProvider:
    """Sends nothing out: records the message and queues its statuses (see the module's docstring)."""

    def __init__(
        self,
        connection_id: str,
        channel: str,
        *,
        record: Callable[[str, dict[str, Any]], None],
        enqueue: Callable[[dict[str, Any]], None],
    ) -> None:
        self._connection_id = connection_id
        self._channel = channel
        self._record = record
        self._enqueue = enqueue

    def send(self, message: Outbound) -> Result:
        require(message, (self._channel,), KINDS.get(self._channel, ("text",)))
        if message.kind == "email" and message.marketing and not (message.unsubscribe_url or "").startswith("https://"):
            raise ValueError("a marketing email needs an https unsubscribe_url")
        if message.kind == "text" and not message.text:
            raise ValueError("a text message needs text")
        destiny = fate(message.to)
        if destiny == "refused":
            return Failed("permanent", *UNDELIVERABLE)
        message_id = f"sbx.{ids.ulid()}"
        self._record(message_id, {**summary(message), "fate": destiny})
        self._enqueue({"connection_id": self._connection_id, "message_id": message_id, "fate": destiny})
        return Sent(message_id)


def status_events(message_id: str, destiny: str, now: int) -> list[dict[str, Any]]:
    """The statuses the sandbox posts for a message, a second apart, in the custom channel format."""
    events: list[dict[str, Any]] = [{"type": "status", "message_id": message_id, "status": "sent", "timestamp": now}]
    if destiny == "failed":
        code, title = FAILED_LATER
        events.append(
            {
                "type": "status",
                "message_id": message_id,
                "status": "failed",
                "timestamp": now + 1,
                "error": {"code": code, "title": title},
            }
        )
        return events
    events.append({"type": "status", "message_id": message_id, "status": "delivered", "timestamp": now + 1})
    if destiny == "read":
        events.append({"type": "status", "message_id": message_id, "status": "read", "timestamp": now + 2})
    return events


class StatusPoster:
    """Posts a sandbox message's statuses to the stack's webhook URL of its connection, signed with the
    connection's signing secret (X-Audience-Timestamp and X-Audience-Signature, as custom channels do)."""

    def __init__(
        self,
        base_url: str,
        find_connection: Callable[[str], Any],
        signing_secret: Callable[[str], str | None],
        *,
        now: Callable[[], float],
        transport: Any = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._find = find_connection
        self._secret = signing_secret
        self._now = now
        self._transport = transport
        self._client: Any = None

    def post(self, job: dict[str, Any]) -> int:
        """Post every status of one message; the number posted (0 when its connection is gone). Raises when
        the webhook refuses one, so the queue retries (repeated statuses are absorbed downstream)."""
        import hmac

        import httpx

        connection_id = str(job["connection_id"])
        if not self._base:
            raise RuntimeError("API_BASE_URL is not set: the sandbox does not know where its webhooks are")
        connection = self._find(connection_id)
        secret = self._secret(connection_id) if connection is not None else None
        if connection is None or not secret:
            return 0
        if self._client is None:
            self._client = httpx.Client(timeout=10, transport=self._transport)
        posted = 0
        for event in status_events(str(job["message_id"]), str(job["fate"]), int(self._now())):
            body = json_bytes({"events": [event]})
            stamp = str(int(self._now()))
            digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            answer = self._client.post(
                f"{self._base}/webhooks/{connection_id}",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Audience-Timestamp": stamp,
                    "X-Audience-Signature": f"v1={digest}",
                },
            )
            if answer.status_code >= 300:
                raise RuntimeError(f"the webhook answered {answer.status_code}: {answer.text[:200]}")
            posted += 1
        return posted


def json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value, separators=(",", ":")).encode()
