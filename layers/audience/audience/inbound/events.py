"""What a platform's webhook payload means, platform by platform turned into a few plain event types.

No I/O and no heavy imports: `audience.inbound.parse` builds these, the processor applies them.
Times are ISO 8601 UTC with milliseconds (`clock.iso`), so they sort as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Outbound message statuses in the order they move; a status never moves back to a lower rank.
STATUS_RANK: dict[str, int] = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sent an inbound message (or whom a preference is about), as the platform names them."""

    channel: str  # whatsapp, messenger, instagram, telegram, sms, email, webchat or custom
    user_id: str  # wa_id, PSID, IGSID, Telegram user id, E.164 phone (SMS), email address, custom id
    phone: str | None = None  # E.164 when the platform gives a phone (WhatsApp wa_id, SMS)
    email: str | None = None
    name: str | None = None  # the profile name, when the platform shares one
    username: str | None = None  # Telegram @username (without the @)


@dataclass(frozen=True, slots=True)
class Message:
    """An inbound message (text, media, interactive reply, reaction, edit...)."""

    account_id: str  # the business account it was sent to: phone_number_id, page id, IG account id, ...
    provider_id: str  # the platform's own message id, unique per channel
    dedupe_key: str  # unique per delivery of this event, e.g. "whatsapp:msg:{wamid}"
    sender: Sender
    at: str
    kind: str  # text, image, audio, video, document, sticker, location, contacts, interactive, button,
    # reaction, edit, order, unsupported, ... (the platform's own type when it is none of these)
    text: str | None = None  # the text, caption, or the title of the chosen button/list row
    media: dict[str, Any] | None = None  # {"type", "id" or "url", "mime_type", "caption", ...}
    referral: dict[str, Any] | None = None  # ad / referral / UTM data (source_url, source_id, ctwa_clid, ref, ...)
    reply_to: str | None = None  # provider id of the message this one answers or reacts to
    raw: dict[str, Any] = field(default_factory=dict)  # the platform's own object for this message


@dataclass(frozen=True, slots=True)
class Status:
    """A delivery status of an outbound message: sent, delivered, read or failed."""

    account_id: str
    channel: str
    provider_id: str  # the id of the outbound message the status is about
    dedupe_key: str  # "{channel}:status:{provider_id}:{status}"
    status: str  # a key of STATUS_RANK
    at: str
    recipient: Sender | None = None  # whom the message went to, when the platform says
    error_code: str | None = None  # the provider's error code of a failure (WhatsApp 131050, SES bounce type, ...)
    error_title: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Preference:
    """A platform-level signal about whether someone may be messaged: a marketing stop or resume
    (WhatsApp user preferences), a hard bounce or a complaint (SES)."""

    account_id: str
    channel: str
    dedupe_key: str
    kind: str  # marketing_stop, marketing_resume, bounce, complaint
    subject: Sender  # whom it is about (email in `email` and `user_id` for SES)
    at: str
    detail: str | None = None  # the platform's words (bounce subtype, complaint feedback type, ...)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Other:
    """Anything else a platform sent (account updates, echoes, unknown fields): kept, never dropped."""

    account_id: str
    channel: str
    dedupe_key: str
    kind: str  # e.g. "whatsapp:account_update", "messenger:echo", "telegram:callback_query"
    at: str
    sender: Sender | None = None  # when it is about a person, who
    raw: dict[str, Any] = field(default_factory=dict)


Event = Message | Status | Preference | Other
