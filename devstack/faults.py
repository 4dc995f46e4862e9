"""Fault injection on the local stack: handlers that raise before or after their work, SQS messages
delivered twice or late, for checking that every flow still accounts for every item.

`LocalStack.inject_faults(FaultPlan(...))` turns it on for every way a function runs locally (SQS and stream
pollers, Step Functions `lambda:invoke` tasks through moto, the HTTP API, `stack.invoke`) and returns the
`Faults` ledger of what was injected; `inject_faults(None)` turns it off. Decisions come from one
`random.Random(seed)`, so a run that makes the same calls in the same order gets the same faults.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

RAISE_BEFORE = "raise_before"
RAISE_AFTER = "raise_after"
SQS_DUPLICATE = "sqs_duplicate"
SQS_LATE = "sqs_late"
KINDS = (RAISE_BEFORE, RAISE_AFTER, SQS_DUPLICATE, SQS_LATE)


class InjectedFault(Exception):
    """The failure a fault plan made a handler raise (before its work ran, or after it)."""


@dataclass(frozen=True)
class FaultPlan:
    """Which faults to inject, and how often (each rate is a probability per decision)."""

    seed: int = 0
    raise_before: float = 0.0  # per invocation: raise before the handler runs
    raise_after: float = 0.0  # per invocation: run the handler, then raise (its side effects happened)
    sqs_duplicate: float = 0.0  # per SQS message a function succeeded on: delivered again later (same MessageId)
    sqs_late: float = 0.0  # per SQS message received: put back unprocessed, delivered after others
    functions: frozenset[str] | None = None  # logical ids targeted; None = every function
    max_per_item: int = 2  # injected faults per SQS message / stream record / request / task input at most,
    # so retries stay within maxReceiveCount and MaximumRetryAttempts
    late_seconds: int = 2  # how long a late message stays invisible before it comes back


class Faults:
    """The ledger of what a plan injected, by kind and function; thread-safe (pollers, moto's Step Functions
    thread and HTTP worker threads all consult it)."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._random = random.Random(plan.seed)  # noqa: S311 - reproducible faults, not secrets
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._per_item: Counter[str] = Counter()
        self.active = True

    def decide(self, kind: str, function_id: str, items: Iterable[str]) -> bool:
        """Whether to inject a fault of `kind` into `function_id`'s work on `items` (the keys the per-item
        cap counts against: every one of them must still be under it); counted when it says yes."""
        rate = float(getattr(self.plan, kind))
        if not self.active or rate <= 0:
            return False
        if self.plan.functions is not None and function_id not in self.plan.functions:
            return False
        keys = list(dict.fromkeys(items))
        with self._lock:
            # The draw comes first, so that the sequence of draws does not depend on the caps.
            if self._random.random() >= rate:
                return False
            if any(self._per_item[key] >= self.plan.max_per_item for key in keys):
                return False
            for key in keys:
                self._per_item[key] += 1
            self._counts[kind, function_id] += 1
            return True

    def summary(self) -> dict[str, dict[str, int]]:
        """{kind: {function logical id: count}}, every kind present (an empty dict when none fired)."""
        with self._lock:
            found: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
            for (kind, function_id), count in sorted(self._counts.items()):
                found[kind][function_id] = count
            return found

    def by_kind(self) -> dict[str, int]:
        """{kind: count} over every function."""
        return {kind: sum(counts.values()) for kind, counts in self.summary().items()}

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    # -- invocations -----------------------------------------------------------

    def before(self, function_id: str, event: Any) -> None:
        """Raise InjectedFault when the plan fails this invocation before the handler runs."""
        if self.decide(RAISE_BEFORE, function_id, item_keys(function_id, event)):
            raise InjectedFault(f"{RAISE_BEFORE}: {function_id} failed before running")

    def after(self, function_id: str, event: Any) -> None:
        """Raise InjectedFault when the plan fails this invocation after the handler ran."""
        if self.decide(RAISE_AFTER, function_id, item_keys(function_id, event)):
            raise InjectedFault(f"{RAISE_AFTER}: {function_id} failed after running")


def _digest(value: Any) -> str:
    data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def item_keys(function_id: str, event: Any) -> list[str]:
    """What the per-item cap counts an invocation against: each SQS message (MessageId), each stream record
    (stream and sequence number, so a bisected batch's halves are still capped per record), an HTTP request
    (method, path and body), else the task input (a Step Functions task's payload names its execution's
    work: a retried task gets the same input)."""
    if isinstance(event, dict):
        records = event.get("Records")
        if isinstance(records, list) and records and isinstance(records[0], dict):
            source = records[0].get("eventSource")
            if source == "aws:sqs":
                return [f"sqs:{record.get('messageId')}" for record in records]
            if source == "aws:dynamodb":
                return [
                    f"stream:{record.get('eventSourceARN')}:{record.get('dynamodb', {}).get('SequenceNumber')}"
                    for record in records
                ]
        context = event.get("requestContext")
        if isinstance(context, dict) and ("http" in context or "httpMethod" in context):
            method = context.get("http", {}).get("method") or context.get("httpMethod")
            path = event.get("rawPath") or event.get("path")
            query = event.get("rawQueryString") or ""
            return [f"http:{method}:{path}?{query}:{_digest(str(event.get('body') or ''))}"]
    return [f"invoke:{function_id}:{_digest(event)}"]


__all__ = ["KINDS", "FaultPlan", "Faults", "InjectedFault", "item_keys"]
