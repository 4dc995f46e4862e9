"""The event types the stack publishes: each with its source (the domain) and its current version."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EventType:
    name: str  # the detail type, e.g. contact.updated
    source: str  # the EventBridge source, audience.<domain>
    version: int  # bumped only for a breaking change of `data` (docs/events.md)
    description: str


_TYPES = (
    EventType("contact.created", "audience.contacts", 1, "A contact was created (API, import, inbound message)."),
    EventType("contact.updated", "audience.contacts", 1, "A contact's own fields changed; names of those fields."),
    EventType("contact.deleted", "audience.contacts", 1, "A contact was deleted (or merged into another)."),
    EventType("contact.merged", "audience.contacts", 1, "A contact was merged into another and removed."),
    EventType("contact.subscription_changed", "audience.contacts", 1, "A contact's subscription status changed."),
    EventType("segment.member_added", "audience.segments", 1, "A contact became a member of a segment."),
    EventType("segment.member_removed", "audience.segments", 1, "A contact stopped being a member of a segment."),
    EventType("import.finished", "audience.imports", 1, "An import run completed, failed or was cancelled."),
    EventType("broadcast.status_changed", "audience.broadcasts", 1, "A broadcast moved to another status."),
    EventType("recipient.status_changed", "audience.broadcasts", 1, "A broadcast recipient was sent, delivered..."),
    EventType("message.inbound", "audience.inbound", 1, "A contact's message arrived on a channel."),
    EventType("conversation.opted_out", "audience.inbound", 1, "A contact sent an opt-out keyword."),
    EventType("conversation.opted_in", "audience.inbound", 1, "A contact sent an opt-in keyword."),
    EventType("webhook.test", "audience.webhooks", 1, "A test delivery requested for an outbound webhook."),
)

TYPES: dict[str, EventType] = {t.name: t for t in _TYPES}


def source_of(name: str) -> str:
    return TYPES[name].source


def version_of(name: str) -> int:
    return TYPES[name].version


def schema_file(name: str, version: int | None = None) -> str:
    """The schema's file name under audience/events/schemas (the current version unless given)."""
    return f"{name}.v{version or TYPES[name].version}.json"
