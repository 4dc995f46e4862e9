"""FollowUpFunction: the Step task of FollowUpStateMachine (see statemachines/followups.asl.yaml).

The event is the execution's state: `{"kind": "idle", "org_id", "contact_id", "channel", "gen", ...}` for
the idle follow-ups of a conversation, `{"kind": "requested", "org_id", "contact_id", "follow_up_id", ...}`
for one requested for a time. The answer is `{"done": bool, "wait_until": ISO time}`. A step whose send is
held by another attempt, or that a provider deferred, raises StepNotReady for the state machine to retry.

Domain code lives in audience.followups.service; this module maps events to it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from audience import container

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result = container.follow_up_service().step(event)
    logger.info(
        "follow-up step",
        extra={"kind": event.get("kind"), "contact_id": event.get("contact_id"), **result},
    )
    if result["done"]:
        metrics.add_metric(name="FollowUpTimersEnded", unit=MetricUnit.Count, value=1)
    return result
