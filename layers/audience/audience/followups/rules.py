"""Follow-up rules: when an idle conversation is followed up, with what, how often, and how it is closed.

An org has one set of rules and may give a connection its own. The timeline of one conversation, from the
business's last outbound message at `base`:

- follow-up 1 is due at `base + idle_seconds`;
- follow-up k+1 is due `intervals_seconds[k-1]` after follow-up k went (the last interval repeats);
- after `max_follow_ups`, the conversation is closed `closing.after_seconds` after the last one (resolved,
  with an optional closing message).

A message goes only inside business hours in the recipient's time zone (the zone its phone number tells,
else the rules' zone): one that falls outside waits for the next opening. Inside WhatsApp's (or Meta's)
24-hour window a step sends its `text`; outside it, its `template`; a step with neither that fits is
skipped and recorded as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from audience.broadcasts.quiet import parse_clock, valid_zone
from audience.errors import ValidationError
from audience.providers.base import Param, Template

MAX_FOLLOW_UPS = 10
DEFAULT_FOLLOW_UPS = 3
MAX_SECONDS = 30 * 24 * 3600
MAX_TEXT = 4096
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")


@dataclass(frozen=True, slots=True)
class Content:
    """What one step says: free text for inside the 24-hour window, a template for outside it."""

    text: str | None = None
    template: Template | None = None

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.text is not None:
            found["text"] = self.text
        if self.template is not None:
            found["template"] = {
                "name": self.template.name,
                "language": self.template.language,
                "body": [p.value for p in self.template.body],
            }
        return found


@dataclass(frozen=True, slots=True)
class BusinessHours:
    days: tuple[int, ...]  # 0 = Monday
    start: time
    end: time
    timezone: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "days": [DAYS[d] for d in self.days],
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "timezone": self.timezone,
        }

    def next_open(self, moment: datetime, zone: str | None) -> datetime:
        """The first moment at or after `moment` inside business hours in `zone` (the rules' zone when None)."""
        tz = ZoneInfo(zone or self.timezone)
        local = moment.astimezone(tz)
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens = datetime.combine(day, self.start, tzinfo=tz)
            closes = datetime.combine(day, self.end, tzinfo=tz)
            if closes <= local:
                continue
            return max(opens, local).astimezone(UTC)
        raise AssertionError("business hours have at least one day")  # checked when the rules were parsed


@dataclass(frozen=True, slots=True)
class Rules:
    enabled: bool = False
    idle_seconds: int = 3600
    intervals_seconds: tuple[int, ...] = ()
    max_follow_ups: int = DEFAULT_FOLLOW_UPS
    messages: tuple[Content, ...] = ()
    business_hours: BusinessHours | None = None
    resolve: bool = True
    close_after_seconds: int | None = None
    closing_message: Content | None = None
    connection_id: str | None = None  # None: the org's rules
    updated_at: str | None = None

    def interval(self, sent: int) -> int:
        """Seconds from follow-up `sent` (1-based) to the next."""
        if not self.intervals_seconds:
            return self.idle_seconds
        return self.intervals_seconds[min(sent - 1, len(self.intervals_seconds) - 1)]

    def wait_after(self, sent: int) -> int:
        """Seconds from the last step (the outbound message when `sent` is 0) to the next one: a follow-up,
        or the closing once `max_follow_ups` went."""
        if sent == 0:
            return self.idle_seconds
        if sent >= self.max_follow_ups:
            return self.close_after_seconds if self.close_after_seconds is not None else self.interval(sent)
        return self.interval(sent)

    def message(self, step: int) -> Content:
        """What follow-up `step` (0-based) says."""
        return self.messages[min(step, len(self.messages) - 1)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "idle_seconds": self.idle_seconds,
            "intervals_seconds": list(self.intervals_seconds),
            "max_follow_ups": self.max_follow_ups,
            "messages": [m.as_dict() for m in self.messages],
            "business_hours": self.business_hours.as_dict() if self.business_hours else None,
            "closing": {
                "resolve": self.resolve,
                "after_seconds": self.close_after_seconds,
                "message": self.closing_message.as_dict() if self.closing_message else None,
            },
            "connection_id": self.connection_id,
            "updated_at": self.updated_at,
        }


def _seconds(value: Any, path: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_SECONDS:
        raise ValidationError.for_field(
            path, value, f"must be a whole number of seconds from {minimum} to {MAX_SECONDS}"
        )
    return value


def parse_template(data: Any, path: str) -> Template:
    if not isinstance(data, dict) or set(data) - {"name", "language", "body"}:
        raise ValidationError.for_field(path, None, "must be {name, language, body}")
    name, language, body = data.get("name"), data.get("language", "en"), data.get("body") or []
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError.for_field(f"{path}.name", name, "must be a template name: lower-case letters, digits, _")
    if not isinstance(language, str) or not _LANGUAGE.match(language):
        raise ValidationError.for_field(f"{path}.language", language, "must be a language code such as en or pt_BR")
    if not isinstance(body, list) or len(body) > 20:
        raise ValidationError.for_field(f"{path}.body", None, "must be a list of at most 20 texts")
    for index, value in enumerate(body):
        if not isinstance(value, str) or not value or len(value) > 1024:
            raise ValidationError.for_field(f"{path}.body[{index}]", value, "must be text of 1 to 1024 characters")
    return Template(name, language, body=tuple(Param(v) for v in body))


def parse_content(data: Any, path: str) -> Content:
    if not isinstance(data, dict) or set(data) - {"text", "template"}:
        raise ValidationError.for_field(path, None, "must be {text, template}")
    text = data.get("text")
    if text is not None and (not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT):
        raise ValidationError.for_field(f"{path}.text", text, f"must be text of 1 to {MAX_TEXT} characters")
    template = parse_template(data["template"], f"{path}.template") if data.get("template") is not None else None
    if text is None and template is None:
        raise ValidationError.for_field(path, None, "needs text (inside the 24-hour window) or a template (outside it)")
    return Content(text, template)


def parse_business_hours(data: Any, path: str = "business_hours") -> BusinessHours | None:
    if data is None:
        return None
    if not isinstance(data, dict) or set(data) - {"days", "start", "end", "timezone"}:
        raise ValidationError.for_field(path, None, "must be {days, start, end, timezone}")
    days = data.get("days", list(DAYS[:5]))
    if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
        raise ValidationError.for_field(f"{path}.days", None, f"must be a non-empty list of {', '.join(DAYS)}")
    bounds = [parse_clock(data.get(name), f"{path}.{name}") for name in ("start", "end")]
    if bounds[0] >= bounds[1]:
        raise ValidationError.for_field(f"{path}.end", data.get("end"), "must be later in the day than start")
    zone = data.get("timezone", "UTC")
    if not isinstance(zone, str) or not valid_zone(zone):
        raise ValidationError.for_field(f"{path}.timezone", zone, "must be an IANA time zone, like Europe/Berlin")
    return BusinessHours(tuple(sorted({DAYS.index(d) for d in days})), bounds[0], bounds[1], zone)


def parse_rules(data: dict[str, Any], *, connection_id: str | None = None, updated_at: str | None = None) -> Rules:
    """Rules from their JSON form, every problem named by its field."""
    known = {"enabled", "idle_seconds", "intervals_seconds", "max_follow_ups", "messages", "business_hours", "closing"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValidationError.for_field(unknown[0], None, f"is not a rule (known: {', '.join(sorted(known))})")
    enabled = data.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ValidationError.for_field("enabled", enabled, "must be true or false")
    idle = _seconds(data.get("idle_seconds", 3600), "idle_seconds")
    intervals = data.get("intervals_seconds") or []
    if not isinstance(intervals, list) or len(intervals) > MAX_FOLLOW_UPS:
        raise ValidationError.for_field("intervals_seconds", None, f"must be a list of at most {MAX_FOLLOW_UPS}")
    intervals = [_seconds(v, f"intervals_seconds[{i}]") for i, v in enumerate(intervals)]
    count = data.get("max_follow_ups", DEFAULT_FOLLOW_UPS)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_FOLLOW_UPS:
        raise ValidationError.for_field("max_follow_ups", count, f"must be a whole number from 0 to {MAX_FOLLOW_UPS}")
    messages = data.get("messages") or []
    if not isinstance(messages, list) or len(messages) > MAX_FOLLOW_UPS:
        raise ValidationError.for_field("messages", None, f"must be a list of at most {MAX_FOLLOW_UPS} messages")
    contents = tuple(parse_content(m, f"messages[{i}]") for i, m in enumerate(messages))
    if enabled and count and not contents:
        raise ValidationError.for_field("messages", None, "must give at least one message when max_follow_ups > 0")
    closing = data.get("closing") or {}
    if not isinstance(closing, dict) or set(closing) - {"resolve", "after_seconds", "message"}:
        raise ValidationError.for_field("closing", None, "must be {resolve, after_seconds, message}")
    resolve = closing.get("resolve", True)
    if not isinstance(resolve, bool):
        raise ValidationError.for_field("closing.resolve", resolve, "must be true or false")
    after = closing.get("after_seconds")
    close_after = None if after is None else _seconds(after, "closing.after_seconds")
    message = closing.get("message")
    return Rules(
        enabled=enabled,
        idle_seconds=idle,
        intervals_seconds=tuple(intervals),
        max_follow_ups=count,
        messages=contents,
        business_hours=parse_business_hours(data.get("business_hours")),
        resolve=resolve,
        close_after_seconds=close_after,
        closing_message=parse_content(message, "closing.message") if message is not None else None,
        connection_id=connection_id,
        updated_at=updated_at,
    )


DISABLED = Rules()
