"""ExportFunction: runs the exports ExportQueue names (a new export, or the continuation of a long one).

Each record is processed on its own and reported as a partial batch failure, so a failing export is
retried (a start message restarts it from scratch) without replaying the others. On its last attempt
(ExportQueue's maxReceiveCount) a failing export is marked failed before the message goes to ExportDLQ.
Kept light at cold start: no web framework, no pydantic, and not audience.container (which imports every
service): the worker is wired in audience.exports.wiring; phone parsing is never imported on this path.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from audience.exports.wiring import export_worker

MAX_RECEIVES = 3  # ExportQueue's RedrivePolicy maxReceiveCount in template.yaml

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord, lambda_context: Any) -> None:
    message = json.loads(record.body)
    worker = export_worker()
    try:
        outcome = worker.process(message, lambda_context.get_remaining_time_in_millis)
    except Exception as error:
        if int(record.attributes.approximate_receive_count or 1) >= MAX_RECEIVES:
            logger.exception("export failed on its last attempt", extra={"export_message": message})
            worker.give_up(message, f"the export failed after {MAX_RECEIVES} attempts ({type(error).__name__})")
        raise
    metrics.add_metric(name=f"Exports{outcome.capitalize()}", unit=MetricUnit.Count, value=1)
    logger.info("export message processed", extra={"export_message": message, "outcome": outcome})


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
