"""Fan-out of domain events to endpoints, and the delivery of each one: signed POSTs retried with backoff.

Retry schedule (multiples of the base, 10 s in production; `WEBHOOK_RETRY_BASE_SECONDS`): after attempt 1
fails wait 10 s, then 30 s, 2 min, 10 min, 30 min, then hourly 24 times, each wait stretched by up to 20 %
of jitter: 30 attempts over about 24 h 50 min. SQS holds a message at most 900 s, so a longer wait travels
as a `not_before` time that the consumer honours by sending the message on again, delayed.

An endpoint is disabled when it answers 410 Gone, or when a failure comes 24 h (8,640 bases) after the
first failure of its streak (any delivery's, with no success since). Each delivery is still retried for at
least 24 h from the start of its own series (its first attempt, or its redelivery): after a streak disabled
the endpoint, a younger delivery keeps its attempts and stops as failed ("endpoint disabled") on its first
failure 24 h after it started. Disabled for 410 or through the API, pending deliveries stop at their next
attempt. An event that occurs while the endpoint is disabled gets a delivery written failed ("endpoint
disabled"), never attempted. Every failed delivery can be redelivered once the endpoint is enabled again.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from audience import clock, ids
from audience.errors import NotFoundError, ValidationError
from audience.events.catalogue import TYPES
from audience.outbound import signing
from audience.outbound.http import PostResult
from audience.outbound.models import Attempt, Delivery, Endpoint
from audience.outbound.repository import OutboundRepository
from audience.outbound.secrets import EndpointSecrets

# Waits after each failed attempt, in multiples of the base: 10 s, 30 s, 2 min, 10 min, 30 min, 24 x 1 h.
RETRY_STEPS = (1, 3, 12, 60, 180) + (360,) * 24
DISABLE_AFTER_STEPS = 8640  # 24 h of failures with no success
STREAK_REASON = "every delivery failed since"  # how the reason of an endpoint disabled for a streak starts
JITTER = 0.2
LEASE_MS = 60_000  # longer than one attempt (15 s deadline), shorter than the queue's visibility timeout
MAX_SQS_DELAY = 900

Enqueue = Callable[[dict[str, Any], int], None]
Post = Callable[[str, bytes, dict[str, str]], PostResult]


def retry_delay(failed_attempt: int, base: float, rand: Callable[[], float] = random.random) -> float | None:
    """Seconds to wait after attempt `failed_attempt` (1-based) failed; None when it was the last."""
    if failed_attempt > len(RETRY_STEPS):
        return None
    return RETRY_STEPS[failed_attempt - 1] * base * (1 + JITTER * rand())


def message(delivery: Delivery, not_before: str | None) -> dict[str, Any]:
    """The delivery queue's message for the delivery's next attempt."""
    return {
        "org_id": delivery.org_id,
        "endpoint_id": delivery.endpoint_id,
        "delivery_id": delivery.id,
        "series": delivery.series,
        "attempt": delivery.next_attempt,
        "not_before": not_before,
    }


class Dispatcher:
    """Creates deliveries and sends the queue messages that carry their attempts."""

    def __init__(self, repository: OutboundRepository, enqueue: Enqueue, now: Callable[[], datetime] = clock.now):
        self._repo = repository
        self._enqueue = enqueue
        self._now = now

    def fan_out(self, event: dict[str, Any]) -> int:
        """One delivery per enabled endpoint of the event's org subscribed to its type; returns how many were
        created (0 for an event seen before). The EventBridge event's detail is the envelope."""
        detail = event.get("detail")
        if not isinstance(detail, dict):
            raise ValidationError.for_field("detail", None, "must be the event envelope")
        for name in ("id", "type", "org_id", "occurred_at"):
            if not isinstance(detail.get(name), str) or not detail[name]:
                raise ValidationError.for_field(f"detail.{name}", detail.get(name), "is required")
        created = 0
        for endpoint in self._repo.endpoints(detail["org_id"]):
            if endpoint.subscribes(detail["type"]):
                created += self.create(endpoint, detail)[1]
        return created

    def create(self, endpoint: Endpoint, envelope: dict[str, Any]) -> tuple[str, bool]:
        """Create the delivery of `envelope` to `endpoint` and queue its first attempt: (its id, True); or the
        id of the delivery the endpoint already has for the event and False (its first message is sent again
        if it may never have been). To a disabled endpoint the delivery is written failed ("endpoint disabled")
        and nothing is queued: it can be redelivered once the endpoint is enabled again."""
        at = clock.iso(self._now())
        delivery = Delivery(
            id=ids.new_id("wd"),
            org_id=endpoint.org_id,
            endpoint_id=endpoint.id,
            event_id=envelope["id"],
            event_type=envelope["type"],
            body=json.dumps(envelope, separators=(",", ":"), ensure_ascii=False),
            state="pending",
            created_at=at,
            series_started_at=at,
            next_attempt_at=at,
        )
        if not endpoint.enabled:
            delivery.state, delivery.next_attempt_at, delivery.failed_at = "failed", None, at
            delivery.failure_reason = f"endpoint disabled: {endpoint.disabled_reason or 'disabled'}"
        existing = self._repo.create_delivery(delivery)
        if existing is None:
            self.ensure_enqueued(delivery)
            return delivery.id, True
        self.ensure_enqueued(self._repo.delivery(delivery.org_id, delivery.endpoint_id, existing))
        return existing, False

    def ensure_enqueued(self, delivery: Delivery) -> None:
        """Send the message of the delivery's next attempt unless one was already sent (a duplicate message is
        harmless: attempts are claimed)."""
        if delivery.state != "pending" or delivery.enqueued_through >= delivery.next_attempt:
            return
        self.send(message(delivery, delivery.next_attempt_at))
        self._repo.mark_enqueued(delivery, delivery.series, delivery.next_attempt)

    def send(self, body: dict[str, Any]) -> None:
        """Queue `body`, delayed until its `not_before` (at most 900 s; the consumer waits out the rest)."""
        delay = 0
        if body.get("not_before"):
            remaining = (datetime.fromisoformat(body["not_before"]) - self._now()).total_seconds()
            delay = min(MAX_SQS_DELAY, math.ceil(remaining)) if remaining >= 1 else 0
        self._enqueue(body, delay)


class Deliverer:
    """Runs one attempt of a delivery per queue message."""

    def __init__(
        self,
        repository: OutboundRepository,
        secrets: EndpointSecrets,
        dispatcher: Dispatcher,
        post: Post,
        *,
        retry_base: float,
        now: Callable[[], datetime] = clock.now,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._repo = repository
        self._secrets = secrets
        self._dispatcher = dispatcher
        self._post = post
        self._base = retry_base
        self._now = now
        self._sleep = sleep
        self._rand = rand

    def process(self, body: dict[str, Any]) -> str:
        """Attempt the delivery `body` names; returns what happened (delivered, retrying, failed, delayed,
        busy, stale, gone)."""
        series, number = int(body["series"]), int(body["attempt"])
        if body.get("not_before"):
            remaining = (datetime.fromisoformat(body["not_before"]) - self._now()).total_seconds()
            if remaining >= 1:
                self._dispatcher.send(body)
                return "delayed"
            if remaining > 0:
                self._sleep(remaining)
        try:
            delivery = self._repo.delivery(body["org_id"], body["endpoint_id"], body["delivery_id"])
        except NotFoundError:
            return "gone"
        owner = ids.random_token(16)
        now_ms = int(self._now().timestamp() * 1000)
        if not self._repo.claim(delivery, series, number, owner, now_ms, LEASE_MS):
            return self._not_claimed(body, series, number, now_ms)
        try:
            endpoint = self._repo.endpoint(delivery.org_id, delivery.endpoint_id)
        except NotFoundError:
            self._repo.fail(delivery, series, "endpoint deleted", clock.iso(self._now()))
            return "failed"
        if not endpoint.enabled and not self._still_owed(endpoint, delivery):
            reason = f"endpoint disabled: {endpoint.disabled_reason or 'disabled'}"
            self._repo.fail(delivery, series, reason, clock.iso(self._now()))
            return "failed"
        return self._attempt(delivery, endpoint, series, number, owner)

    def _still_owed(self, endpoint: Endpoint, delivery: Delivery) -> bool:
        """Whether a delivery to an endpoint disabled for persistent failure still gets attempts: each delivery
        is retried for 24 h from the start of its own series (the first attempt, or the redelivery), even when
        the endpoint's failure streak, which began earlier, has disabled it meanwhile. An endpoint disabled for
        any other reason (410 Gone, through the API) gets no further attempts."""
        if not (endpoint.disabled_reason or "").startswith(STREAK_REASON):
            return False
        attempts = [a for a in delivery.attempts if a.series == delivery.series]
        if not attempts:
            return self._series_age(delivery, self._now()) < DISABLE_AFTER_STEPS * self._base
        # Owed until one of its attempts came 24 h or more after its series started.
        last = datetime.fromisoformat(attempts[-1].at).astimezone(UTC)
        return self._series_age(delivery, last) < DISABLE_AFTER_STEPS * self._base

    @staticmethod
    def _series_age(delivery: Delivery, now: datetime) -> float:
        started = delivery.series_started_at or delivery.created_at
        return (now - datetime.fromisoformat(started).astimezone(UTC)).total_seconds()

    def _not_claimed(self, body: dict[str, Any], series: int, number: int, now_ms: int) -> str:
        current = self._repo.delivery(body["org_id"], body["endpoint_id"], body["delivery_id"])
        if current.state != "pending" or current.series != series:
            return "stale"
        if current.next_attempt == number and current.lease_until and current.lease_until >= now_ms:
            # Another worker holds this attempt; come back when its lease ends, in case it never finishes.
            later = self._now() + timedelta(milliseconds=current.lease_until - now_ms + 1000)
            self._dispatcher.send({**body, "not_before": clock.iso(later)})
            return "busy"
        if current.next_attempt > number:
            self._dispatcher.ensure_enqueued(current)
        return "stale"

    def _attempt(self, delivery: Delivery, endpoint: Endpoint, series: int, number: int, owner: str) -> str:
        secret = self._secrets.get(endpoint.id, endpoint.secret_version)
        raw = delivery.body.encode()
        started = self._now()
        previous = None
        if endpoint.previous_secret_until and started < datetime.fromisoformat(endpoint.previous_secret_until):
            previous = self._secrets.previous(endpoint.id, endpoint.secret_version)
        headers = {
            signing.SIGNATURE_HEADER: signing.sign(secret, raw, int(started.timestamp()), previous=previous),
            "Audience-Event-Id": delivery.event_id,
            "Audience-Event-Type": delivery.event_type,
            "Audience-Delivery-Id": delivery.id,
            "Audience-Attempt": str(number),
        }
        result = self._post(endpoint.url, raw, headers)
        at = clock.iso(started)
        attempt = Attempt(series, number, at, result.duration_ms, result.status_code, result.error)
        if result.delivered:
            outcome: dict[str, Any] = {"state": "delivered", "delivered_at": clock.iso(self._now())}
            outcome |= {"next_attempt": number + 1, "next_attempt_at": None}
            if not self._repo.record_attempt(delivery, owner, attempt, outcome):
                return "stale"
            self._repo.clear_failing(endpoint.org_id, endpoint.id)
            return "delivered"
        failed_now = self._now()
        reason = self._disable_reason(endpoint, delivery, result, failed_now)
        delay = retry_delay(number, self._base, self._rand)
        if reason is None and delay is None:
            reason = f"gave up after {number} attempts"
        if reason is not None:
            outcome = {"state": "failed", "failed_at": clock.iso(failed_now), "failure_reason": reason}
            outcome |= {"next_attempt": number + 1, "next_attempt_at": None}
            return "failed" if self._repo.record_attempt(delivery, owner, attempt, outcome) else "stale"
        assert delay is not None
        next_at = clock.iso(failed_now + timedelta(seconds=delay))
        outcome = {"next_attempt": number + 1, "next_attempt_at": next_at}
        if not self._repo.record_attempt(delivery, owner, attempt, outcome):
            return "stale"
        delivery.next_attempt, delivery.next_attempt_at = number + 1, next_at
        self._dispatcher.ensure_enqueued(delivery)
        return "retrying"

    def _disable_reason(self, endpoint: Endpoint, delivery: Delivery, result: PostResult, now: datetime) -> str | None:
        """Disable the endpoint if this failure makes it persistent; the delivery's failure reason if it stops
        now (None: it keeps its retries, which last at least 24 h from the start of its own series)."""
        if result.status_code == 410:
            reason = "the endpoint answered 410 Gone"
            self._repo.disable(endpoint.org_id, endpoint.id, reason, clock.iso(now))
            return f"endpoint disabled: {reason}"
        since = self._repo.mark_failing(endpoint.org_id, endpoint.id, clock.iso(now))
        if since is None:
            return "endpoint deleted"
        started = datetime.fromisoformat(since).astimezone(UTC)
        if (now - started).total_seconds() < DISABLE_AFTER_STEPS * self._base:
            return None
        reason = f"{STREAK_REASON} {since} with no success"
        if endpoint.enabled:
            self._repo.disable(endpoint.org_id, endpoint.id, reason, clock.iso(now))
        else:
            reason = endpoint.disabled_reason or reason
        if self._series_age(delivery, now) < DISABLE_AFTER_STEPS * self._base:
            return None
        return f"endpoint disabled: {reason}"


def known_event_type(name: str) -> bool:
    return name in TYPES
