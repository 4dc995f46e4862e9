"""Broadcast lifecycles and message templates, with the validation of templates as the API receives them.

No I/O here: the service reads and writes broadcasts and calls these rules.

A marketing broadcast goes DRAFT → SCHEDULED → SENDING → SENT, and may be cancelled or fail on the way; a
cancelled or failed one may be scheduled again, a sent one never (it is duplicated instead). A transactional
broadcast is activated and paused.

Each channel of a broadcast carries the template of its message. A WhatsApp template (approved by Meta) is
filled by variable sources, one per placeholder; email and text messages carry `{{name}}` placeholders,
each naming a property of the broadcast (`{{coupon}}`) or a contact value (`{{contact.first_name}}`,
`{{contact.name}}`, `{{contact.phone}}`, `{{contact.email}}`, `{{contact.fields.<field>}}`). Properties
are values given per recipient when the broadcast is sent, each with an optional default.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from audience.errors import ConflictError, ValidationError
from audience.providers.base import Channel

TYPES: tuple[str, ...] = ("marketing", "transactional")
STATUSES: dict[str, tuple[str, ...]] = {
    "marketing": ("DRAFT", "SCHEDULED", "SENDING", "SENT", "CANCELLED", "FAILED"),
    "transactional": ("DRAFT", "ACTIVE", "PAUSED"),
}

# Every allowed change of status: type → action → (the statuses it applies to, the status it leads to).
TRANSITIONS: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "marketing": {
        "schedule": (("DRAFT", "CANCELLED", "FAILED"), "SCHEDULED"),
        "start_sending": (("SCHEDULED",), "SENDING"),
        "finish": (("SENDING",), "SENT"),
        "fail": (("SCHEDULED", "SENDING"), "FAILED"),
        "cancel": (("SCHEDULED", "SENDING"), "CANCELLED"),
    },
    "transactional": {
        "activate": (("DRAFT", "PAUSED"), "ACTIVE"),
        "pause": (("ACTIVE",), "PAUSED"),
    },
}
ACTIONS: tuple[str, ...] = tuple(action for kind in TYPES for action in TRANSITIONS[kind])

# How each action reads in a sentence: "... can <phrase>" and "... are not <participle>".
_CAN = {
    "schedule": "be scheduled",
    "start_sending": "start sending",
    "finish": "finish sending",
    "fail": "be marked FAILED",
    "cancel": "be cancelled",
    "activate": "be activated",
    "pause": "be paused",
}
_PARTICIPLE = {
    "schedule": "scheduled",
    "start_sending": "sent in one go",
    "finish": "finished",
    "fail": "failed",
    "cancel": "cancelled: pause it to stop sending",
    "activate": "activated",
    "pause": "paused: cancel it to stop sending",
}
_MAIN_ACTION = {"marketing": "scheduled", "transactional": "activated"}
# Refusals that deserve more than the general sentence.
_REFUSALS = {
    ("marketing", "SENT", "schedule"): "a SENT broadcast cannot be scheduled again: duplicate it to send it again",
    ("marketing", "SENT", "cancel"): "a SENT broadcast cannot be cancelled: its messages have all gone out",
    ("marketing", "SCHEDULED", "schedule"): (
        "this broadcast is already SCHEDULED: cancel it first to schedule it for another time"
    ),
    ("marketing", "DRAFT", "cancel"): "a DRAFT broadcast is not scheduled, so there is nothing to cancel",
    ("transactional", "DRAFT", "pause"): "a DRAFT broadcast is not active, so there is nothing to pause",
}


def transition(kind: str, status: str, action: str) -> str:
    """The status a `kind` broadcast in `status` moves to on `action`; ConflictError, saying why, when the
    action does not apply to it (ValidationError for a type, status or action that does not exist)."""
    if kind not in TYPES:
        raise ValidationError.for_field("type", kind, f"must be one of {', '.join(TYPES)}")
    if status not in STATUSES[kind]:
        raise ValidationError.for_field("status", status, f"is not a status of a {kind} broadcast")
    if action not in ACTIONS:
        raise ValidationError.for_field("action", action, f"must be one of {', '.join(ACTIONS)}")
    details = {"type": kind, "status": status, "action": action}
    if action not in TRANSITIONS[kind]:
        raise ConflictError(f"{kind} broadcasts are {_MAIN_ACTION[kind]}, not {_PARTICIPLE[action]}", **details)
    sources, target = TRANSITIONS[kind][action]
    if status in sources:
        return target
    message = _REFUSALS.get((kind, status, action))
    if message is None and status == target:
        message = f"this {kind} broadcast is already {status}"
    if message is None:
        message = f"only a {_either(sources)} {kind} broadcast can {_CAN[action]}, this one is {status}"
    raise ConflictError(message, **details)


def editable(status: str) -> bool:
    """Whether the broadcast's content and audience may still change (only while a DRAFT)."""
    return status == "DRAFT"


def deletable(status: str) -> bool:
    """Whether the broadcast may be deleted (any time but while it is sending)."""
    return status != "SENDING"


def _either(words: Iterable[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


# -- templates -------------------------------------------------------------------------------------------

SourceKind = Literal[
    "contact_name", "contact_first_name", "contact_phone", "contact_email", "custom_field", "property", "static"
]
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)
CHANNELS: tuple[str, ...] = get_args(Channel)
BUTTON_SUB_TYPES: tuple[str, ...] = ("quick_reply", "url")

MAX_CHANNELS = 10
MAX_HEADER_PARAMS = 1
MAX_BODY_PARAMS = 20
MAX_BUTTONS = 10
MAX_PROPERTIES = 50
MAX_TEXT = 4096
MAX_STATIC = 1024
MAX_SUBJECT = 998
MAX_EMAIL_BYTES = 256 * 1024

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # property and custom field names
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
_CONNECTION_ID = re.compile(r"^ch_[0-9a-z]{26}$")
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
CONTACT_KEYS: tuple[str, ...] = ("contact.first_name", "contact.name", "contact.phone", "contact.email")
FIELD_PREFIX = "contact.fields."


@dataclass(frozen=True, slots=True)
class VariableSource:
    """Where the value of one template variable comes from: a contact value, a custom field (`value` the
    field's name), a property of the broadcast (`value` the property's name) or fixed text (`value`)."""

    kind: SourceKind
    value: str | None = None


@dataclass(frozen=True, slots=True)
class WhatsAppTemplate:
    """An approved WhatsApp template and the source of each of its parameters; each button is
    (index, sub_type "quick_reply" or "url", source)."""

    name: str
    language: str
    header: list[VariableSource]
    body: list[VariableSource]
    buttons: list[tuple[int, str, VariableSource]]


@dataclass(frozen=True, slots=True)
class EmailTemplate:
    """An email's subject, HTML and plain-text parts, with `{{name}}` placeholders; html or text may be
    None, not both."""

    subject: str
    html: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class TextTemplate:
    """A text message (SMS, Telegram, Messenger, Instagram) with `{{name}}` placeholders."""

    text: str


@dataclass(frozen=True, slots=True)
class ChannelTemplate:
    """The message a broadcast sends on one channel, through one connection; exactly one of `whatsapp`
    (channel whatsapp), `email` (channel email) and `text` (the other channels) is set."""

    channel: str
    connection_id: str
    whatsapp: WhatsAppTemplate | None = None
    email: EmailTemplate | None = None
    text: TextTemplate | None = None


@dataclass(frozen=True, slots=True)
class Property:
    """A value given per recipient when the broadcast is sent; `default` is used for recipients without one."""

    name: str
    default: str | None = None


def content_key(channel: str) -> str:
    """Which template a channel carries: "whatsapp", "email" or "text"."""
    return channel if channel in ("whatsapp", "email") else "text"


# -- parsing ---------------------------------------------------------------------------------------------


def parse_properties(data: Any, *, path: str = "properties") -> list[Property]:
    """The properties of a broadcast from a list of {"name", "default"} objects."""
    items = _list(path, data, MAX_PROPERTIES)
    found: list[Property] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        at = f"{path}[{i}]"
        item = _object(at, item, ("name", "default"))
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValidationError.for_field(
                f"{at}.name", name, "must start with a lower-case letter, then up to 63 lower-case letters, digits or _"
            )
        if name in seen:
            raise ValidationError.for_field(f"{at}.name", name, "is declared more than once")
        seen.add(name)
        default = item.get("default")
        if default is not None and (not isinstance(default, str) or len(default) > MAX_STATIC):
            raise ValidationError.for_field(
                f"{at}.default", default, f"must be text of at most {MAX_STATIC} characters"
            )
        found.append(Property(name, default if default and default.strip() else None))
    return found


def parse_channels(data: Any, properties: Collection[str] = (), *, path: str = "channels") -> list[ChannelTemplate]:
    """The channels of a broadcast from a list of channel objects (see parse_channel_template)."""
    items = _list(path, data, MAX_CHANNELS)
    if not items:
        raise ValidationError.for_field(path, None, "must name at least one channel")
    return [parse_channel_template(item, properties, path=f"{path}[{i}]") for i, item in enumerate(items)]


def parse_channel_template(data: Any, properties: Collection[str] = (), *, path: str = "channel") -> ChannelTemplate:
    """One channel of a broadcast: {"channel", "connection_id"} and the template for the channel, under
    "whatsapp", "email" or "text". `properties` are the names of the broadcast's properties, which sources
    and placeholders may name."""
    if not isinstance(data, dict):
        raise ValidationError.for_field(path, None, "must be an object")
    channel = data.get("channel")
    if channel not in CHANNELS:
        raise ValidationError.for_field(f"{path}.channel", channel, f"must be one of {', '.join(CHANNELS)}")
    key = content_key(channel)
    data = _object(path, data, ("channel", "connection_id", key))
    connection_id = data.get("connection_id")
    if not isinstance(connection_id, str) or not _CONNECTION_ID.match(connection_id):
        raise ValidationError.for_field(f"{path}.connection_id", connection_id, "must be a connection id (ch_...)")
    if key not in data:
        raise ValidationError.for_field(f"{path}.{key}", None, f"is required for a {channel} channel")
    declared = set(properties)
    at = f"{path}.{key}"
    if key == "whatsapp":
        return ChannelTemplate(channel, connection_id, whatsapp=_whatsapp(at, data[key], declared))
    if key == "email":
        return ChannelTemplate(channel, connection_id, email=_email(at, data[key], declared))
    return ChannelTemplate(channel, connection_id, text=_text(at, data[key], declared))


def _whatsapp(path: str, data: Any, properties: set[str]) -> WhatsAppTemplate:
    data = _object(path, data, ("name", "language", "header", "body", "buttons"))
    name = data.get("name")
    if not isinstance(name, str) or not _TEMPLATE_NAME.match(name):
        raise ValidationError.for_field(
            f"{path}.name", name, "must be the template's name: 1 to 512 lower-case letters, digits or _"
        )
    language = data.get("language")
    if not isinstance(language, str) or not _LANGUAGE.match(language):
        raise ValidationError.for_field(f"{path}.language", language, "must be a language code like en_US or id")
    header = [
        _source(f"{path}.header[{i}]", item, properties)
        for i, item in enumerate(_list(f"{path}.header", data.get("header", []), MAX_HEADER_PARAMS))
    ]
    body = [
        _source(f"{path}.body[{i}]", item, properties)
        for i, item in enumerate(_list(f"{path}.body", data.get("body", []), MAX_BODY_PARAMS))
    ]
    buttons: list[tuple[int, str, VariableSource]] = []
    for i, item in enumerate(_list(f"{path}.buttons", data.get("buttons", []), MAX_BUTTONS)):
        at = f"{path}.buttons[{i}]"
        item = _object(at, item, ("index", "sub_type", "source"))
        index = item.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_BUTTONS:
            raise ValidationError.for_field(
                f"{at}.index", index, f"must be the button's position, 0 to {MAX_BUTTONS - 1}"
            )
        if any(index == b[0] for b in buttons):
            raise ValidationError.for_field(f"{at}.index", index, "is given more than once")
        sub_type = item.get("sub_type")
        if sub_type not in BUTTON_SUB_TYPES:
            raise ValidationError.for_field(f"{at}.sub_type", sub_type, f"must be one of {', '.join(BUTTON_SUB_TYPES)}")
        buttons.append((index, sub_type, _source(f"{at}.source", item.get("source"), properties)))
    return WhatsAppTemplate(name, language, header, body, buttons)


def _source(path: str, data: Any, properties: set[str]) -> VariableSource:
    data = _object(path, data, ("kind", "value"))
    kind = data.get("kind")
    if kind not in SOURCE_KINDS:
        raise ValidationError.for_field(f"{path}.kind", kind, f"must be one of {', '.join(SOURCE_KINDS)}")
    value = data.get("value")
    if kind.startswith("contact_"):
        if value is not None:
            raise ValidationError.for_field(f"{path}.value", value, f"must be left out for a {kind} source")
    elif kind == "custom_field":
        if not isinstance(value, str) or not _NAME.match(value):
            raise ValidationError.for_field(f"{path}.value", value, "must name a custom field")
    elif kind == "property":
        if not isinstance(value, str) or not value:
            raise ValidationError.for_field(f"{path}.value", value, "must name a property of the broadcast")
        if value not in properties:
            raise ValidationError.for_field(
                f"{path}.value", value, "is not a property of the broadcast: declare it in the broadcast's properties"
            )
    elif not isinstance(value, str) or not value.strip() or len(value) > MAX_STATIC:
        raise ValidationError.for_field(
            f"{path}.value", value, f"must be the text to send: 1 to {MAX_STATIC} characters, not only spaces"
        )
    return VariableSource(kind, value)


def _email(path: str, data: Any, properties: set[str]) -> EmailTemplate:
    data = _object(path, data, ("subject", "html", "text"))
    subject = data.get("subject")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT:
        raise ValidationError.for_field(f"{path}.subject", subject, f"must be 1 to {MAX_SUBJECT} characters")
    if "\r" in subject or "\n" in subject:
        raise ValidationError.for_field(f"{path}.subject", subject, "must be a single line")
    _placeholders(f"{path}.subject", subject, properties)
    parts: dict[str, str | None] = {}
    for part in ("html", "text"):
        value = data.get(part)
        if value is not None and (not isinstance(value, str) or len(value.encode("utf-8")) > MAX_EMAIL_BYTES):
            raise ValidationError.for_field(f"{path}.{part}", None, f"must be text of at most {MAX_EMAIL_BYTES} bytes")
        if value is not None:
            _placeholders(f"{path}.{part}", value, properties)
        parts[part] = value or None
    if parts["html"] is None and parts["text"] is None:
        raise ValidationError.for_field(f"{path}.html", None, "an email needs an html part, a text part or both")
    return EmailTemplate(subject, parts["html"], parts["text"])


def _text(path: str, data: Any, properties: set[str]) -> TextTemplate:
    data = _object(path, data, ("text",))
    text = data.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise ValidationError.for_field(f"{path}.text", text, f"must be 1 to {MAX_TEXT} characters, not only spaces")
    _placeholders(f"{path}.text", text, properties)
    return TextTemplate(text)


def placeholders(text: str) -> list[str]:
    """The names of the `{{name}}` placeholders in `text`, in order."""
    return [match.group(1) for match in PLACEHOLDER.finditer(text)]


def _placeholders(path: str, text: str, properties: set[str]) -> None:
    for name in placeholders(text):
        if name in properties or name in CONTACT_KEYS:
            continue
        if name.startswith(FIELD_PREFIX) and _NAME.match(name.removeprefix(FIELD_PREFIX)):
            continue
        raise ValidationError.for_field(
            path,
            f"{{{{{name}}}}}",
            f"{{{{{name}}}}} names neither a property of the broadcast nor a contact value "
            f"({', '.join(CONTACT_KEYS)} or {FIELD_PREFIX}<field>)",
        )


def _object(path: str, data: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError.for_field(path, None, "must be an object")
    for key in data:
        if key not in allowed:
            raise ValidationError.for_field(
                f"{path}.{key}", None, f"is not expected here (expected {', '.join(allowed)})"
            )
    return data


def _list(path: str, data: Any, limit: int) -> list[Any]:
    if not isinstance(data, list):
        raise ValidationError.for_field(path, None, "must be a list")
    if len(data) > limit:
        raise ValidationError.for_field(path, f"{len(data)} items", f"must have at most {limit} items")
    return data
