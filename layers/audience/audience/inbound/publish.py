"""Conversation events on the stack's EventBridge bus, for follow-ups and integrations to react to.

Source `audience.inbound`; detail types `conversation.inbound` (a message arrived: a follow-up timer
stops), `conversation.opted_out` and `conversation.opted_in`. Delivery is at least once; `detail.event_id`
is stable across retries, so consumers dedupe on it.
"""

from __future__ import annotations

import json
from typing import Any

from audience import aws

SOURCE = "audience.inbound"


class EventPublisher:
    def __init__(self, bus_name: str) -> None:
        self._bus_name = bus_name

    def publish(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Put (detail type, detail) events; raises when any entry is refused, so the record is retried."""
        if not self._bus_name or not events:
            return
        client = aws.client("events")
        for start in range(0, len(events), 10):
            chunk = events[start : start + 10]
            response = client.put_events(
                Entries=[
                    {
                        "EventBusName": self._bus_name,
                        "Source": SOURCE,
                        "DetailType": detail_type,
                        "Detail": json.dumps(detail, separators=(",", ":")),
                    }
                    for detail_type, detail in chunk
                ]
            )
            if response.get("FailedEntryCount"):
                failed = [e for e in response["Entries"] if e.get("ErrorCode")]
                raise RuntimeError(f"EventBridge refused {len(failed)} events: {failed[0].get('ErrorMessage')}")
