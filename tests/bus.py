"""Watching the stack's event bus in tests: a rule on the bus sends every audience.* event to a test queue
(moto delivers matching PutEvents entries to SQS targets), read back as the envelopes receivers get."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parents[1] / "layers" / "audience" / "audience" / "events" / "schemas"
_taps = itertools.count(1)


class Tap:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs, self._queue_url = sqs, queue_url
        self.seen: list[dict[str, Any]] = []

    def received(self, org_id: str | None = None) -> list[dict[str, Any]]:
        """Every event received so far (of one org when given), as EventBridge delivered them."""
        while batch := self._sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10).get("Messages", []):
            self.seen += [json.loads(m["Body"]) for m in batch]
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
        return [e for e in self.seen if org_id is None or e["detail"].get("org_id") == org_id]

    def details(self, org_id: str, detail_type: str) -> list[dict[str, Any]]:
        return [e["detail"] for e in self.received(org_id) if e["detail-type"] == detail_type]


@contextmanager
def tap(stack: Any, prefixes: tuple[str, ...] = ("audience.",)) -> Iterator[Tap]:
    """A queue receiving the bus's events whose source starts with one of `prefixes`."""
    events, sqs = stack.client("events"), stack.client("sqs")
    name = f"events-tap-{next(_taps)}-{uuid.uuid4().hex[:8]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = stack.outputs["EventBusName"]
    pattern = {"source": [{"prefix": p} for p in prefixes]}
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    try:
        yield Tap(sqs, queue_url)
    finally:
        events.remove_targets(Rule=name, EventBusName=bus, Ids=["queue"])
        events.delete_rule(Name=name, EventBusName=bus)


def validate(detail: dict[str, Any]) -> None:
    """Raise unless `detail` is valid under its type's committed schema."""
    import jsonschema

    schema = json.loads((SCHEMAS / f"{detail['type']}.v{detail['version']}.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(detail)
