"""SandboxFunction: posts the statuses of messages that sandbox connections "sent" (SandboxQueue) to the
stack's own webhook URL, signed like a custom channel, so they travel the real path: WebhookFunction,
InboundQueue, InboundFunction, recipients and counters. See audience/providers/sandbox.py."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from audience import container

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    job = json.loads(record.body)
    posted = container.sandbox_poster().post(job)
    logger.info("sandbox statuses posted", extra={"message_id": job.get("message_id"), "posted": posted})


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
