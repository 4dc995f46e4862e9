"""BroadcastStreamFunction: publishes broadcast.status_changed and recipient.status_changed (docs/events.md)
from the broadcasts table stream.

Every status move of a broadcast or a recipient is one stream record, whoever wrote it, so the events cost
no reads and add no latency to sending. The batch's events are put on EVENT_BUS_NAME ten at a time (refused
entries are put again with backoff); when EventBridge still refuses any, the batch is reported failed from
its first record with events, so Lambda retries from there (ids are stable; receivers dedupe) and finally
sends the records to BroadcastStreamDLQ. A record whose events cannot be worked out fails alone: the events
of the others are still published, and the batch is reported failed from the lowest failed record.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from audience.events.broadcast_stream import events_of
from audience.events.publisher import EventPublisher, deadline_of

logger = Logger()
metrics = Metrics()


def publisher() -> EventPublisher:
    # Not cached: it holds only the bus name (the events client is shared through audience.aws).
    return EventPublisher(os.environ.get("EVENT_BUS_NAME", "").strip())


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    events: list[Any] = []
    first: str | None = None  # the lowest record to report failed
    first_with_events: str | None = None
    for record in event.get("Records") or []:
        sequence = record["dynamodb"]["SequenceNumber"]
        try:
            found = events_of(record)
        except Exception:
            logger.exception("record's events not worked out; it is retried", extra={"sequence": sequence})
            first = first or sequence
            continue
        if found and first_with_events is None:
            first_with_events = sequence
        events.extend(found)
    if events:
        try:
            published = publisher().publish(events, deadline=deadline_of(context))
        except Exception:
            logger.exception("events not published; the records are retried", extra={"events": len(events)})
            metrics.add_metric(name="EventsNotPublished", unit=MetricUnit.Count, value=len(events))
            # Records come in sequence order: whichever of the two came first is the lowest.
            first = first if first and _before(event, first, first_with_events) else first_with_events
        else:
            metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=published)
    return {"batchItemFailures": [{"itemIdentifier": first}] if first else []}


def _before(event: dict[str, Any], a: str, b: str | None) -> bool:
    """Whether record `a` comes before record `b` in the batch."""
    order = [record["dynamodb"]["SequenceNumber"] for record in event.get("Records") or []]
    return b is None or order.index(a) < order.index(b)
