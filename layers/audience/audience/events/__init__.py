"""Domain events on the stack's EventBridge bus: the envelope, the catalogue of types and the publisher.

Schemas of every type live in `schemas/<type>.v<version>.json` (JSON Schema draft 2020-12); docs/events.md
describes them and the compatibility rule.
"""

from audience.events.catalogue import TYPES, EventType, schema_file, source_of, version_of
from audience.events.envelope import Event, envelope, event_id, make
from audience.events.publisher import EventPublisher, PublishError

__all__ = [
    "TYPES",
    "Event",
    "EventPublisher",
    "EventType",
    "PublishError",
    "envelope",
    "event_id",
    "make",
    "schema_file",
    "source_of",
    "version_of",
]
