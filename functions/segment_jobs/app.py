"""SegmentJobsFunction: one part of a segment job (build, copy, purge, refresh), for Step Functions.

- `{"action": "plan", "job": {...}}` splits the job into parts;
- `{"action": "run", "job": {...}, "part": n, "cursor": c}` works until the part is done or its time
  runs low, and returns the cursor to resume from;
- `{"action": "complete", "job": {...}}` finishes the job once every part is done.
 See audience/segments/jobs.py and statemachines/segment_jobs.asl.yaml.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from audience import container
from audience.segments.jobs import job_parts

logger = Logger()
metrics = Metrics()
_SAFETY_MS = 60_000  # leave a minute for the page in flight and the answer


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    runner = container.job_runner()
    if event.get("action") == "plan":
        return {"job": event["job"], "parts": job_parts(event["job"])}
    if event.get("action") == "complete":
        logger.info("segment job complete", extra={"job": event["job"]})
        return runner.complete(event["job"])
    budget = max(5.0, (context.get_remaining_time_in_millis() - _SAFETY_MS) / 1000)
    result = runner.run(event["job"], int(event["part"]), event.get("cursor"), budget=budget)
    tally = result["tally"]
    for name in ("evaluated", "added", "removed"):
        metrics.add_metric(name=f"SegmentJob{name.capitalize()}", unit=MetricUnit.Count, value=tally[name])
    logger.info("segment job part", extra={"job": event["job"], "part": event["part"], "tally": tally})
    return result
