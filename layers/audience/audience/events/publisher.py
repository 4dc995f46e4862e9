"""Puts events on the stack's bus in batches of ten. Entries EventBridge refuses for a passing reason
(ThrottlingException, InternalFailure: botocore does not retry those, as the call itself succeeded) are put
again, only they, with exponential backoff and full jitter, for at most RETRY_FOR seconds and never past the
caller's deadline; when that runs out (or an entry is refused for good) it raises, so the caller's record
is retried (delivery is at least once; receivers dedupe on the envelope's id)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable
from typing import Any

from audience import aws
from audience.events.envelope import Event

BATCH = 10  # PutEvents takes at most ten entries
RETRY_FOR = 10.0  # seconds one publish() spends putting refused entries again, at most
BACKOFF_BASE = 0.1  # seconds; the first pause is up to this, doubling each attempt
BACKOFF_CAP = 2.0  # seconds; no single pause is longer
# Per-entry error codes worth another try; any other (MalformedDetail, InvalidArgument, AccessDenied...)
# would be refused again, so it raises at once.
TRANSIENT = frozenset({"ThrottlingException", "InternalFailure", "InternalException", "ServiceUnavailable"})

# Indirections so tests can run the backoff without waiting.
_sleep = time.sleep
_clock = time.monotonic


class PublishError(RuntimeError):
    """EventBridge refused one or more entries (and kept refusing them for as long as retrying was allowed)."""


def deadline_of(context: Any, margin: float = 5.0) -> float | None:
    """The monotonic time by which a Lambda invocation must stop publishing: its remaining time less
    `margin` seconds (left for reporting the batch); None when `context` gives no remaining time."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    try:
        return _clock() + float(remaining()) / 1000 - margin
    except (TypeError, ValueError):
        return None


class EventPublisher:
    def __init__(self, bus_name: str) -> None:
        self._bus_name = bus_name

    @property
    def enabled(self) -> bool:
        return bool(self._bus_name)

    def publish(self, events: Iterable[Event], deadline: float | None = None) -> int:
        """Put `events` on the bus; the number put (0 when no bus is configured). Entries refused for a
        passing reason are put again with backoff until RETRY_FOR seconds have passed or `deadline` (a
        time.monotonic() value) would be overrun; then PublishError. The ones accepted before are
        delivered again on the caller's retry, with their ids."""
        pending = list(events)
        if not self._bus_name or not pending:
            return 0
        stop = _clock() + RETRY_FOR
        if deadline is not None:
            stop = min(stop, deadline)
        client = aws.client("events")
        for start in range(0, len(pending), BATCH):
            self._put(client, pending[start : start + BATCH], stop)
        return len(pending)

    def _put(self, client: Any, chunk: list[Event], stop: float) -> None:
        entries = [
            {
                "EventBusName": self._bus_name,
                "Source": event.source,
                "DetailType": event.detail_type,
                "Detail": json.dumps(event.detail, separators=(",", ":")),
            }
            for event in chunk
        ]
        attempt = 0
        while True:
            response = client.put_events(Entries=entries)
            if not response.get("FailedEntryCount"):
                return
            # Results come one per entry, in the order of the request's entries.
            results = zip(entries, response["Entries"], strict=True)
            refused = [(entry, result) for entry, result in results if result.get("ErrorCode")]
            codes = {result.get("ErrorCode") for _, result in refused}
            pause = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))  # noqa: S311 (jitter, not a secret)
            if not refused or not codes <= TRANSIENT or _clock() + pause > stop:
                first = refused[0][1] if refused else {}
                raise PublishError(
                    f"EventBridge refused {len(refused)} of {len(entries)} events after {attempt + 1} attempts: "
                    f"{first.get('ErrorCode')} {first.get('ErrorMessage')}"
                )
            _sleep(pause)
            attempt += 1
            entries = [entry for entry, _ in refused]
