"""InboundFunction: applies the webhook events InboundQueue holds (and SES/SMS notifications that the
stack's SNS topics deliver to it) to contacts, conversation logs, subscriptions and message statuses.

Each record is processed on its own and reported as a partial batch failure, so a failing record is
retried (and after InboundQueue's maxReceiveCount parked in InboundDLQ) without replaying the others.
Every effect is idempotent or keyed by the provider's own ids, so a retried record never doubles a
message, a counter or a consent record.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from audience import container

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    outcome = container.inbound_processor().process(record.body)
    metrics.add_metric(name="InboundEvents", unit=MetricUnit.Count, value=outcome.events)
    if outcome.duplicates:
        metrics.add_metric(name="InboundDuplicates", unit=MetricUnit.Count, value=outcome.duplicates)
    if outcome.unrouted:
        metrics.add_metric(name="InboundUnrouted", unit=MetricUnit.Count, value=outcome.unrouted)
    logger.info(
        "inbound record applied",
        extra={
            "message_id": record.message_id,
            "events": outcome.events,
            "applied": outcome.applied,
            "duplicates": outcome.duplicates,
            "unrouted": outcome.unrouted,
            "counts": outcome.counts,
        },
    )


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
