"""The provider that sends through one connection, built from its settings and secrets, and the address a
contact has on a channel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from audience.channels.models import Connection
from audience.channels.repository import ConnectionsRepository
from audience.channels.secrets import SecretStore
from audience.contacts.models import Contact
from audience.errors import ValidationError
from audience.providers.base import Provider

CACHE_SECONDS = 60.0


def address(contact: Contact, channel: str) -> str | None:
    """Where a message on `channel` goes for `contact`: the WhatsApp id (else the phone's digits), the phone
    for SMS, the email, or the contact's user id on the channel; None when it has none."""
    owned = {i.type: i.value for i in reversed(contact.identities())}
    if channel == "whatsapp":
        if "whatsapp" in owned:
            return owned["whatsapp"].removeprefix("+")
        return contact.phone.removeprefix("+") if contact.phone else None
    if channel == "sms":
        return contact.phone or (f"+{owned['sms'].removeprefix('+')}" if "sms" in owned else None)
    if channel == "email":
        return contact.email or owned.get("email")
    return owned.get(channel)


def sender_of(connection: Connection) -> str | None:
    """The sender a do-not-contact entry names for this connection: the WhatsApp phone number id, the SMS
    origination number, the From address, the bot's username, the Page or Instagram account id."""
    settings = connection.settings
    if connection.platform == "ses":
        return from_address(connection)
    for name in ("phone_number_id", "origination_number", "bot_username", "page_id", "instagram_account_id"):
        if settings.get(name):
            return str(settings[name])
    return None


def from_address(connection: Connection) -> str | None:
    """The From address of mail sent through an SES connection: the identity when it is an address, else
    no-reply at the verified domain."""
    identity = str(connection.settings.get("identity") or "")
    if not identity:
        return None
    return identity if "@" in identity else f"no-reply@{identity}"


class Delivery:
    """Providers per connection, built once and kept for a minute (a rotated token is picked up then)."""

    def __init__(
        self,
        connections: ConnectionsRepository,
        secrets: SecretStore,
        *,
        telegram_api_url: str,
        graph_api_url: str,
        sandbox: Callable[[Connection], Provider] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connections = connections
        self._secrets = secrets
        self._telegram = telegram_api_url
        self._graph = graph_api_url
        self._clock = clock
        self._sandbox = sandbox
        self._cache: dict[tuple[str, str], tuple[float, Connection, Provider]] = {}
        self._lock = threading.Lock()

    def connection(self, org_id: str, connection_id: str) -> Connection:
        return self.get(org_id, connection_id)[0]

    def get(self, org_id: str, connection_id: str) -> tuple[Connection, Provider]:
        key = (org_id, connection_id)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and self._clock() - cached[0] < CACHE_SECONDS:
            return cached[1], cached[2]
        connection = self._connections.get(org_id, connection_id)
        provider = self._build(connection)
        with self._lock:
            self._cache[key] = (self._clock(), connection, provider)
        return connection, provider

    def _build(self, connection: Connection) -> Provider:
        platform = connection.platform
        settings = connection.settings
        if platform == "telegram":
            from audience.providers.telegram import TelegramBot

            return TelegramBot(self._telegram, self._secret(connection, "bot_token"))
        if platform == "whatsapp":
            from audience.providers.whatsapp import WhatsAppCloud

            return WhatsAppCloud(
                self._graph, str(settings["phone_number_id"]), self._secret(connection, "access_token")
            )
        if platform in ("messenger", "instagram"):
            from audience.providers.meta_send import MetaSendApi

            account = settings["page_id"] if platform == "messenger" else settings["instagram_account_id"]
            return MetaSendApi(
                self._graph,
                str(account),
                self._secret(connection, "access_token"),
                channel=platform,  # type: ignore[arg-type]
            )
        if platform == "ses":
            from audience.providers.ses import SesEmail

            return SesEmail(settings.get("configuration_set") or None)
        if platform == "sandbox" and self._sandbox is not None:
            return self._sandbox(connection)
        if platform == "sms":
            from audience.providers.sms import EndUserMessagingSms

            return EndUserMessagingSms(str(settings["origination_number"]))
        raise ValidationError.for_field(
            "connection_id", connection.id, f"a {platform} connection receives messages only; it cannot send"
        )

    def _secret(self, connection: Connection, name: str) -> str:
        value: Any = self._secrets.get(connection.id).get(name)
        if not value:
            raise ValidationError.for_field(
                "connection_id", connection.id, f"the connection has no {name}: set it before sending through it"
            )
        return str(value)
