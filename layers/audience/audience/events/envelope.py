"""The envelope every event carries as its EventBridge detail, and the ids that make redeliveries dedupe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audience import ids
from audience.events.catalogue import TYPES


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of PutEvents: Source, DetailType and the envelope as Detail."""

    source: str
    detail_type: str
    detail: dict[str, Any]


def event_id(*facts: object) -> str:
    """A stable event id: the same fact (same parts) always gives the same id, whoever publishes it and
    however often, so receivers dedupe on it."""
    return "ev_" + ids.derived("|".join(str(f) for f in facts))


def envelope(type_: str, id_: str, org_id: str, occurred_at: str, data: dict[str, Any]) -> dict[str, Any]:
    """The detail of an event: {id, type, version, org_id, occurred_at, data}."""
    return {
        "id": id_,
        "type": type_,
        "version": TYPES[type_].version,
        "org_id": org_id,
        "occurred_at": occurred_at,
        "data": data,
    }


def make(type_: str, *, key: tuple[object, ...], org_id: str, occurred_at: str, data: dict[str, Any]) -> Event:
    """An event of a catalogued type whose id derives from `key` (the facts that identify it) and its type."""
    known = TYPES[type_]
    detail = envelope(type_, event_id(type_, *key), org_id, occurred_at, data)
    return Event(known.source, type_, detail)
