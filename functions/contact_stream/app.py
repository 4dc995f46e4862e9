"""ContactStreamFunction: reacts to contact changes on the contacts table stream.

It purges what a deleted or merged-away contact left in its partition (activity and any other
per-contact items), and ends the follow-up timers of a contact deleted, unsubscribed or blocked (before
the purge, which removes the items naming them). Each record is processed on its own and reported as a
partial batch failure, so a failing record is retried (and finally sent to ContactStreamDLQ) without
replaying the others.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from audience import aws
from audience.contacts.stream import contact_stopped, purge_removed_contact

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_handler(record: Any) -> None:
    stopped = contact_stopped(record.raw_event)
    if stopped is not None and os.environ.get("FOLLOW_UP_STATE_MACHINE"):
        # Before the purge: the contact's timers are read from its partition to be stopped.
        from audience import container

        ended = container.follow_up_service().on_contact_stopped(*stopped)
        if ended:
            metrics.add_metric(name="FollowUpTimersStopped", unit=MetricUnit.Count, value=ended)
    purged = purge_removed_contact(aws.client("dynamodb"), os.environ["CONTACTS_TABLE"], record.raw_event)
    if purged:
        metrics.add_metric(name="ContactPartitionsPurged", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ContactItemsPurged", unit=MetricUnit.Count, value=purged)
        logger.info("purged deleted contact partition", extra={"items": purged})


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
