"""Kept for imports of the former conversation-event publisher: it is now audience.events.EventPublisher,
which publishes the enveloped events of docs/events.md (message.inbound, conversation.opted_out/opted_in)."""

from audience.events.publisher import EventPublisher

__all__ = ["EventPublisher"]
