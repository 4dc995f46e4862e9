"""One interface for every outbound channel: the message a provider sends and the typed result it returns.

No I/O and no third-party imports here, so the sending code and its tests can import the types cheaply;
each adapter (whatsapp, meta_send, telegram, ses, sms) imports its own client library when it first sends.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Channel = Literal["whatsapp", "messenger", "instagram", "telegram", "email", "sms"]
Kind = Literal["text", "template", "email"]
FailureKind = Literal["retryable", "rate_limited", "permanent"]

# The longest provider error text a Failed carries (the rest is noise in logs and status records).
TITLE_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Param:
    """A value of a template placeholder.

    `kind` "text" fills a text placeholder; "image", "video" and "document" fill a media header, `value`
    then being the media's https link. `name` is the placeholder's name for templates with named
    parameters ({{first_name}}); None for positional ones ({{1}}).
    """

    value: str
    kind: Literal["text", "image", "video", "document"] = "text"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ButtonParam:
    """The dynamic part of a template button: the payload a quick-reply button returns when pressed, or
    the suffix of a dynamic URL button."""

    index: int
    sub_type: Literal["quick_reply", "url"]
    param: str


@dataclass(frozen=True, slots=True)
class Template:
    """A pre-approved message template and the values of its placeholders."""

    name: str
    language: str
    header: Sequence[Param] = ()
    body: Sequence[Param] = ()
    buttons: Sequence[ButtonParam] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbound:
    """One message to one recipient.

    `to` is what the channel addresses people by: a wa_id (digits) or E.164 number on WhatsApp, a PSID on
    Messenger, an IGSID on Instagram, a chat id on Telegram, an email address, or an E.164 number for SMS.

    `kind` "text" sends `text`; "template" sends `template` (WhatsApp); "email" sends `subject` with `html`
    and/or `text_body` from `from_address`. A marketing email must carry an https `unsubscribe_url`
    (one-click unsubscribe, RFC 8058).

    `idempotency_key` is stable per recipient and message: adapters pass it where the platform accepts one
    and callers log it with the result either way. `reference` is the caller's own correlation value
    (a campaign or message id), attached where the platform keeps custom data with the message.
    """

    channel: Channel
    to: str
    kind: Kind
    idempotency_key: str
    text: str | None = None
    template: Template | None = None
    subject: str | None = None
    html: str | None = None
    text_body: str | None = None
    from_address: str | None = None
    reply_to: str | None = None
    unsubscribe_url: str | None = None
    marketing: bool = False
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """The platform accepted the message; `provider_message_id` is its id there (what status webhooks and
    replies refer to)."""

    provider_message_id: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The platform did not take the message.

    `kind` says what the caller may do: "retryable" (a transient fault: send again later), "rate_limited"
    (slow down: send again after `retry_after` seconds) or "permanent" (sending the same message again
    will fail the same way). `code` is the platform's own error code (or "network" when the platform was
    not reached) and `title` its explanation.
    """

    kind: FailureKind
    code: str
    title: str
    retry_after: float | None = None
    # The request may have reached the platform (its answer was lost): sending again may make a second copy.
    maybe_sent: bool = False


Result = Sent | Failed


class Provider(Protocol):
    """Sends messages on one channel through one account (a phone number, a Page, a bot, a sender)."""

    def send(self, message: Outbound) -> Result:
        """Send `message`; never raises for the platform's refusal or a transport fault (both come back as
        Failed), only for a programming error such as a message this provider cannot send (ValueError)."""
        ...


# -- helpers the adapters share ------------------------------------------------------------------------


def require(message: Outbound, channels: Sequence[str], kinds: Sequence[str]) -> None:
    """Raise ValueError unless the message is for one of `channels` and of one of `kinds`."""
    if message.channel not in channels:
        raise ValueError(f"this provider sends on {', '.join(channels)}, not {message.channel}")
    if message.kind not in kinds:
        raise ValueError(f"{message.channel} messages of kind {message.kind!r} are not supported here")
    if not message.to:
        raise ValueError("the message has no recipient")


def title(text: str) -> str:
    """A provider's error text, bounded in length."""
    text = " ".join(text.split())
    return text if len(text) <= TITLE_LIMIT else text[: TITLE_LIMIT - 1] + "…"


# Client errors raised before a request went out (httpx for the HTTP platforms, botocore for SES and SMS):
# nothing can have been sent. Any other network error may have come after the platform took the request.
UNSENT_ERRORS = frozenset(
    {"ConnectError", "ConnectTimeout", "PoolTimeout", "EndpointConnectionError", "ConnectTimeoutError"}
)


def network_failure(error: BaseException) -> Failed:
    """The platform could not be reached, or did not answer in time."""
    name = type(error).__name__
    return Failed(
        "retryable", "network", title(f"{name}: {error}" if str(error) else name), maybe_sent=name not in UNSENT_ERRORS
    )


def retry_after_header(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date); None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)
