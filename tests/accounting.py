"""What went in against what came out: the ledger of one accounting run, and the dead letters a run left.

Used by the reliability tests (small runs under injected faults) and by `benchmarks/reliability.py` (the
issue-sized run). A ledger is built by each scenario's check after the stack has drained.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Ledger:
    """One flow's accounting: every accepted item must come out exactly once.

    - `items_in`: items the system accepted (a 2xx answer, a row in an accepted file, a planned recipient);
    - `items_out`: distinct items that came out (a message at the provider, a stored message, a contact);
    - `lost`: ids of accepted items that never came out (goal: empty);
    - `duplicates`: extra copies that came out; `counted_duplicates`: those the system itself flagged
      (a recipient marked `possible_duplicate`, counted in the broadcast's `possible_duplicates`);
    - `uncounted_duplicates`: ids of extra copies the system did not flag (goal: empty);
    - `counter_mismatches`: "name: counter N, recount M" for every stored counter that disagrees with a
      recount of the items it counts (goal: empty).
    """

    name: str
    items_in: int = 0
    items_out: int = 0
    lost: list[str] = field(default_factory=list)
    duplicates: int = 0
    counted_duplicates: int = 0
    uncounted_duplicates: list[str] = field(default_factory=list)
    counter_mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.uncounted_duplicates or self.counter_mismatches)

    def compare(self, counter: str, stored: int, recount: int) -> None:
        """Record a mismatch when a stored counter is not its recount."""
        if stored != recount:
            self.counter_mismatches.append(f"{counter}: counter {stored}, recount {recount}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"clean": self.clean}


def dead_letter_queues(stack: Any) -> dict[str, str]:
    """Every SQS queue of the template that some other queue (or target) names as its dead-letter queue,
    by logical id: the queues whose messages the accounting must explain."""
    names = {}
    for resource in stack.template.of_type("AWS::SQS::Queue"):
        if resource.logical_id.endswith("DLQ"):
            names[resource.logical_id] = stack.template.ref(resource.logical_id)
    return names


def dead_letters(stack: Any) -> dict[str, dict[str, Any]]:
    """Every dead-letter queue that holds messages, by logical id: how many, and up to ten of them (body, JSON
    when it parses, and attributes) so a report can say why they are there. Nothing is consumed."""
    sqs = stack.client("sqs")
    found: dict[str, dict[str, Any]] = {}
    for logical_id, url in dead_letter_queues(stack).items():
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        count = sum(int(value) for value in attributes.values())
        if not count:
            continue
        sample = []
        for message in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, MessageAttributeNames=["All"]
        ).get("Messages", []):
            try:
                body: Any = json.loads(message.get("Body", ""))
            except ValueError:
                body = message.get("Body", "")
            sample.append({"body": body, "attributes": message.get("MessageAttributes", {})})
        found[logical_id] = {"count": count, "sample": sample}
    return found
