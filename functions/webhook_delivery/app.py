"""WebhookDeliveryFunction: runs one attempt per WebhookDeliveryQueue message: a signed POST to the
endpoint, recorded on the delivery, then done, retried later (backoff with jitter) or failed."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from audience import container

logger = Logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)

# A record is only started with this much of the invocation left: one attempt (15 s deadline) and its records.
# The rest are reported as batch item failures and come back after the visibility timeout.
MIN_REMAINING_MS = 25_000


class OutOfTimeError(Exception):
    """Too little of the invocation is left to attempt this record; it is retried from the queue."""


_context: Any = None

_METRICS = {
    "delivered": "WebhooksDelivered",
    "retrying": "WebhookAttemptsFailed",
    "failed": "WebhookDeliveriesFailed",
}


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    if _context is not None and _context.get_remaining_time_in_millis() < MIN_REMAINING_MS:
        raise OutOfTimeError("too little time left in this invocation; the message comes back from the queue")
    body = json.loads(record.body)
    outcome = container.webhook_deliverer().process(body)
    if outcome in _METRICS:
        metrics.add_metric(name=_METRICS[outcome], unit=MetricUnit.Count, value=1)
    logger.info(
        "webhook delivery attempt",
        extra={"delivery_id": body.get("delivery_id"), "attempt": body.get("attempt"), "outcome": outcome},
    )


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _context
    _context = context
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
