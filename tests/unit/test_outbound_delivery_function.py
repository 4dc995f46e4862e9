"""WebhookDeliveryFunction's handler stops taking records when little of the invocation is left: those are
reported as batch item failures and come back from the queue, rather than being cut off mid-attempt."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

APP = Path(__file__).resolve().parents[2] / "functions" / "webhook_delivery" / "app.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("webhook_delivery_app_under_test", APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Context:
    function_name = "audience-test-webhook-delivery"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:000000000000:function:audience-test-webhook-delivery"
    aws_request_id = "request-1"

    def __init__(self, remaining: list[int]) -> None:
        self._remaining = remaining

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining.pop(0) if len(self._remaining) > 1 else self._remaining[0]


class _Deliverer:
    def __init__(self) -> None:
        self.processed: list[str] = []

    def process(self, body: dict[str, Any]) -> str:
        self.processed.append(body["delivery_id"])
        return "delivered"


def _record(n: int) -> dict[str, Any]:
    body = {"org_id": "org_1", "endpoint_id": "we_1", "delivery_id": f"wd_{n}", "series": 1, "attempt": 1}
    return {
        "messageId": f"m{n}",
        "receiptHandle": f"r{n}",
        "body": json.dumps(body),
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:000000000000:audience-test-webhook-delivery",
        "awsRegion": "eu-west-1",
    }


def test_records_are_not_started_with_too_little_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Audience")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "audience")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    app = _load()
    deliverer = _Deliverer()
    monkeypatch.setattr(app.container, "webhook_deliverer", lambda: deliverer)
    plenty, little = app.MIN_REMAINING_MS + 60_000, app.MIN_REMAINING_MS - 1
    answer = app.lambda_handler({"Records": [_record(1), _record(2), _record(3)]}, _Context([plenty, little]))
    assert deliverer.processed == ["wd_1"]
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]
