"""SenderFunction: sends the batches of recipients SendQueue (marketing) and TransactionalQueue
(background transactional sends) hold; the same code serves both, on separate queues so that an OTP never
waits behind a marketing broadcast.

Each SQS message is one batch and is reported as a partial batch failure when some of its recipients could
not be sent yet (a provider fault, or the connection's pace leaving no room before the time limit): SQS
delivers it again and the sender carries on where it stopped. Every recipient moves by conditional writes,
so a redelivery never sends twice (see audience/broadcasts/sender.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from audience import container

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
MARGIN_SECONDS = 20
_deadline = [0.0]


def record_handler(record: SQSRecord) -> None:
    message = json.loads(record.body)
    rows = container.broadcast_sender().process(message, deadline=_deadline[0])
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    for status, count in by_status.items():
        metrics.add_metric(name=f"Recipients{status.capitalize()}", unit=MetricUnit.Count, value=count)
    logger.info("batch sent", extra={"broadcast_id": message["broadcast_id"], "batch": message["batch"], **by_status})


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    remaining = context.get_remaining_time_in_millis() / 1000 if context else 600
    _deadline[0] = time.time() + max(1.0, remaining - MARGIN_SECONDS)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
