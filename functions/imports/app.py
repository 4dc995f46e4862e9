"""ImportFunction: the tasks of ImportStateMachine (see statemachines/imports.asl.yaml).

- `{"action": "analyse", "org_id", "import_id"}` reads the upload's layout, header and columns;
- `{"action": "split", ..., "run_id"}` validates the whole file and writes its chunks;
- `{"action": "chunk", ..., "run_id", "chunk": n}` classifies (dry run) or writes one chunk;
- `{"action": "finish", ..., "run_id", "error"?}` totals the run and sets the import's final status.

A file that cannot be read ends the run with a clear error instead of failing the task, so nothing is
retried that cannot succeed. Domain code lives in audience.imports; this module maps events to it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from audience.imports.files import FileProblem
from audience.imports.wiring import import_worker

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    worker = import_worker()
    action = event.get("action")
    org_id, import_id = event["org_id"], event["import_id"]
    if action == "analyse":
        return worker.analyse(org_id, import_id)
    run_id = event["run_id"]
    if action == "split":
        try:
            result = worker.split(org_id, import_id, run_id)
        except FileProblem as problem:
            logger.info("import file rejected", extra={"import_id": import_id, "code": problem.code})
            worker.finish(org_id, import_id, run_id, error=problem.message)
            return {"chunks": []}
        items = [{"org_id": org_id, "import_id": import_id, "run_id": run_id, **c} for c in result["chunks"]]
        return {"chunks": items}
    if action == "chunk":
        result = worker.chunk(org_id, import_id, run_id, int(event["chunk"]))
        for name, value in (result.get("requests") or {}).items():
            metrics.add_metric(name=f"Import{_camel(name)}", unit=MetricUnit.Count, value=value)
        return {"done": True}
    if action == "finish":
        error = event.get("error")
        message = _error_message(error) if error else None
        result = worker.finish(org_id, import_id, run_id, error=message)
        logger.info("import run finished", extra={"import_id": import_id, "run_id": run_id, **result})
        return {"status": result["status"]}
    raise ValueError(f"unknown action {action!r}")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _error_message(error: dict[str, Any]) -> str:
    """What to tell the user when a task failed for good (Step Functions' Catch gives Error and Cause)."""
    import json

    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
        message = parsed.get("errorMessage") or parsed.get("message")
    except (ValueError, AttributeError):
        message = None
    text = message or error.get("Error") or "the import stopped on an internal error"
    return f"the import stopped: {text}"[:1000]
