"""ContactStreamFunction: reacts to contact changes on the contacts table stream.

It purges what a deleted or merged-away contact left in its partition (activity and any other
per-contact items, with the provider-id items of its messages), strips the address, values and message ids
from a deleted (not merged) contact's broadcast recipient rows (audience/broadcasts/erasure.py), and ends
the follow-up timers of a contact deleted, unsubscribed or blocked (before the purge, which removes the
items naming them). Each record is processed on its own and reported as a partial batch failure, so a
failing record is retried (and finally sent to ContactStreamDLQ) without replaying the others.

It also publishes the domain events the records state (contact.*, segment.member_*, import.finished; see
docs/events.md) on EVENT_BUS_NAME, in batches of ten after the records are processed. A record's events are
worked out within its own handling (an odd record fails alone), and the events of every record whose handling
succeeded are published, also those after a failed record: a record that keeps failing must not take the
events of the others to the DLQ with it. The publisher puts refused entries again with backoff; when
EventBridge still refuses some, the batch is reported failed from the first record with events (or the first
failed record, if earlier), so those records come again (their events keep their ids; receivers dedupe).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from audience import aws
from audience.broadcasts.erasure import on_contact_removed
from audience.contacts.stream import contact_stopped, purge_removed_contact
from audience.events.contact_stream import events_of
from audience.events.envelope import Event
from audience.events.publisher import EventPublisher, deadline_of

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
# The events of the records handled in this invocation, by sequence number (reset by lambda_handler).
_found: dict[str, list[Event]] = {}


def publisher() -> EventPublisher:
    # Not cached: it holds only the bus name (the events client is shared through audience.aws).
    return EventPublisher(os.environ.get("EVENT_BUS_NAME", "").strip())


def record_handler(record: Any) -> None:
    stopped = contact_stopped(record.raw_event)
    if stopped is not None and os.environ.get("FOLLOW_UP_STATE_MACHINE"):
        # Before the purge: the contact's timers are read from its partition to be stopped.
        from audience import container

        ended = container.follow_up_service().on_contact_stopped(*stopped)
        if ended:
            metrics.add_metric(name="FollowUpTimersStopped", unit=MetricUnit.Count, value=ended)
    # Before the purge too: a record retried after a failure here finds the partition still to purge.
    erased = on_contact_removed(record.raw_event)
    if erased:
        metrics.add_metric(name="RecipientRowsErased", unit=MetricUnit.Count, value=erased)
    purged = purge_removed_contact(aws.client("dynamodb"), os.environ["CONTACTS_TABLE"], record.raw_event)
    if purged:
        metrics.add_metric(name="ContactPartitionsPurged", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ContactItemsPurged", unit=MetricUnit.Count, value=purged)
        logger.info("purged deleted contact partition", extra={"items": purged})
    # Within the record's own handling: a record whose events cannot be worked out fails alone.
    _found[record.raw_event["dynamodb"]["SequenceNumber"]] = events_of(record.raw_event)


def publish_events(
    records: list[dict[str, Any]], failures: list[dict[str, str]], context: Any = None
) -> list[dict[str, str]]:
    """Publish the events of every record handled successfully; the failures to report, in record order
    (Lambda resumes from the lowest)."""
    failed = {f["itemIdentifier"] for f in failures}
    first_with_events: str | None = None
    events: list[Event] = []
    for record in records:
        sequence = record["dynamodb"]["SequenceNumber"]
        if sequence in failed:
            continue  # it comes again, and its events with it
        found = _found.get(sequence) or []
        if found and first_with_events is None:
            first_with_events = sequence
        events.extend(found)
    if events and publisher().enabled:
        try:
            publisher().publish(events, deadline=deadline_of(context))
        except Exception:
            logger.exception("events not published; the records are retried", extra={"events": len(events)})
            metrics.add_metric(name="EventsNotPublished", unit=MetricUnit.Count, value=len(events))
            if first_with_events is not None:
                failed.add(first_with_events)
        else:
            metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=len(events))
    order = [record["dynamodb"]["SequenceNumber"] for record in records]
    return [{"itemIdentifier": sequence} for sequence in order if sequence in failed]


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _found.clear()
    try:
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
        response["batchItemFailures"] = publish_events(
            event.get("Records") or [], response["batchItemFailures"], context
        )
    finally:
        _found.clear()
    return response
