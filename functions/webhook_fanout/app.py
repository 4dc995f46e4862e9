"""WebhookFanOutFunction: turns each domain event that EventBridge routes to WebhookEventsQueue into one
delivery per subscribed, enabled endpoint of its org (idempotent per endpoint and event id), and queues
their first attempts on WebhookDeliveryQueue."""

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


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    event = json.loads(record.body)
    created = container.webhook_dispatcher().fan_out(event)
    metrics.add_metric(name="WebhookDeliveriesCreated", unit=MetricUnit.Count, value=created)
    detail = event.get("detail") or {}
    logger.info(
        "event fanned out",
        extra={
            "event_id": detail.get("id"),
            "type": detail.get("type"),
            "org_id": detail.get("org_id"),
            "deliveries": created,
        },
    )


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
