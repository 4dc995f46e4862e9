"""Contact quality: the validation score, reachability per channel, system tags and engagement metrics.

Everything here is a pure function of what the contact item stores, so a score is the same wherever it is
read (the API, segment rules, exports) and changes only when a fact arrives. docs/contact-quality.md
states the formula; tests/unit/test_contact_quality.py checks each factor.

The item keeps two maps that the writes of inbound processing maintain (`ContactsRepository.record_signal`):

- `reach`: per channel, the latest time of each fact: `in` (a message from the contact), `ok` (a delivered
  or read status), `fail` (a provider error that means "not reachable", with its `code`), `bounce`,
  `complaint`, `stop` (an opt-out) and `start` (an opt-in). Facts are times, and applying one keeps the
  later time, so a fact applied twice changes nothing.
- `engagement`: day buckets of counts (`days`: {day number since 1970: [received, read, replied,
  broadcasts]}), the last engaged time (`last`) and the broadcasts received in all (`broadcasts`).
  Buckets older than 90 days are dropped on every write, so the map stays small.

Standard library only: the segment stream evaluates rules over these on every contact change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

# -- facts -------------------------------------------------------------------------------------------

INBOUND, DELIVERED, READ, FAILED, BOUNCE, COMPLAINT, STOP, START = (
    "inbound",
    "delivered",
    "read",
    "failed",
    "bounce",
    "complaint",
    "stop",
    "start",
)
SIGNALS = (INBOUND, DELIVERED, READ, FAILED, BOUNCE, COMPLAINT, STOP, START)
ALL_CHANNELS = "*"  # an opt-out or opt-in of every channel (STOPALL)

# Provider errors that mean the address cannot be reached on the channel (not a rate limit, not a
# policy of the sender): the reachability score drops until the contact is reached again. Graph API codes
# are matched without their subcode (the Send API's failures read "code:subcode").
UNREACHABLE: dict[str, frozenset[str]] = {
    # 131026: message undeliverable (not a WhatsApp user, an old app, or the user blocked the business).
    "whatsapp": frozenset({"131026"}),
    # 551: "This person isn't available right now".
    "messenger": frozenset({"551"}),
    "instagram": frozenset({"551"}),
    # Bot API 403: the bot was blocked by the user or the user is deactivated.
    "telegram": frozenset({"403"}),
    # AWS End User Messaging SMS events: the carrier cannot reach the number, or it is not a valid one.
    "sms": frozenset({"TEXT_UNREACHABLE", "TEXT_CARRIER_UNREACHABLE", "TEXT_INVALID"}),
}

_FACT_OF = {INBOUND: "in", DELIVERED: "ok", READ: "ok", FAILED: "fail", BOUNCE: "bounce", COMPLAINT: "complaint"}
_FACT_OF |= {STOP: "stop", START: "start"}

# -- counts ------------------------------------------------------------------------------------------

RECEIVED, READ_COUNT, REPLIED, BROADCASTS = 0, 1, 2, 3
# Windowed metrics by name (segment attributes `<name>_30d` and `<name>_90d`) and their bucket index.
WINDOWED = {"messages_received": 0, "messages_read": 1, "messages_replied": 2, "broadcasts_received": 3}
KEEP_DAYS = 90
WINDOWS = (30, 90)
_EPOCH = date(1970, 1, 1)

# -- scores ------------------------------------------------------------------------------------------

ROLE_LOCAL_PARTS = frozenset(
    {
        "admin",
        "administrator",
        "billing",
        "contact",
        "enquiries",
        "hello",
        "help",
        "hr",
        "info",
        "inquiries",
        "jobs",
        "marketing",
        "no-reply",
        "noreply",
        "office",
        "postmaster",
        "sales",
        "support",
        "team",
        "webmaster",
    }
)
# Validation points of a phone by its type (phonenumbers' number types). A stored phone is always a valid
# number; `None` is a contact stored before types were recorded.
PHONE_VALIDATION: dict[str | None, int] = {
    "mobile": 100,
    "fixed_line_or_mobile": 90,
    None: 80,
    "fixed_line": 70,
    "voip": 60,
    "personal_number": 60,
}
OTHER_PHONE_VALIDATION = 40  # toll free, premium rate, shared cost, pager, UAN, voicemail
EMAIL_VALIDATION = 100
ROLE_EMAIL_VALIDATION = 60
NO_NAME_PENALTY = 10

# Reachability before any evidence, by what the contact's address says about the channel.
SMS_BASE: dict[str | None, int] = {"mobile": 60, "fixed_line_or_mobile": 50, None: 50, "voip": 40}
WHATSAPP_BASE: dict[str | None, int] = {"mobile": 50, "fixed_line_or_mobile": 45, None: 45, "voip": 30}
LANDLINE_SMS_BASE = 10
LANDLINE_WHATSAPP_BASE = 20
OTHER_PHONE_BASE = 10
WHATSAPP_ID_ONLY_BASE = 40  # a WhatsApp id that is not a valid phone number
EMAIL_BASE = 60
ROLE_EMAIL_BASE = 45
CHANNEL_ID_BASE = 50  # an id the platform gave us (Messenger, Instagram, Telegram, web chat)
INBOUND_BONUS = 40
DELIVERED_BONUS = 30
FAILED_CAP = 10


@dataclass(frozen=True, slots=True)
class Signal:
    """One fact about a contact on a channel. `count` is False when the fact is applied again (a retried
    record): its time still applies (idempotent), its counts do not."""

    kind: str
    channel: str
    at: str
    code: str | None = None
    broadcast: bool = False
    count: bool = True
    received: bool = False  # a read whose message was never reported delivered: it was received too


def is_unreachable(channel: str, code: str | None) -> bool:
    """Whether a provider's failure code means the address cannot be reached on the channel."""
    if not code:
        return False
    codes = UNREACHABLE.get(channel, frozenset())
    return code in codes or code.split(":", 1)[0] in codes


def signal_for_status(
    channel: str, status: str, at: str, code: str | None, *, broadcast: bool, skipped_delivery: bool = False
) -> Signal | None:
    """The signal a message status carries, if any: delivered and read reach the contact (a read that
    skipped "delivered" counts as received too); a failure counts only when its code means the address
    is unreachable."""
    if status == "delivered":
        return Signal(DELIVERED, channel, at, broadcast=broadcast)
    if status == "read":
        return Signal(READ, channel, at, broadcast=broadcast, received=skipped_delivery)
    if status == "failed" and is_unreachable(channel, code):
        return Signal(FAILED, channel, at, code=code)
    return None


def day_number(at: str | date) -> int:
    day = at if isinstance(at, date) else date.fromisoformat(at[:10])
    return (day - _EPOCH).days


def apply(
    reach: Mapping[str, Any] | None, engagement: Mapping[str, Any] | None, signal: Signal, today: date
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `reach` and `engagement` maps after `signal` (new maps; the arguments are not changed)."""
    new_reach = {name: dict(facts) for name, facts in (reach or {}).items()}
    facts = new_reach.setdefault(signal.channel, {})
    key = _FACT_OF[signal.kind]
    if facts.get(key, "") < signal.at:
        facts[key] = signal.at
        if signal.kind == FAILED:
            facts["code"] = signal.code or ""
    new_engagement: dict[str, Any] = {k: v for k, v in (engagement or {}).items() if k != "days"}
    days = {int(k): list(v) for k, v in ((engagement or {}).get("days") or {}).items()}
    oldest = day_number(today) - KEEP_DAYS
    days = {k: v for k, v in days.items() if k > oldest}
    if signal.count and signal.kind in (DELIVERED, READ, INBOUND):
        day = day_number(signal.at)
        if day > oldest:
            bucket = days.setdefault(day, [0, 0, 0, 0])
            received = signal.kind == DELIVERED or signal.received
            if received:
                bucket[RECEIVED] += 1
                if signal.broadcast:
                    bucket[BROADCASTS] += 1
            if signal.kind == READ:
                bucket[READ_COUNT] += 1
            elif signal.kind == INBOUND:
                bucket[REPLIED] += 1
        if (signal.kind == DELIVERED or signal.received) and signal.broadcast:
            new_engagement["broadcasts"] = int(new_engagement.get("broadcasts", 0)) + 1
    if signal.kind in (READ, INBOUND) and new_engagement.get("last", "") < signal.at:
        new_engagement["last"] = signal.at
    new_engagement["days"] = {str(k): v for k, v in sorted(days.items())}
    return new_reach, new_engagement


def merge(target: Mapping[str, Any] | None, source: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    """`reach` or `engagement` of a contact absorbing another: the later fact of each, summed counts."""
    if kind == "reach":
        merged = {name: dict(facts) for name, facts in (target or {}).items()}
        for name, facts in (source or {}).items():
            into = merged.setdefault(name, {})
            for key, at in facts.items():
                if key != "code" and into.get(key, "") < at:
                    into[key] = at
                    if key == "fail":
                        into["code"] = facts.get("code", "")
        return merged
    a, b = dict(target or {}), dict(source or {})
    days: dict[str, list[int]] = {k: list(v) for k, v in (a.get("days") or {}).items()}
    for day, counts in (b.get("days") or {}).items():
        into_counts = days.setdefault(day, [0, 0, 0, 0])
        for i, value in enumerate(counts):
            into_counts[i] += int(value)
    merged = {"days": dict(sorted(days.items(), key=lambda item: int(item[0])))}
    if a.get("last") or b.get("last"):
        merged["last"] = max(a.get("last", ""), b.get("last", ""))
    if a.get("broadcasts") or b.get("broadcasts"):
        merged["broadcasts"] = int(a.get("broadcasts", 0)) + int(b.get("broadcasts", 0))
    return merged


# -- reading -----------------------------------------------------------------------------------------


def is_role_email(email: str | None) -> bool:
    if not email or "@" not in email:
        return False
    local = email.split("@", 1)[0].split("+", 1)[0].lower()
    return local in ROLE_LOCAL_PARTS


def _channel_ids(contact: Any) -> dict[str, str]:
    return {c["channel"]: c["user_id"] for c in contact.channels if isinstance(c, Mapping) and "channel" in c}


def validation_score(contact: Any) -> int:
    """0-100: how well formed the contact's identifiers are. The mean of its identifiers' points (a phone
    by its type; an email, less for a role address; a WhatsApp or SMS id that is not a valid phone 0; a
    platform id 100), less 10 without a name."""
    points: list[int] = []
    ids = _channel_ids(contact)
    if contact.phone:
        points.append(PHONE_VALIDATION.get(contact.phone_type, OTHER_PHONE_VALIDATION))
    elif "whatsapp" in ids or "sms" in ids:
        points.append(0)
    email = _email(contact)
    if email:
        points.append(ROLE_EMAIL_VALIDATION if is_role_email(email) else EMAIL_VALIDATION)
    elif "email" in ids:
        points.append(0)  # an email channel id that is not an address
    points.extend(100 for name in ids if name not in ("whatsapp", "sms", "email"))
    if not points:
        return 0
    score = round(sum(points) / len(points))
    if contact.display_name() is None:
        score -= NO_NAME_PENALTY
    return max(0, min(100, score))


def _looks_like_email(value: str) -> bool:
    local, _, domain = value.partition("@")
    return bool(local) and "." in domain and " " not in value


def _email(contact: Any) -> str | None:
    """The contact's email, else its email channel id when that is an address."""
    if contact.email:
        return str(contact.email)
    channel_id = _channel_ids(contact).get("email")
    return channel_id if channel_id and _looks_like_email(channel_id) else None


def reachable_channels(contact: Any) -> list[str]:
    """The channels the contact has an address on: its channel ids, WhatsApp and SMS with a phone, email
    with an email."""
    found = list(_channel_ids(contact))
    if contact.phone:
        found.extend(("whatsapp", "sms"))
    if contact.email:
        found.append("email")
    return list(dict.fromkeys(found))


def _base(contact: Any, channel: str) -> int:
    kind = contact.phone_type
    if channel == "sms":
        if not contact.phone:
            return 0
        if kind == "fixed_line":
            return LANDLINE_SMS_BASE
        return SMS_BASE.get(kind, OTHER_PHONE_BASE)
    if channel == "whatsapp":
        if not contact.phone:
            return WHATSAPP_ID_ONLY_BASE if "whatsapp" in _channel_ids(contact) else 0
        if kind == "fixed_line":
            return LANDLINE_WHATSAPP_BASE
        return WHATSAPP_BASE.get(kind, OTHER_PHONE_BASE)
    if channel == "email":
        email = _email(contact)
        if not email:
            return 0
        return ROLE_EMAIL_BASE if is_role_email(email) else EMAIL_BASE
    return CHANNEL_ID_BASE


def _opted_out(facts: Mapping[str, str], every: Mapping[str, str]) -> bool:
    """An opt-out of the channel later than its last opt-in, or of every channel later than the last opt-in
    of every channel or of this one (an opt-in on a channel also clears a STOPALL there)."""
    if facts.get("stop", "") > facts.get("start", ""):
        return True
    return every.get("stop", "") > max(every.get("start", ""), facts.get("start", ""))


def reachability(contact: Any) -> dict[str, int]:
    """0-100 per channel the contact has an address on.

    Start from what the address says (`_base`); a message from the contact adds 40 and a delivered or
    read status 30 (at most 100); then the latest facts decide: a failure that means unreachable, or a
    bounce, later than the last success caps it at 10; a complaint, or an opt-out later than the last
    opt-in, makes it 0. An unsubscribed or blocked contact is 0 on every channel."""
    reach = contact.reach or {}
    every = reach.get(ALL_CHANNELS) or {}
    stopped = contact.status in ("UNSUBSCRIBED", "BLOCKED")
    scores: dict[str, int] = {}
    for channel in reachable_channels(contact):
        facts = reach.get(channel) or {}
        score = 0 if stopped else _base(contact, channel)
        if score == 0:
            scores[channel] = 0
            continue
        if facts.get("in"):
            score += INBOUND_BONUS
        if facts.get("ok"):
            score += DELIVERED_BONUS
        score = min(100, score)
        success = max(facts.get("in", ""), facts.get("ok", ""))
        failure = max(facts.get("fail", ""), facts.get("bounce", ""))
        if failure > success:
            score = min(score, FAILED_CAP)
        if facts.get("complaint") or _opted_out(facts, every):
            score = 0
        scores[channel] = score
    return scores


def system_tags(contact: Any) -> list[str]:
    """Tags the system maintains from the scores: invalid_phone, invalid_email, role_email, landline, voip,
    unreachable_<channel> (a failure or bounce after the last success), complained, opted_out_<channel>."""
    tags: list[str] = []
    ids = _channel_ids(contact)
    if not contact.phone and ("whatsapp" in ids or "sms" in ids):
        tags.append("invalid_phone")
    if not contact.email and "email" in ids and not _looks_like_email(ids["email"]):
        tags.append("invalid_email")
    if is_role_email(_email(contact)):
        tags.append("role_email")
    if contact.phone and contact.phone_type == "fixed_line":
        tags.append("landline")
    if contact.phone and contact.phone_type == "voip":
        tags.append("voip")
    reach = contact.reach or {}
    every = reach.get(ALL_CHANNELS) or {}
    for channel in reachable_channels(contact):
        facts = reach.get(channel) or {}
        success = max(facts.get("in", ""), facts.get("ok", ""))
        if max(facts.get("fail", ""), facts.get("bounce", "")) > success:
            tags.append(f"unreachable_{channel}")
        if facts.get("complaint"):
            tags.append("complained")
        if _opted_out(facts, every):
            tags.append(f"opted_out_{channel}")
    return list(dict.fromkeys(tags))


def counts(contact: Any, today: date, days: int) -> tuple[int, int, int, int]:
    """(received, read, replied, broadcasts) in the `days` days up to and including `today` (UTC)."""
    buckets = (contact.engagement or {}).get("days") or {}
    last = day_number(today)
    first = last - days + 1
    total = [0, 0, 0, 0]
    for day, values in buckets.items():
        if first <= int(day) <= last:
            for i, value in enumerate(values[:4]):
                total[i] += int(value)
    return total[0], total[1], total[2], total[3]


def engagement(contact: Any, now: datetime | None = None) -> dict[str, Any]:
    """The engagement metrics shown on a contact."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    shown: dict[str, Any] = {}
    for days in WINDOWS:
        received, read, replied, broadcasts = counts(contact, today, days)
        shown[f"messages_received_{days}d"] = received
        shown[f"messages_read_{days}d"] = read
        shown[f"messages_replied_{days}d"] = replied
        shown[f"broadcasts_received_{days}d"] = broadcasts
    shown["broadcasts_received"] = int((contact.engagement or {}).get("broadcasts", 0))
    shown["last_engaged_at"] = (contact.engagement or {}).get("last")
    return shown


def count_in_window(contact: Any, *, index: int, today: date, days: int) -> int:
    """One windowed count (see WINDOWED), for segment rules."""
    return counts(contact, today, days)[index]


def reachability_on(contact: Any, *, channel: str) -> int:
    """The reachability score on one channel; 0 where the contact has no address."""
    return reachability(contact).get(channel, 0)


def broadcasts_received(contact: Any) -> int:
    return int((contact.engagement or {}).get("broadcasts", 0))


def last_engaged(contact: Any) -> str | None:
    return (contact.engagement or {}).get("last")
