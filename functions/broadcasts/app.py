"""BroadcastFunction: the tasks of BroadcastStateMachine (see statemachines/broadcast.asl.yaml).

- `{"action": "start", "org_id", "broadcast_id", "run"}` moves the broadcast SCHEDULED → SENDING when the
  run is still the current one (`{"go": false}` otherwise: cancelled or scheduled anew);
- `{"action": "plan", ...}` plans pages of the audience until done or near the time limit;
- `{"action": "fail", ..., "error"}` records a run that failed after its retries.

Domain code lives in audience.broadcasts.planner; this module maps events to it.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics

from audience import container

logger = Logger()
metrics = Metrics()

# Stop planning this long before the function's time is up, so the last page always completes.
MARGIN_SECONDS = 30


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    planner = container.broadcast_planner()
    action = event.get("action")
    org_id, broadcast_id, run = event["org_id"], event["broadcast_id"], event["run"]
    if action == "start":
        return planner.start(org_id, broadcast_id, run)
    if action == "plan":
        remaining = context.get_remaining_time_in_millis() / 1000 if context else 600
        result = planner.plan(org_id, broadcast_id, run, deadline=time.time() + max(1.0, remaining - MARGIN_SECONDS))
        logger.info("planned", extra={"broadcast_id": broadcast_id, "run": run, **result})
        return result
    if action == "fail":
        return planner.fail(org_id, broadcast_id, run, event.get("error"))
    raise ValueError(f"unknown action {action!r}")
