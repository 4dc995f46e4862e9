"""Each platform's webhook payload, as the platform documents it, turned into `audience.inbound.events`.

Pure functions: no I/O, nothing but the standard library and `audience.clock`. A payload that is not the
documented shape (not an object, a required id missing, a time that is no time) raises `PayloadError`
naming the path of what is wrong; anything well formed that is not a message, a status or a preference
becomes an `Other`, so nothing a platform sends is dropped.

- `parse_meta`: WhatsApp Cloud API, Messenger and Instagram webhooks (`object` tells them apart).
- `parse_telegram`: one Telegram Bot API `Update`.
- `parse_sns`: an Amazon SNS envelope carrying an SES event, an inbound SMS or an SMS delivery event.
- `parse_custom`: the product's own signed JSON for custom channels and web chat.

Work is bounded: at most `MAX_EVENTS` events per payload and as many items in any one list of it; text is
cut to `MAX_TEXT` characters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from audience import clock
from audience.inbound.events import STATUS_RANK, Event, Message, Other, Preference, Sender, Status

MAX_EVENTS = 1000
MAX_TEXT = 4096
MAX_CUSTOM_EVENTS = 100
MAX_ID = 512  # longer "ids" are not ids; they would only bloat dedupe keys

__all__ = ["MAX_EVENTS", "MAX_TEXT", "PayloadError", "parse_custom", "parse_meta", "parse_sns", "parse_telegram"]


class PayloadError(ValueError):
    """The payload is not the shape its platform documents; the message names the path of what is wrong."""


# --- shared helpers -----------------------------------------------------------------------------------


class _Events:
    """The events of one payload, refusing to grow past MAX_EVENTS."""

    def __init__(self) -> None:
        self.items: list[Event] = []

    def add(self, event: Event) -> None:
        if len(self.items) >= MAX_EVENTS:
            raise PayloadError(f"payload: more than {MAX_EVENTS} events")
        self.items.append(event)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{path}: not an object")
    return value


def _opt_obj(value: Any, path: str) -> dict[str, Any] | None:
    return None if value is None else _obj(value, path)


def _list(value: Any, path: str, limit: int = MAX_EVENTS) -> list[Any]:
    """A list of at most `limit` items; absent is empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{path}: not a list")
    if len(value) > limit:
        raise PayloadError(f"{path}: more than {limit} items")
    return value


def _str(value: Any) -> str | None:
    """A non-empty string or number as text, else None (for optional fields)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def _id(obj: dict[str, Any], key: str, path: str) -> str:
    """A required id: a non-empty string or an integer."""
    value = obj.get(key)
    if value is None or value == "":
        raise PayloadError(f"{path}: missing {key}")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(f"{_join(path, key)}: not a string")
    text = str(value)
    if not text.strip() or len(text) > MAX_ID:
        raise PayloadError(f"{_join(path, key)}: not a valid id")
    return text


def _opt_id(obj: dict[str, Any], key: str, path: str) -> str | None:
    return None if obj.get(key) in (None, "") else _id(obj, key, path)


def _text(value: Any) -> str | None:
    """Text as given, cut to MAX_TEXT characters; None when absent or not text."""
    if not isinstance(value, str) or not value:
        return None
    return value[:MAX_TEXT]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(value: Any, path: str, *, ms: bool = False) -> str:
    """A platform time as `clock.iso`: unix seconds (or milliseconds when `ms`) as a number or a numeric
    string, or an ISO 8601 string (a time without a zone is read as UTC). Decimal arithmetic, so that
    1686975103470 ms is .470 and not .469."""
    if value is None or value == "":
        raise PayloadError(f"{path}: missing")
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(value)
        text = value.strip() if isinstance(value, str) else repr(value)
        try:
            number = Decimal(text)
        except InvalidOperation:
            moment = datetime.fromisoformat(text)  # not a number: ISO 8601
            return clock.iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        if not number.is_finite():
            raise ValueError(value)
        return clock.iso(_EPOCH + timedelta(microseconds=int(number * (1000 if ms else 1_000_000))))
    except (ValueError, OverflowError, OSError):
        raise PayloadError(f"{path}: not a valid time") from None


def _time_or_now(value: Any, path: str, *, ms: bool = False) -> str:
    """For events whose platform does not always give a time: the time given, else now."""
    return clock.now_iso() if value is None or value == "" else _time(value, path, ms=ms)


def _e164_digits(value: Any) -> str | None:
    """'+' and the digits when `value` is 6-15 digits (WhatsApp wa_id), else None."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and 6 <= len(value) <= 15:
        return "+" + value
    return None


def _e164(value: Any) -> str | None:
    """`value` when it is already E.164 ('+' and 6-15 digits), else None."""
    if isinstance(value, str) and value.startswith("+"):
        return _e164_digits(value[1:])
    return None


def _digest(value: Any) -> str:
    """A short stable digest of a JSON value, for events whose platform gives them no id."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _compact(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


# --- Meta: WhatsApp, Messenger, Instagram -------------------------------------------------------------

_META_OBJECTS = {"whatsapp_business_account": "whatsapp", "page": "messenger", "instagram": "instagram"}
_WA_MEDIA = ("image", "video", "audio", "document", "sticker")
_WA_VALUE_KNOWN = {"messaging_product", "metadata", "contacts", "messages", "statuses"}


def parse_meta(body: dict) -> list[Event]:
    """A Meta webhook body: WhatsApp (`object` "whatsapp_business_account"), Messenger ("page") or
    Instagram ("instagram"), every event of every entry, each with its own entry's account."""
    body = _obj(body, "body")
    kind = body.get("object")
    if kind is None:
        raise PayloadError("body: missing object")
    channel = _META_OBJECTS.get(kind) if isinstance(kind, str) else None
    if channel is None:
        raise PayloadError(f"object: not a Meta webhook object ({kind!r})")
    if "entry" not in body:
        raise PayloadError("body: missing entry")
    events = _Events()
    for e, raw_entry in enumerate(_list(body["entry"], "entry")):
        path = f"entry[{e}]"
        entry = _obj(raw_entry, path)
        if channel == "whatsapp":
            _whatsapp_entry(entry, path, events)
        else:
            _messaging_entry(entry, path, channel, events)
    return events.items


# WhatsApp


def _whatsapp_entry(entry: dict[str, Any], path: str, events: _Events) -> None:
    waba_id = _str(entry.get("id")) or ""
    for c, raw_change in enumerate(_list(entry.get("changes"), f"{path}.changes")):
        cpath = f"{path}.changes[{c}]"
        change = _obj(raw_change, cpath)
        field = _str(change.get("field")) or "unknown"
        value = _obj(change.get("value", {}), f"{cpath}.value")
        vpath = f"{cpath}.value"
        if field == "messages":
            _whatsapp_messages(value, vpath, events)
        elif field == "user_preferences":
            _whatsapp_preferences(value, vpath, events)
        else:
            _whatsapp_other(value, vpath, field, waba_id, events)


def _whatsapp_account(value: dict[str, Any], path: str) -> str:
    metadata = _obj(value.get("metadata"), f"{path}.metadata") if "metadata" in value else None
    if metadata is None:
        raise PayloadError(f"{path}: missing metadata")
    return _id(metadata, "phone_number_id", f"{path}.metadata")


def _whatsapp_contacts(value: dict[str, Any], path: str) -> list[dict[str, Any]]:
    return [c for c in _list(value.get("contacts"), f"{path}.contacts") if isinstance(c, dict)]


def _whatsapp_person(contacts: list[dict[str, Any]], wa_id: str | None, user_id: str | None, path: str) -> Sender:
    """The WhatsApp user: the wa_id (their phone number's digits) when shared, else the business-scoped
    user id (BSUID) that replaces it for users who hide their number behind a username."""
    key = wa_id or user_id
    if key is None:
        raise PayloadError(f"{path}: missing from")
    profile: dict[str, Any] = {}
    for contact in contacts:
        if (wa_id and contact.get("wa_id") == wa_id) or (user_id and contact.get("user_id") == user_id):
            profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}
            break
    username = _str(profile.get("username"))
    return Sender(
        channel="whatsapp",
        user_id=key,
        phone=_e164_digits(wa_id),
        name=_str(profile.get("name")),
        username=(username.lstrip("@") or None) if username else None,  # "@sheena" -> "sheena"
    )


def _whatsapp_messages(value: dict[str, Any], path: str, events: _Events) -> None:
    account_id = _whatsapp_account(value, path)
    contacts = _whatsapp_contacts(value, path)
    for m, raw in enumerate(_list(value.get("messages"), f"{path}.messages")):
        mpath = f"{path}.messages[{m}]"
        events.add(_whatsapp_message(_obj(raw, mpath), mpath, account_id, contacts))
    for s, raw in enumerate(_list(value.get("statuses"), f"{path}.statuses")):
        spath = f"{path}.statuses[{s}]"
        events.add(_whatsapp_status(_obj(raw, spath), spath, account_id, contacts))
    # Anything else on the messages field (user_actions, errors, ...) is kept, one Other per key.
    for key in sorted(k for k in value if k not in _WA_VALUE_KNOWN):
        item = {key: value[key]}
        events.add(
            Other(
                account_id=account_id,
                channel="whatsapp",
                dedupe_key=f"whatsapp:{key}:{account_id}:{_digest(item)}",
                kind=f"whatsapp:{key}",
                at=_time_or_now(_first_timestamp(value[key]), f"{path}.{key}"),
                raw=item,
            )
        )


def _first_timestamp(value: Any) -> Any:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0].get("timestamp")
    return value.get("timestamp") if isinstance(value, dict) else None


def _whatsapp_message(msg: dict[str, Any], path: str, account_id: str, contacts: list[dict[str, Any]]) -> Message:
    wamid = _id(msg, "id", path)
    sender = _whatsapp_person(contacts, _opt_id(msg, "from", path), _opt_id(msg, "from_user_id", path), path)
    at = _time(msg.get("timestamp"), f"{path}.timestamp")
    kind = _str(msg.get("type")) or "unknown"
    body = msg.get(kind) if isinstance(msg.get(kind), dict) else {}
    text: str | None = None
    media: dict[str, Any] | None = None
    context = msg.get("context") if isinstance(msg.get("context"), dict) else {}
    reply_to = _str(context.get("id"))

    if kind == "text":
        text = _text(body.get("body"))
    elif kind in _WA_MEDIA:
        text = _text(body.get("caption"))
        media = _compact(
            type=kind,
            id=_str(body.get("id")),
            mime_type=_str(body.get("mime_type")),
            sha256=_str(body.get("sha256")),
            caption=text,
            filename=_str(body.get("filename")),
            voice=body.get("voice") if isinstance(body.get("voice"), bool) else None,
            animated=body.get("animated") if isinstance(body.get("animated"), bool) else None,
        )
    elif kind == "location":
        media = _compact(
            type="location",
            latitude=body.get("latitude"),
            longitude=body.get("longitude"),
            name=_str(body.get("name")),
            address=_str(body.get("address")),
            url=_str(body.get("url")),
        )
    elif kind == "contacts":
        shared = _list(msg.get("contacts"), f"{path}.contacts", limit=100)
        media = {"type": "contacts", "contacts": shared}
    elif kind == "interactive":
        reply_type = _str(body.get("type")) or "unknown"
        reply = body.get(reply_type) if isinstance(body.get(reply_type), dict) else {}
        if reply_type == "nfm_reply":  # a WhatsApp Flow's answer
            text = _text(reply.get("body"))
            media = _compact(type="nfm_reply", name=_str(reply.get("name")), response_json=reply.get("response_json"))
        else:  # button_reply, list_reply: the chosen button or row
            text = _text(reply.get("title"))
            media = _compact(
                type=reply_type,
                id=_str(reply.get("id")),
                title=text,
                description=_str(reply.get("description")),
            )
    elif kind == "button":  # a template's quick-reply button
        text = _text(body.get("text"))
        media = _compact(type="button", payload=_str(body.get("payload")))
    elif kind == "reaction":
        reply_to = _str(body.get("message_id"))
        text = _text(body.get("emoji"))  # absent or empty when the reaction is removed
    elif kind == "order":
        text = _text(body.get("text"))
        media = _compact(
            type="order",
            catalog_id=_str(body.get("catalog_id")),
            product_items=_list(body.get("product_items"), f"{path}.order.product_items", limit=100),
        )
    elif kind == "system":
        text = _text(body.get("body"))
    elif kind in ("unsupported", "unknown"):
        kind = "unsupported"
    referral = msg.get("referral") if isinstance(msg.get("referral"), dict) else None
    return Message(
        account_id=account_id,
        provider_id=wamid,
        dedupe_key=f"whatsapp:msg:{wamid}",
        sender=sender,
        at=at,
        kind=kind,
        text=text,
        media=media,
        referral=referral,
        reply_to=reply_to,
        raw=msg,
    )


def _whatsapp_status(
    status: dict[str, Any], path: str, account_id: str, contacts: list[dict[str, Any]]
) -> Status | Other:
    wamid = _id(status, "id", path)
    state = _id(status, "status", path)
    at = _time(status.get("timestamp"), f"{path}.timestamp")
    wa_id, user_id = _opt_id(status, "recipient_id", path), _opt_id(status, "recipient_user_id", path)
    recipient = _whatsapp_person(contacts, wa_id, user_id, path) if wa_id or user_id else None
    dedupe_key = f"whatsapp:status:{wamid}:{state}"
    if state not in STATUS_RANK:  # "deleted" (the user deleted the message), and any status to come
        return Other(
            account_id=account_id,
            channel="whatsapp",
            dedupe_key=dedupe_key,
            kind=f"whatsapp:status_{state}",
            at=at,
            sender=recipient,
            raw=status,
        )
    errors = _list(status.get("errors"), f"{path}.errors")
    error = errors[0] if errors and isinstance(errors[0], dict) else {}
    return Status(
        account_id=account_id,
        channel="whatsapp",
        provider_id=wamid,
        dedupe_key=dedupe_key,
        status=state,
        at=at,
        recipient=recipient,
        error_code=_str(error.get("code")),
        error_title=_str(error.get("title")) or _str(error.get("message")),
        raw=status,
    )


def _whatsapp_preferences(value: dict[str, Any], path: str, events: _Events) -> None:
    account_id = _whatsapp_account(value, path)
    contacts = _whatsapp_contacts(value, path)
    for p, raw in enumerate(_list(value.get("user_preferences"), f"{path}.user_preferences")):
        ppath = f"{path}.user_preferences[{p}]"
        item = _obj(raw, ppath)
        wa_id, user_id = _opt_id(item, "wa_id", ppath), _opt_id(item, "user_id", ppath)
        if not (wa_id or user_id):
            raise PayloadError(f"{ppath}: missing wa_id")
        subject = _whatsapp_person(contacts, wa_id, user_id, ppath)
        category = _id(item, "category", ppath)
        choice = _id(item, "value", ppath)
        stamp = _id(item, "timestamp", ppath)
        at = _time(stamp, f"{ppath}.timestamp")
        dedupe_key = f"whatsapp:pref:{subject.user_id}:{category}:{choice}:{stamp}"
        if category == "marketing_messages" and choice in ("stop", "resume"):
            events.add(
                Preference(
                    account_id=account_id,
                    channel="whatsapp",
                    dedupe_key=dedupe_key,
                    kind=f"marketing_{choice}",
                    subject=subject,
                    at=at,
                    detail=_str(item.get("detail")),
                    raw=item,
                )
            )
        else:
            events.add(
                Other(
                    account_id=account_id,
                    channel="whatsapp",
                    dedupe_key=dedupe_key,
                    kind="whatsapp:user_preferences",
                    at=at,
                    sender=subject,
                    raw=item,
                )
            )


def _whatsapp_other(value: dict[str, Any], path: str, field: str, waba_id: str, events: _Events) -> None:
    """A field that is neither messages nor user_preferences (account_update, message_template_status_update,
    phone_number_quality_update, ...): kept whole as one Other, about the phone number when it names one."""
    metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
    account_id = _str(metadata.get("phone_number_id")) or waba_id
    events.add(
        Other(
            account_id=account_id,
            channel="whatsapp",
            dedupe_key=f"whatsapp:{field}:{account_id}:{_digest(value)}",
            kind=f"whatsapp:{field}",
            at=_time_or_now(value.get("timestamp") or value.get("event_time"), f"{path}.timestamp"),
            raw=value,
        )
    )


# Messenger and Instagram

_ATTACHMENT_KINDS = {"image": "image", "video": "video", "audio": "audio", "file": "document"}
_MESSAGING_ENTRY_KNOWN = {"id", "time", "messaging", "changes"}


def _messaging_entry(entry: dict[str, Any], path: str, channel: str, events: _Events) -> None:
    account_id = _id(entry, "id", path)
    for i, raw in enumerate(_list(entry.get("messaging"), f"{path}.messaging")):
        ipath = f"{path}.messaging[{i}]"
        _messaging_event(_obj(raw, ipath), ipath, channel, account_id, events)
    for c, raw in enumerate(_list(entry.get("changes"), f"{path}.changes")):
        cpath = f"{path}.changes[{c}]"
        change = _obj(raw, cpath)
        field = _str(change.get("field")) or "unknown"
        value = change.get("value") if isinstance(change.get("value"), dict) else {}
        at_value = value.get("time") or value.get("created_time") or entry.get("time")
        events.add(
            Other(
                account_id=account_id,
                channel=channel,
                dedupe_key=f"{channel}:{field}:{account_id}:{_digest(change)}",
                kind=f"{channel}:{field}",
                at=_time_or_now(at_value, f"{cpath}.value.time", ms=_is_ms(at_value)),
                raw=change,
            )
        )
    # Handover protocol "standby" arrays and anything else an entry may carry.
    for key in sorted(k for k in entry if k not in _MESSAGING_ENTRY_KNOWN):
        item = {key: entry[key]}
        events.add(
            Other(
                account_id=account_id,
                channel=channel,
                dedupe_key=f"{channel}:{key}:{account_id}:{_digest(item)}",
                kind=f"{channel}:{key}",
                at=_time_or_now(entry.get("time"), f"{path}.time", ms=True),
                raw=item,
            )
        )


def _is_ms(value: Any) -> bool:
    """Meta's change values mix unix seconds and milliseconds; a number past 10^11 is milliseconds."""
    try:
        return float(value) > 1e11
    except (TypeError, ValueError):
        return False


def _messaging_event(event: dict[str, Any], path: str, channel: str, account_id: str, events: _Events) -> None:
    sender_obj = _obj(event.get("sender"), f"{path}.sender") if "sender" in event else None
    if sender_obj is None:
        raise PayloadError(f"{path}: missing sender")
    sender_id = _id(sender_obj, "id", f"{path}.sender")
    stamp = event.get("timestamp")
    at = _time(stamp, f"{path}.timestamp", ms=True)
    person = Sender(channel=channel, user_id=sender_id)

    def other(kind: str, dedupe: str, who: Sender | None = person) -> Other:
        return Other(
            account_id=account_id,
            channel=channel,
            dedupe_key=dedupe,
            kind=f"{channel}:{kind}",
            at=at,
            sender=who,
            raw=event,
        )

    if "message" in event:
        message = _obj(event["message"], f"{path}.message")
        mid = _id(message, "mid", f"{path}.message")
        if message.get("is_echo"):  # a message the page itself sent; the person is the recipient
            recipient = event.get("recipient") if isinstance(event.get("recipient"), dict) else {}
            to = _str(recipient.get("id"))
            events.add(other("echo", f"{channel}:echo:{mid}", Sender(channel=channel, user_id=to) if to else None))
        elif message.get("is_deleted"):
            events.add(other("message_deleted", f"{channel}:deleted:{mid}"))
        else:
            events.add(_messaging_message(message, f"{path}.message", channel, account_id, person, at, event))
    elif "postback" in event:
        postback = _obj(event["postback"], f"{path}.postback")
        mid = _opt_id(postback, "mid", f"{path}.postback")
        title = _text(postback.get("title"))
        events.add(
            Message(
                account_id=account_id,
                provider_id=mid or f"postback:{sender_id}:{stamp}",
                dedupe_key=f"{channel}:msg:{mid}" if mid else f"{channel}:postback:{sender_id}:{stamp}",
                sender=person,
                at=at,
                kind="postback",
                text=title,
                media=_compact(type="postback", payload=_str(postback.get("payload")), title=title),
                referral=postback.get("referral") if isinstance(postback.get("referral"), dict) else None,
                raw=event,
            )
        )
    elif "reaction" in event:
        reaction = _obj(event["reaction"], f"{path}.reaction")
        mid = _id(reaction, "mid", f"{path}.reaction")
        action = _str(reaction.get("action")) or "react"
        events.add(
            Message(
                account_id=account_id,
                provider_id=f"reaction:{mid}:{sender_id}:{stamp}",
                dedupe_key=f"{channel}:reaction:{mid}:{sender_id}:{action}:{stamp}",
                sender=person,
                at=at,
                kind="reaction",
                text=_text(reaction.get("emoji")) if action == "react" else None,
                reply_to=mid,
                raw=event,
            )
        )
    elif "message_edit" in event:
        edit = _obj(event["message_edit"], f"{path}.message_edit")
        mid = _id(edit, "mid", f"{path}.message_edit")
        # An edit is a message of its own in the log (the original stays as it was sent), so it needs an
        # id of its own: the original's id and which edit this is.
        version = _str(edit.get("num_edit")) or stamp
        events.add(
            Message(
                account_id=account_id,
                provider_id=f"{mid}:edit:{version}",
                dedupe_key=f"{channel}:edit:{mid}:{version}",
                sender=person,
                at=at,
                kind="edit",
                text=_text(edit.get("text")),
                reply_to=mid,
                raw=event,
            )
        )
    elif "delivery" in event:
        delivery = _obj(event["delivery"], f"{path}.delivery")
        mids = [m for m in _list(delivery.get("mids"), f"{path}.delivery.mids") if _str(m)]
        if not mids:  # older deliveries carry only a watermark: everything before it was delivered
            events.add(other("delivery", f"{channel}:delivery:{sender_id}:{_str(delivery.get('watermark'))}"))
        for mid in mids:
            events.add(
                Status(
                    account_id=account_id,
                    channel=channel,
                    provider_id=str(mid),
                    dedupe_key=f"{channel}:status:{mid}:delivered",
                    status="delivered",
                    at=at,
                    recipient=person,
                    raw=event,
                )
            )
    elif "read" in event:
        read = _obj(event["read"], f"{path}.read")
        mid = _str(read.get("mid"))
        if mid:  # Instagram names the message read
            events.add(
                Status(
                    account_id=account_id,
                    channel=channel,
                    provider_id=mid,
                    dedupe_key=f"{channel}:status:{mid}:read",
                    status="read",
                    at=at,
                    recipient=person,
                    raw=event,
                )
            )
        else:  # Messenger gives a watermark: every message sent before it was read
            events.add(other("read", f"{channel}:read:{sender_id}:{_str(read.get('watermark')) or stamp}"))
    else:
        # referral (m.me links, ads on an open thread), optin, account_linking, handover, ...
        key = next((k for k in event if k not in ("sender", "recipient", "timestamp")), "unknown")
        events.add(other(key, f"{channel}:{key}:{sender_id}:{stamp}"))


def _messaging_message(
    message: dict[str, Any],
    path: str,
    channel: str,
    account_id: str,
    person: Sender,
    at: str,
    event: dict[str, Any],
) -> Message:
    mid = _id(message, "mid", path)
    text = _text(message.get("text"))
    kind = "text"
    media: dict[str, Any] | None = None
    attachments = [
        a for a in _list(message.get("attachments"), f"{path}.attachments", limit=100) if isinstance(a, dict)
    ]
    if attachments:
        described = [_attachment(a) for a in attachments]
        kind = described[0]["type"]
        media = dict(described[0])
        if len(described) > 1:
            media["attachments"] = described
    quick_reply = message.get("quick_reply") if isinstance(message.get("quick_reply"), dict) else None
    if quick_reply is not None:
        kind = "quick_reply"
        media = _compact(type="quick_reply", payload=_str(quick_reply.get("payload")), title=text)
    if message.get("is_unsupported"):
        kind = "unsupported"
    reply = message.get("reply_to") if isinstance(message.get("reply_to"), dict) else {}
    return Message(
        account_id=account_id,
        provider_id=mid,
        dedupe_key=f"{channel}:msg:{mid}",
        sender=person,
        at=at,
        kind=kind,
        text=text,
        media=media,
        referral=message.get("referral") if isinstance(message.get("referral"), dict) else None,
        reply_to=_str(reply.get("mid")),
        raw=event,
    )


def _attachment(attachment: dict[str, Any]) -> dict[str, Any]:
    raw_type = _str(attachment.get("type")) or "unknown"
    payload = attachment.get("payload") if isinstance(attachment.get("payload"), dict) else {}
    kind = "sticker" if payload.get("sticker_id") else _ATTACHMENT_KINDS.get(raw_type, raw_type)
    return _compact(
        type=kind,
        url=_str(payload.get("url")),
        title=_str(payload.get("title")) or _str(attachment.get("title")),
        sticker_id=_str(payload.get("sticker_id")),
    )


# --- Telegram -----------------------------------------------------------------------------------------

_TELEGRAM_MESSAGES = {"message": False, "channel_post": False, "edited_message": True, "edited_channel_post": True}
_TELEGRAM_FILES = (
    ("document", "document"),
    ("voice", "audio"),
    ("audio", "audio"),
    ("video", "video"),
    ("animation", "video"),
    ("video_note", "video"),
    ("sticker", "sticker"),
)


def parse_telegram(update: dict, account_id: str) -> list[Event]:
    """One Telegram Bot API Update received by the connection `account_id`."""
    update = _obj(update, "update")
    update_id = _id(update, "update_id", "update")
    dedupe_key = f"telegram:{account_id}:{update_id}"
    for key, edited in _TELEGRAM_MESSAGES.items():
        if key in update:
            return [_telegram_message(_obj(update[key], key), key, account_id, dedupe_key, edited)]
    key = next((k for k in update if k != "update_id"), "unknown")
    item = update.get(key)
    item = item if isinstance(item, dict) else {}
    user = item.get("from") if isinstance(item.get("from"), dict) else None
    nested = item.get("message") if isinstance(item.get("message"), dict) else {}
    at_value = item.get("date") or nested.get("date")
    return [
        Other(
            account_id=account_id,
            channel="telegram",
            dedupe_key=dedupe_key,
            kind=f"telegram:{key}",
            at=_time_or_now(at_value, f"{key}.date"),
            sender=_telegram_user(user, f"{key}.from") if user else None,
            raw=update,
        )
    ]


def _telegram_user(user: dict[str, Any], path: str) -> Sender:
    name = " ".join(_str(user.get(k)) or "" for k in ("first_name", "last_name")).strip()
    return Sender(
        channel="telegram",
        user_id=_id(user, "id", path),
        name=name or None,
        username=_str(user.get("username")),
    )


def _telegram_chat_sender(chat: dict[str, Any], path: str) -> Sender:
    """A channel post or an anonymous admin speaks as a chat: its id, title and @username."""
    return Sender(
        channel="telegram",
        user_id=_id(chat, "id", path),
        name=_str(chat.get("title")),
        username=_str(chat.get("username")),
    )


def _telegram_message(msg: dict[str, Any], path: str, account_id: str, dedupe_key: str, edited: bool) -> Message:
    message_id = _id(msg, "message_id", path)
    chat = _obj(msg.get("chat"), f"{path}.chat") if "chat" in msg else None
    if chat is None:
        raise PayloadError(f"{path}: missing chat")
    chat_id = _id(chat, "id", f"{path}.chat")
    provider_id = f"{chat_id}:{message_id}"
    if isinstance(msg.get("from"), dict):
        sender = _telegram_user(msg["from"], f"{path}.from")
    elif isinstance(msg.get("sender_chat"), dict):
        sender = _telegram_chat_sender(msg["sender_chat"], f"{path}.sender_chat")
    else:
        sender = _telegram_chat_sender(chat, f"{path}.chat")
    stamp = msg.get("edit_date") if edited and msg.get("edit_date") else msg.get("date")
    at = _time(stamp, f"{path}.{'edit_date' if edited and msg.get('edit_date') else 'date'}")
    original = provider_id
    if edited:  # an edit is logged as a message of its own, next to the original it changes
        provider_id = f"{original}:edit:{_str(stamp) or dedupe_key.rsplit(':', 1)[-1]}"
    text = _text(msg.get("text")) or _text(msg.get("caption"))
    kind, media = _telegram_content(msg, path)
    if kind is None:
        kind = "text" if text is not None else "unsupported"
    if media is not None and media.get("type") not in ("location", "contacts") and text and msg.get("caption"):
        media["caption"] = text
    reply = msg.get("reply_to_message") if isinstance(msg.get("reply_to_message"), dict) else None
    reply_to = original if edited else None
    if reply is not None and not edited and _str(reply.get("message_id")):
        reply_chat = reply.get("chat") if isinstance(reply.get("chat"), dict) else chat
        reply_to = f"{_str(reply_chat.get('id')) or chat_id}:{reply['message_id']}"
    return Message(
        account_id=account_id,
        provider_id=provider_id,
        dedupe_key=dedupe_key,
        sender=sender,
        at=at,
        kind="edit" if edited else kind,
        text=text,
        media=media,
        reply_to=reply_to,
        raw=msg,
    )


def _telegram_content(msg: dict[str, Any], path: str) -> tuple[str | None, dict[str, Any] | None]:
    photos = [p for p in _list(msg.get("photo"), f"{path}.photo", limit=100) if isinstance(p, dict)]
    if photos:
        largest = max(photos, key=lambda p: (_size(p.get("width")) * _size(p.get("height")), _size(p.get("file_size"))))
        return "image", _compact(
            type="image",
            id=_str(largest.get("file_id")),
            file_unique_id=_str(largest.get("file_unique_id")),
            width=largest.get("width"),
            height=largest.get("height"),
        )
    for key, kind in _TELEGRAM_FILES:
        item = msg.get(key)
        if isinstance(item, dict):
            return kind, _compact(
                type=kind,
                id=_str(item.get("file_id")),
                file_unique_id=_str(item.get("file_unique_id")),
                mime_type=_str(item.get("mime_type")),
                filename=_str(item.get("file_name")),
                duration=item.get("duration"),
                emoji=_str(item.get("emoji")),
                voice=True if key == "voice" else None,
                telegram_type=key if key not in (kind, "voice") else None,  # animation, video_note
            )
    if isinstance(msg.get("location"), dict):
        location = msg["location"]
        venue = msg.get("venue") if isinstance(msg.get("venue"), dict) else {}
        return "location", _compact(
            type="location",
            latitude=location.get("latitude"),
            longitude=location.get("longitude"),
            name=_str(venue.get("title")),
            address=_str(venue.get("address")),
        )
    if isinstance(msg.get("contact"), dict):
        # A shared contact card: its phone is the card's, not the sender's, so Sender.phone stays empty.
        contact = msg["contact"]
        return "contacts", _compact(
            type="contacts",
            phone=_str(contact.get("phone_number")),
            first_name=_str(contact.get("first_name")),
            last_name=_str(contact.get("last_name")),
            user_id=_str(contact.get("user_id")),
            vcard=_str(contact.get("vcard")),
        )
    return None, None


def _size(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --- Amazon SNS: SES events, inbound SMS, SMS events --------------------------------------------------

# SES event types that end a message's delivery. A Reject (a virus found) and a Rendering Failure (the
# template could not be filled in) mean the message was never sent: the status is "failed". A
# DeliveryDelay is not: SES keeps retrying and will send a Delivery or a Bounce, so it is an Other.
_SES_STATUS = {"Send": "sent", "Delivery": "delivered", "Open": "read"}
_SES_FAILED = {"Reject": ("reject", "reason"), "Rendering Failure": ("rendering_failure", "errorMessage")}
_SES_OTHER = {
    "DeliveryDelay": ("delivery_delay", "deliveryDelay"),
    "Click": ("click", "click"),
    "Subscription": ("subscription", "subscription"),
}
_SES_EVENT_OBJECT = {
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Delivery": "delivery",
    "Send": "send",
    "Open": "open",
    "Reject": "reject",
    "Rendering Failure": "failure",
    "DeliveryDelay": "deliveryDelay",
    "Click": "click",
    "Subscription": "subscription",
}
_MAIL_KEEP = ("messageId", "timestamp", "source", "destination", "tags")

# AWS End User Messaging SMS event types (configuration set event destinations).
_SMS_STATUS = {"TEXT_SUCCESSFUL": "sent", "TEXT_DELIVERED": "delivered"}
_SMS_PENDING = {"TEXT_QUEUED", "TEXT_PENDING"}
_SMS_FAILED = {
    "TEXT_BLOCKED",
    "TEXT_CARRIER_BLOCKED",
    "TEXT_CARRIER_UNREACHABLE",
    "TEXT_INVALID",
    "TEXT_INVALID_MESSAGE",
    "TEXT_PROTECT_BLOCKED",
    "TEXT_SPAM",
    "TEXT_TTL_EXPIRED",
    "TEXT_UNKNOWN",
    "TEXT_UNREACHABLE",
}


def parse_sns(envelope: dict) -> list[Event]:
    """An SNS envelope. Only a Notification carries events; SubscriptionConfirmation and
    UnsubscribeConfirmation give [] (confirming a subscription is the processor's job)."""
    envelope = _obj(envelope, "envelope")
    kind = _id(envelope, "Type", "envelope")
    if kind != "Notification":
        return []
    sns_id = _id(envelope, "MessageId", "envelope")
    text = envelope.get("Message")
    if not isinstance(text, str):
        raise PayloadError("envelope: missing Message" if text is None else "envelope.Message: not a string")
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    sent_at = _time_or_now(envelope.get("Timestamp"), "envelope.Timestamp")
    events: list[Event]
    if isinstance(message, dict) and "mail" in message and ("eventType" in message or "notificationType" in message):
        events = _ses(message, "Message")
    elif isinstance(message, dict) and str(message.get("eventType", "")).startswith("TEXT_"):
        events = [_sms_event(message, "Message")]
    elif isinstance(message, dict) and "originationNumber" in message and "inboundMessageId" in message:
        events = [_sms_inbound(message, "Message", sent_at)]
    else:  # published by something else, or not JSON at all: kept with its topic
        raw = _compact(
            TopicArn=_str(envelope.get("TopicArn")),
            Subject=_str(envelope.get("Subject")),
            Message=message if isinstance(message, dict) else text[:MAX_TEXT],
        )
        events = [Other(account_id="", channel="sns", dedupe_key="", kind="sns:unknown", at=sent_at, raw=raw)]
    if len(events) > MAX_EVENTS:
        raise PayloadError(f"payload: more than {MAX_EVENTS} events")
    if len(events) == 1:
        return [_with_key(events[0], f"sns:{sns_id}")]
    return [_with_key(event, f"sns:{sns_id}:{n}") for n, event in enumerate(events)]


def _with_key(event: Event, dedupe_key: str) -> Event:
    return replace(event, dedupe_key=dedupe_key)


def _email(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) and "@" in value else None


def _email_sender(address: str | None) -> Sender | None:
    return Sender(channel="email", user_id=address, email=address) if address else None


def _ses(message: dict[str, Any], path: str) -> list[Event]:
    kind = _str(message.get("eventType")) or _str(message.get("notificationType")) or "unknown"
    mail = _obj(message.get("mail"), f"{path}.mail")
    message_id = _id(mail, "messageId", f"{path}.mail")
    account_id = _email(mail.get("source")) or (_str(mail.get("source")) or "").lower()
    destination = [d for d in _list(mail.get("destination"), f"{path}.mail.destination") if isinstance(d, str)]
    first_to = _email_sender(_email(destination[0]) if destination else None)
    mail_at = _time_or_now(mail.get("timestamp"), f"{path}.mail.timestamp")
    detail_key = _SES_EVENT_OBJECT.get(kind)
    detail = _opt_obj(message.get(detail_key), f"{path}.{detail_key}") if detail_key else None
    detail = detail or {}
    raw = {"eventType": kind, "mail": {k: mail[k] for k in _MAIL_KEEP if k in mail}}
    if detail_key:
        raw[detail_key] = detail

    def status(state: str, at: str, recipient: Sender | None, code: str | None = None, title: str | None = None):
        return Status(
            account_id=account_id,
            channel="email",
            provider_id=message_id,
            dedupe_key="",
            status=state,
            at=at,
            recipient=recipient,
            error_code=code,
            error_title=title,
            raw=raw,
        )

    def other(name: str, at: str, who: Sender | None = first_to) -> Other:
        return Other(
            account_id=account_id, channel="email", dedupe_key="", kind=f"email:{name}", at=at, sender=who, raw=raw
        )

    if kind == "Bounce":
        bounce_type = _str(detail.get("bounceType")) or "Undetermined"
        subtype = _str(detail.get("bounceSubType"))
        at = _time_or_now(detail.get("timestamp"), f"{path}.bounce.timestamp")
        recipients = _recipients(detail.get("bouncedRecipients"), f"{path}.bounce.bouncedRecipients")
        if bounce_type == "Transient":
            # A soft bounce (mailbox full, message too large, ...): the address is good, nothing to suppress.
            return [other("soft_bounce", at, _email_sender(recipients[0][0]) if recipients else first_to)]
        first = _email_sender(recipients[0][0]) if recipients else first_to
        events: list[Event] = [status("failed", at, first, f"bounce:{bounce_type}", subtype)]
        if bounce_type == "Permanent":  # a hard bounce: never email the address again
            for address, entry in recipients:
                events.append(
                    Preference(
                        account_id=account_id,
                        channel="email",
                        dedupe_key="",
                        kind="bounce",
                        subject=Sender(channel="email", user_id=address, email=address),
                        at=at,
                        detail=subtype,
                        raw={
                            "bounceType": bounce_type,
                            "bounceSubType": subtype,
                            "recipient": entry,
                            "mail": raw["mail"],
                        },
                    )
                )
        return events
    if kind == "Complaint":
        at = _time_or_now(detail.get("timestamp"), f"{path}.complaint.timestamp")
        feedback = _str(detail.get("complaintFeedbackType"))
        recipients = _recipients(detail.get("complainedRecipients"), f"{path}.complaint.complainedRecipients")
        return [
            Preference(
                account_id=account_id,
                channel="email",
                dedupe_key="",
                kind="complaint",
                subject=Sender(channel="email", user_id=address, email=address),
                at=at,
                detail=feedback,
                raw={"complaintFeedbackType": feedback, "recipient": entry, "mail": raw["mail"]},
            )
            for address, entry in recipients
        ] or [other("complaint", at)]
    if kind in _SES_STATUS:
        at = _time_or_now(detail.get("timestamp"), f"{path}.{detail_key}.timestamp") if detail else mail_at
        recipient = first_to
        if kind == "Delivery":
            delivered = [r for r in _list(detail.get("recipients"), f"{path}.delivery.recipients") if _email(r)]
            recipient = _email_sender(_email(delivered[0])) if delivered else first_to
        return [status(_SES_STATUS[kind], at, recipient)]
    if kind in _SES_FAILED:
        code, title_key = _SES_FAILED[kind]
        return [status("failed", mail_at, first_to, code, _str(detail.get(title_key)))]
    if kind in _SES_OTHER:
        name, key = _SES_OTHER[kind]
        return [other(name, _time_or_now(detail.get("timestamp"), f"{path}.{key}.timestamp"))]
    return [other(kind.lower().replace(" ", "_"), mail_at)]


def _recipients(value: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    """(lower-cased address, entry) for each recipient entry with an email address."""
    found = []
    for r, raw in enumerate(_list(value, path)):
        entry = _obj(raw, f"{path}[{r}]")
        address = _email(entry.get("emailAddress"))
        if address is None:
            raise PayloadError(f"{path}[{r}]: missing emailAddress")
        found.append((address, entry))
    return found


def _sms_inbound(message: dict[str, Any], path: str, at: str) -> Message:
    """A two-way SMS: the customer's number texted the business's number (no time of its own: the SNS
    notification's time stands for it)."""
    origination = _id(message, "originationNumber", path)
    return Message(
        account_id=_id(message, "destinationNumber", path),
        provider_id=_id(message, "inboundMessageId", path),
        dedupe_key="",
        sender=Sender(channel="sms", user_id=origination, phone=_e164(origination)),
        at=at,
        kind="text",
        text=_text(message.get("messageBody")),
        raw=message,
    )


def _sms_event(message: dict[str, Any], path: str) -> Status | Other:
    """A delivery event of an SMS the business sent (an event destination publishing to SNS)."""
    kind = _id(message, "eventType", path)
    message_id = _id(message, "messageId", path)
    account_id = _str(message.get("originationPhoneNumber")) or ""
    at = _time(message.get("eventTimestamp"), f"{path}.eventTimestamp", ms=True)
    to = _str(message.get("destinationPhoneNumber"))
    recipient = Sender(channel="sms", user_id=to, phone=_e164(to)) if to else None
    if kind in _SMS_STATUS or kind in _SMS_FAILED:
        failed = kind in _SMS_FAILED
        return Status(
            account_id=account_id,
            channel="sms",
            provider_id=message_id,
            dedupe_key="",
            status="failed" if failed else _SMS_STATUS[kind],
            at=at,
            recipient=recipient,
            error_code=kind if failed else None,
            error_title=_str(message.get("messageStatusDescription")) if failed else None,
            raw=message,
        )
    # TEXT_QUEUED, TEXT_PENDING: not sent yet, nothing to record on the message; and any type to come.
    return Other(
        account_id=account_id,
        channel="sms",
        dedupe_key="",
        kind=f"sms:{kind.removeprefix('TEXT_').lower()}",
        at=at,
        sender=recipient,
        raw=message,
    )


# --- the product's own JSON: custom channels and web chat ---------------------------------------------


def parse_custom(body: dict, account_id: str, channel: str) -> list[Event]:
    """`{"events": [...]}` as a custom channel or the web chat posts it (at most 100 events): messages
    `{"type": "message", "id", "from": {"id", "name"?, "phone"?, "email"?}, "text"?, "media"?, "timestamp",
    "referral"?}` and statuses `{"type": "status", "message_id", "status", "timestamp", "error"?}`."""
    body = _obj(body, "body")
    if "events" not in body:
        raise PayloadError("body: missing events")
    items = _list(body["events"], "events", limit=MAX_CUSTOM_EVENTS)
    events: list[Event] = []
    for i, raw in enumerate(items):
        path = f"events[{i}]"
        item = _obj(raw, path)
        kind = item.get("type")
        if kind == "message":
            events.append(_custom_message(item, path, account_id, channel))
        elif kind == "status":
            events.append(_custom_status(item, path, account_id, channel))
        elif kind is None:
            raise PayloadError(f"{path}: missing type")
        else:
            raise PayloadError(f"{path}.type: not message or status ({kind!r})")
    return events


def _custom_message(item: dict[str, Any], path: str, account_id: str, channel: str) -> Message:
    message_id = _id(item, "id", path)
    sender_obj = _obj(item.get("from"), f"{path}.from") if "from" in item else None
    if sender_obj is None:
        raise PayloadError(f"{path}: missing from")
    phone = sender_obj.get("phone")
    if phone is not None and _e164(phone) is None:
        raise PayloadError(f"{path}.from.phone: not E.164 ('+' and 6-15 digits)")
    email = sender_obj.get("email")
    if email is not None and _email(email) is None:
        raise PayloadError(f"{path}.from.email: not an email address")
    media = _opt_obj(item.get("media"), f"{path}.media")
    referral = _opt_obj(item.get("referral"), f"{path}.referral")
    text = item.get("text")
    if text is not None and not isinstance(text, str):
        raise PayloadError(f"{path}.text: not a string")
    if not text and not media:
        raise PayloadError(f"{path}: missing text or media")
    kind = "text" if not media else _str(media.get("type")) or "media"
    return Message(
        account_id=account_id,
        provider_id=message_id,
        dedupe_key=f"{channel}:{account_id}:msg:{message_id}",
        sender=Sender(
            channel=channel,
            user_id=_id(sender_obj, "id", f"{path}.from"),
            phone=_e164(phone),
            email=_email(email),
            name=_str(sender_obj.get("name")),
        ),
        at=_time_or_now(item.get("timestamp"), f"{path}.timestamp"),
        kind=kind,
        text=_text(text),
        media=media,
        referral=referral,
        raw=item,
    )


def _custom_status(item: dict[str, Any], path: str, account_id: str, channel: str) -> Status:
    message_id = _id(item, "message_id", path)
    state = _id(item, "status", path)
    if state not in STATUS_RANK:
        raise PayloadError(f"{path}.status: not one of {', '.join(STATUS_RANK)} ({state!r})")
    error = _opt_obj(item.get("error"), f"{path}.error") or {}
    return Status(
        account_id=account_id,
        channel=channel,
        provider_id=message_id,
        dedupe_key=f"{channel}:{account_id}:status:{message_id}:{state}",
        status=state,
        at=_time_or_now(item.get("timestamp"), f"{path}.timestamp"),
        error_code=_str(error.get("code")),
        error_title=_str(error.get("title")),
        raw=item,
    )
