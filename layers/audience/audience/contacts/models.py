"""The contact record and its activity entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATUSES: tuple[str, ...] = ("SUBSCRIBED", "UNSUBSCRIBED", "BLOCKED")
CHANNELS: tuple[str, ...] = (
    "whatsapp",
    "messenger",
    "instagram",
    "telegram",
    "webchat",
    "email",
    "sms",
    "custom",
)
# When contacts merge, the most restrictive status wins: an opt-out is never undone by a merge.
STATUS_RANK = {"SUBSCRIBED": 0, "UNSUBSCRIBED": 1, "BLOCKED": 2}

MAX_TAGS = 30
MAX_CHANNELS = 10
MAX_EXTRA_IDENTITIES = 20


@dataclass(frozen=True, slots=True)
class Identity:
    """Something that names exactly one contact in an org: a phone, an email or a channel user id."""

    type: str  # "phone", "email" or a channel name
    value: str


@dataclass(slots=True)
class Contact:
    id: str
    org_id: str
    status: str = "SUBSCRIBED"
    first_name: str | None = None
    last_name: str | None = None
    full_name: str | None = None
    # The name a contact had before a name it shared (or its platform profile) first replaced it; set once.
    original_name: str | None = None
    email: str | None = None
    phone: str | None = None
    country: str | None = None
    channels: list[dict[str, str]] = field(default_factory=list)
    custom_fields: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    # Identities the contact gained from merges beyond its primary email and phone.
    extra_identities: list[Identity] = field(default_factory=list)
    # The phone's number type (phonenumbers: mobile, fixed_line, voip...), recorded when the phone is set.
    phone_type: str | None = None
    # Facts per channel and engagement counts (audience.contacts.quality); written by inbound processing.
    reach: dict[str, dict[str, str]] = field(default_factory=dict)
    engagement: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    created_at: str = ""
    updated_at: str = ""

    def identities(self) -> list[Identity]:
        """Every identity this contact owns, primary first."""
        found: list[Identity] = []
        if self.phone:
            found.append(Identity("phone", self.phone))
        if self.email:
            found.append(Identity("email", self.email))
        found.extend(Identity(ch["channel"], ch["user_id"]) for ch in self.channels)
        found.extend(self.extra_identities)
        unique: dict[Identity, None] = dict.fromkeys(found)
        return list(unique)

    def display_name(self) -> str | None:
        if self.full_name:
            return self.full_name
        joined = " ".join(p for p in (self.first_name, self.last_name) if p)
        return joined or None


@dataclass(frozen=True, slots=True)
class Activity:
    """One entry of a contact's timeline."""

    type: str  # created, updated, status_changed, merged
    at: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str = ""


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    next_cursor: str | None
