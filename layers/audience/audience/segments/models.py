"""Segments, memberships and recorded events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATIC = "static"
DYNAMIC = "dynamic"
TYPES = (STATIC, DYNAMIC)

# A segment is `ready`, `building` (its members are being computed after a create or a rule change) or
# `deleting` (its members are being removed; it no longer accepts members and is not listed).
READY, BUILDING, DELETING = "ready", "building", "deleting"

# Membership sources: added by a client (static) or by the rules (dynamic).
BY_CLIENT, BY_RULES = "client", "rules"

MAX_SEGMENTS_PER_ORG = 500
MAX_DYNAMIC_SEGMENTS_PER_ORG = 100

# Predefined segments: fixed ids (26 characters after the prefix, as every id) so that creating them is
# idempotent, and rules from the engine's PREDEFINED trees.
PREDEFINED_IDS = {"active": "sg_00000000000000000000active", "inactive": "sg_000000000000000000inactive"}
PREDEFINED_NAMES = {"active": "Active", "inactive": "Inactive"}
PREDEFINED_DESCRIPTIONS = {
    "active": "Contacts with an inbound message or an event in the last 30 days",
    "inactive": "Contacts without an inbound message or an event in the last 30 days",
}


@dataclass(slots=True)
class Segment:
    id: str
    org_id: str
    name: str
    type: str
    description: str | None = None
    rules: dict[str, Any] | None = None  # the engine's normalised tree, for dynamic segments
    timezone: str = "UTC"
    predefined: str | None = None  # "active" or "inactive"
    state: str = READY
    version: int = 1  # bumped whenever the rules (or time zone) change; memberships are written against it
    locks: dict[str, dict[str, str]] = field(default_factory=dict)  # broadcast id -> {name, status}
    created_at: str = ""
    updated_at: str = ""

    @property
    def dynamic(self) -> bool:
        return self.type == DYNAMIC


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One event as the API accepted it, already validated and bound to a contact."""

    contact_id: str
    name: str
    at: str  # ISO 8601 UTC, as clock.iso formats it
    properties: dict[str, Any]
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class MembershipChange:
    segment_id: str
    contact_id: str
    contact_created_at: str
    member: bool  # True: add, False: remove
    source: str = BY_RULES
