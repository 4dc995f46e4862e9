"""SegmentFunction: keeps dynamic segment membership current as contacts and their events change.

Reads the contacts table stream. Each changed contact is evaluated once per batch against its org's
dynamic segments, reading its current state (so a batch holding several of its changes costs one
evaluation), and only membership changes are written. On a failure the batch reports the first record
of the failed contact, so Lambda retries from there (evaluation is idempotent) and finally sends the
record to the DLQ.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from audience import clock, container
from audience.segments.evaluation import RuleBook, StaleRulesError, Tally
from audience.segments.stream import evaluation_targets, facts_only_targets

logger = Logger()
metrics = Metrics()
_ATTEMPTS = 3


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = event.get("Records") or []
    targets = evaluation_targets(records)
    facts_only = facts_only_targets(records)
    service = container.segment_service()
    evaluator = container.segment_evaluator()
    now = clock.now()
    books: dict[str, RuleBook] = {}
    total = Tally()
    for (org_id, contact_id), sequence in targets.items():
        try:
            for _ in range(_ATTEMPTS):
                if org_id not in books:
                    books[org_id] = RuleBook.of(service.ensure_predefined(org_id), now)
                if (org_id, contact_id) in facts_only and not books[org_id].reads_quality():
                    total.skipped += 1  # only its reachability / engagement facts changed: no segment reads them
                    break
                try:
                    total.merge(evaluator.evaluate(org_id, contact_id, books[org_id]))
                    break
                except StaleRulesError:
                    books.pop(org_id)  # a segment changed: read the rules again
            else:
                raise StaleRulesError(f"segments of org {org_id} kept changing")
        except Exception:
            logger.exception("segment evaluation failed", extra={"org_id": org_id, "contact_id": contact_id})
            metrics.add_metric(name="SegmentEvaluationFailures", unit=MetricUnit.Count, value=1)
            _report(total)
            return {"batchItemFailures": [{"itemIdentifier": sequence}]}
    _report(total)
    return {"batchItemFailures": []}


def _report(tally: Tally) -> None:
    metrics.add_metric(name="ContactsEvaluated", unit=MetricUnit.Count, value=tally.evaluated)
    metrics.add_metric(name="SegmentMembersAdded", unit=MetricUnit.Count, value=tally.added)
    metrics.add_metric(name="SegmentMembersRemoved", unit=MetricUnit.Count, value=tally.removed)
    if tally.skipped:
        metrics.add_metric(name="ContactFactsNotEvaluated", unit=MetricUnit.Count, value=tally.skipped)
    if tally.stale:
        metrics.add_metric(name="SegmentDecisionsStale", unit=MetricUnit.Count, value=tally.stale)
