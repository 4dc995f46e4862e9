"""Delivery attempts on moto (template.yaml's tables) with a controlled clock: the retry schedule, automatic
disabling after 24 hours of failure, leases, stale messages and waits longer than SQS can delay."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from audience import aws
from audience.errors import ConflictError
from audience.outbound.delivery import DISABLE_AFTER_STEPS, RETRY_STEPS, Deliverer, Dispatcher, retry_delay
from audience.outbound.http import PostResult
from audience.outbound.models import Endpoint
from audience.outbound.repository import (
    MAX_PAGES_PER_LIST,
    OutboundRepository,
    deliveries_pk,
    delivery_sk,
    event_sk,
)
from audience.outbound.service import EndpointService
from audience.outbound.signing import verify

ORG = "org_01hzzzzzzzzzzzzzzzzzzzzzzz"


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class Secrets:
    def get(self, endpoint_id: str, version: int) -> str:
        return "whsec_test"

    def previous(self, endpoint_id: str, version: int) -> str | None:
        return "whsec_old"


class Harness:
    """A deliverer whose queue is a list and whose endpoint answers what `answers` says."""

    def __init__(self, table: str) -> None:
        self.clock = Clock()
        self.repo = OutboundRepository(table)
        self.queue: list[tuple[dict[str, Any], int]] = []
        self.delays: list[int] = []
        self.posts: list[dict[str, str]] = []
        self.answer = 500
        self.dispatcher = Dispatcher(self.repo, self.enqueue, now=self.clock)
        self.deliverer = Deliverer(
            self.repo,
            Secrets(),  # type: ignore[arg-type]
            self.dispatcher,
            self.post,
            retry_base=10.0,
            now=self.clock,
            sleep=self.clock.sleep,
            rand=lambda: 0.0,
        )
        at = "2026-11-24T12:00:00.000Z"
        self.endpoint = Endpoint(
            "we_01hzzzzzzzzzzzzzzzzzzzzzzz", ORG, "https://hooks.example.com", ["*"], "", True, at, at
        )
        self.repo.put_endpoint(self.endpoint, new=True)

    def enqueue(self, body: dict[str, Any], delay: int) -> None:
        self.queue.append((body, delay))
        self.delays.append(delay)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostResult:
        self.posts.append(headers)
        return PostResult(self.answer, None, 5)

    def publish(self, event_id: str) -> None:
        envelope = {"id": event_id, "type": "contact.created", "org_id": ORG, "occurred_at": "2026-11-24T12:00:00Z"}
        self.dispatcher.fan_out({"detail": {**envelope, "version": 1, "data": {}}})

    def run(self, limit: int = 200) -> list[str]:
        """Process queued messages in order, moving the clock to each one's not-before time."""
        outcomes = []
        while self.queue and limit:
            limit -= 1
            body, _delay = self.queue.pop(0)
            if body.get("not_before"):
                self.clock.at = max(self.clock.at, datetime.fromisoformat(body["not_before"]))
            outcomes.append(self.deliverer.process(body))
        return outcomes

    def delivery(self) -> Any:
        [delivery], _ = self.repo.deliveries(ORG, self.endpoint.id, state=None, take=10, before=None)
        return delivery


@pytest.fixture
def harness(stack: Any) -> Harness:
    return Harness(stack.outputs["BroadcastsTableName"])


def test_the_schedule_retries_for_more_than_24_hours() -> None:
    waits = [retry_delay(n, 10.0, rand=lambda: 0.0) for n in range(1, len(RETRY_STEPS) + 1)]
    assert waits[:6] == [10, 30, 120, 600, 1800, 3600]
    assert sum(w for w in waits if w) >= 24 * 3600
    assert retry_delay(len(RETRY_STEPS) + 1, 10.0) is None
    assert retry_delay(1, 10.0, rand=lambda: 1.0) == pytest.approx(12.0)  # jitter stretches by at most 20 %
    assert DISABLE_AFTER_STEPS * 10 == 24 * 3600


def test_an_endpoint_failing_for_24_hours_is_disabled_and_the_delivery_fails(harness: Harness) -> None:
    harness.publish("ev_1")
    outcomes = harness.run()
    delivery = harness.delivery()
    endpoint = harness.repo.endpoint(ORG, harness.endpoint.id)
    assert outcomes[-1] == "failed"
    assert set(outcomes[:-1]) <= {"retrying", "delayed"}
    assert endpoint.enabled is False
    assert "with no success" in (endpoint.disabled_reason or "")
    assert delivery.state == "failed"
    assert delivery.failure_reason.startswith("endpoint disabled")
    first = datetime.fromisoformat(delivery.attempts[0].at)
    last = datetime.fromisoformat(delivery.attempts[-1].at)
    assert last - first >= timedelta(hours=24)
    assert [a.number for a in delivery.attempts] == list(range(1, len(delivery.attempts) + 1))
    assert [h["Audience-Attempt"] for h in harness.posts] == [str(a.number) for a in delivery.attempts]
    # Waits over 900 s travel as a not-before time: SQS is never asked to delay longer
    assert max(harness.delays) == 900


def test_waits_longer_than_sqs_allows_are_delayed_again(harness: Harness) -> None:
    harness.publish("ev_1")
    body, _ = harness.queue.pop(0)
    later = (harness.clock() + timedelta(hours=1)).isoformat()
    assert harness.deliverer.process({**body, "not_before": later}) == "delayed"
    [(again, delay)] = harness.queue
    assert delay == 900
    assert again["not_before"] == later
    assert harness.posts == []


def test_a_success_clears_the_failure_streak(harness: Harness) -> None:
    harness.publish("ev_1")
    harness.run(limit=2)  # two failures
    assert harness.repo.endpoint(ORG, harness.endpoint.id).failing_since is not None
    harness.answer = 204
    assert harness.run() == ["delivered"]
    assert harness.repo.endpoint(ORG, harness.endpoint.id).failing_since is None
    assert [a.status_code for a in harness.delivery().attempts] == [500, 500, 204]


def test_a_redelivered_message_never_makes_a_second_attempt(harness: Harness) -> None:
    harness.answer = 200
    harness.publish("ev_1")
    body, _ = harness.queue[0]
    assert harness.run() == ["delivered"]
    assert harness.deliverer.process(body) == "stale"
    assert len(harness.posts) == 1


def test_an_attempt_leased_by_another_worker_is_not_made_twice(harness: Harness) -> None:
    harness.publish("ev_1")
    body, _ = harness.queue.pop(0)
    delivery = harness.delivery()
    now_ms = int(harness.clock().timestamp() * 1000)
    assert harness.repo.claim(delivery, 1, 1, "other-worker", now_ms, 60_000)
    assert harness.deliverer.process(body) == "busy"
    assert harness.posts == []
    # It comes back after the lease; if the other worker never finished, this one takes the attempt over
    [(again, _delay)] = harness.queue
    assert datetime.fromisoformat(again["not_before"]) > harness.clock() + timedelta(seconds=60)
    harness.answer = 200
    assert harness.run() == ["delivered"]
    assert len(harness.posts) == 1


def test_the_same_event_twice_makes_one_delivery(harness: Harness) -> None:
    harness.publish("ev_1")
    harness.publish("ev_1")
    assert len(harness.queue) == 1
    deliveries, _ = harness.repo.deliveries(ORG, harness.endpoint.id, state=None, take=10, before=None)
    assert len(deliveries) == 1


def _service(harness: Harness) -> EndpointService:
    return EndpointService(
        harness.repo,
        Secrets(),  # type: ignore[arg-type]
        harness.dispatcher,
        allow_private_urls=True,
        now=harness.clock,
    )


def _run_in_time_order(harness: Harness) -> None:
    """Process queued messages earliest not-before first, moving the clock to each one."""
    while harness.queue:
        harness.queue.sort(key=lambda entry: entry[0].get("not_before") or "")
        body, _delay = harness.queue.pop(0)
        if body.get("not_before"):
            harness.clock.at = max(harness.clock.at, datetime.fromisoformat(body["not_before"]))
        harness.deliverer.process(body)


def _only(harness: Harness, event_id: str) -> Any:
    deliveries, _ = harness.repo.deliveries(ORG, harness.endpoint.id, state=None, take=100, before=None)
    [delivery] = [d for d in deliveries if d.event_id == event_id]
    return delivery


def test_a_delivery_whose_first_message_was_never_sent_is_sent_by_redeliver(harness: Harness) -> None:
    real = harness.enqueue

    def broken(body: dict[str, Any], delay: int) -> None:
        raise RuntimeError("SQS is down")

    harness.dispatcher._enqueue = broken
    with pytest.raises(RuntimeError):
        harness.publish("ev_1")
    harness.dispatcher._enqueue = real
    stuck = harness.delivery()
    assert stuck.state == "pending"
    assert harness.queue == []
    harness.answer = 200
    again = _service(harness).redeliver(ORG, harness.endpoint.id, stuck.id)
    assert again.id == stuck.id
    assert len(harness.queue) == 1
    assert harness.run() == ["delivered"]
    # A pending delivery whose message was sent is still refused
    harness.answer = 500
    harness.publish("ev_2")
    with pytest.raises(ConflictError):
        _service(harness).redeliver(ORG, harness.endpoint.id, _only(harness, "ev_2").id)


def test_a_redelivery_whose_message_was_never_sent_is_sent_by_redelivering_again(harness: Harness) -> None:
    harness.answer = 200
    harness.publish("ev_1")
    harness.run()
    service = _service(harness)
    harness.dispatcher._enqueue = lambda body, delay: (_ for _ in ()).throw(RuntimeError("down"))
    with pytest.raises(RuntimeError):
        service.redeliver(ORG, harness.endpoint.id, harness.delivery().id)
    harness.dispatcher._enqueue = harness.enqueue
    assert harness.delivery().state == "pending"
    service.redeliver(ORG, harness.endpoint.id, harness.delivery().id)
    assert harness.run() == ["delivered"]
    assert harness.delivery().series == 2


def test_events_while_an_endpoint_is_disabled_are_recorded_failed_and_can_be_redelivered(harness: Harness) -> None:
    harness.repo.disable(ORG, harness.endpoint.id, "disabled through the API", "2026-11-24T12:00:00.000Z")
    harness.publish("ev_1")
    assert harness.queue == []
    assert harness.posts == []
    delivery = harness.delivery()
    assert delivery.state == "failed"
    assert delivery.failure_reason == "endpoint disabled: disabled through the API"
    service = _service(harness)
    service.update(ORG, harness.endpoint.id, {"enabled": True})
    harness.answer = 200
    service.redeliver(ORG, harness.endpoint.id, delivery.id)
    assert harness.run() == ["delivered"]
    assert len(harness.posts) == 1


def test_a_delivery_created_late_in_a_failure_streak_still_gets_24_hours(harness: Harness) -> None:
    harness.publish("ev_1")
    while harness.clock() < datetime(2026, 11, 24, 12, tzinfo=UTC) + timedelta(hours=23):
        harness.run(limit=1)
    harness.publish("ev_2")  # 23 h into the endpoint's failure streak
    _run_in_time_order(harness)
    endpoint = harness.repo.endpoint(ORG, harness.endpoint.id)
    assert endpoint.enabled is False
    late = _only(harness, "ev_2")
    assert late.state == "failed"
    assert (late.failure_reason or "").startswith("endpoint disabled")
    first = datetime.fromisoformat(late.attempts[0].at)
    last = datetime.fromisoformat(late.attempts[-1].at)
    assert last - first >= timedelta(hours=24)
    assert _only(harness, "ev_1").state == "failed"


def test_an_endpoint_that_answered_410_gets_no_more_attempts_for_younger_deliveries(harness: Harness) -> None:
    harness.publish("ev_1")
    harness.publish("ev_2")
    harness.answer = 410
    harness.run(limit=1)
    assert harness.repo.endpoint(ORG, harness.endpoint.id).enabled is False
    harness.run()
    assert len(harness.posts) == 1
    assert _only(harness, "ev_2").failure_reason == "endpoint disabled: the endpoint answered 410 Gone"


class _StaleFirstRead:
    """A repository whose first endpoint() read answers `snapshot`, as if another writer changed the endpoint
    between this read and the write that follows it."""

    def __init__(self, repo: OutboundRepository, snapshot: Endpoint) -> None:
        self._repo, self._snapshot = repo, snapshot

    def endpoint(self, org_id: str, endpoint_id: str) -> Endpoint:
        snapshot, self._snapshot = self._snapshot, None
        return snapshot or self._repo.endpoint(org_id, endpoint_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repo, name)


def _racing_service(harness: Harness) -> EndpointService:
    snapshot = harness.repo.endpoint(ORG, harness.endpoint.id)
    harness.repo.disable(ORG, harness.endpoint.id, "the endpoint answered 410 Gone", "2026-11-24T12:00:01.000Z")
    service = _service(harness)
    service._repo = _StaleFirstRead(harness.repo, snapshot)  # type: ignore[assignment]
    return service


def test_a_patch_racing_the_workers_disable_does_not_re_enable_the_endpoint(harness: Harness) -> None:
    changed = _racing_service(harness).update(ORG, harness.endpoint.id, {"description": "orders"})
    stored = harness.repo.endpoint(ORG, harness.endpoint.id)
    assert changed.description == stored.description == "orders"
    assert stored.enabled is False
    assert stored.disabled_reason == "the endpoint answered 410 Gone"


class _MemorySecrets:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def put(self, endpoint_id: str, secret: str) -> None:
        self.values[endpoint_id] = secret


def test_a_rotation_racing_the_workers_disable_keeps_it_and_never_writes_an_old_version(harness: Harness) -> None:
    service = _racing_service(harness)
    service._secrets = _MemorySecrets()  # type: ignore[assignment]
    harness.repo.update_endpoint(ORG, harness.endpoint.id, {}, bump_secret_version=True)  # a rotation meanwhile
    endpoint, _secret = service.rotate_secret(ORG, harness.endpoint.id)
    stored = harness.repo.endpoint(ORG, harness.endpoint.id)
    assert endpoint.secret_version == stored.secret_version == 3
    assert stored.enabled is False
    assert stored.disabled_reason == "the endpoint answered 410 Gone"


def test_re_enabling_clears_the_reason_and_streak(harness: Harness) -> None:
    harness.repo.mark_failing(ORG, harness.endpoint.id, "2026-11-24T12:00:00.000Z")
    harness.repo.disable(ORG, harness.endpoint.id, "x", "2026-11-24T12:00:00.000Z")
    endpoint = _service(harness).update(ORG, harness.endpoint.id, {"enabled": True})
    stored = harness.repo.endpoint(ORG, harness.endpoint.id)
    assert endpoint.enabled is stored.enabled is True
    assert stored.disabled_reason is stored.disabled_at is stored.failing_since is None


def test_redelivery_keeps_the_delivery_and_its_guard_30_more_days(harness: Harness) -> None:
    harness.answer = 200
    harness.publish("ev_1")
    harness.run()
    table = aws.table(harness.repo._name)
    delivery = harness.delivery()
    pk = deliveries_pk(ORG, harness.endpoint.id)
    for sk in (delivery_sk(delivery.id), event_sk("ev_1")):  # as if written 29 days ago
        table.update_item(
            Key={"pk": pk, "sk": sk},
            UpdateExpression="SET expires_at = :e",
            ExpressionAttributeValues={":e": int(time.time()) + 86400},
        )
    _service(harness).redeliver(ORG, harness.endpoint.id, delivery.id)
    soon = int(time.time()) + 29 * 86400
    for sk in (delivery_sk(delivery.id), event_sk("ev_1")):
        item = table.get_item(Key={"pk": pk, "sk": sk})["Item"]
        assert int(item["expires_at"]) > soon
    assert table.get_item(Key={"pk": pk, "sk": event_sk("ev_1")})["Item"]["delivery_id"] == delivery.id


def test_listing_by_state_reads_a_bounded_number_of_pages_and_answers_a_cursor(harness: Harness) -> None:
    harness.answer = 200
    harness.publish("ev_old")
    harness.run()
    harness.answer = 500
    table = aws.table(harness.repo._name)
    pk = deliveries_pk(ORG, harness.endpoint.id)
    with table.batch_writer() as batch:  # many newer pending deliveries in front of the one delivered
        for n in range(MAX_PAGES_PER_LIST * 100 + 50):
            batch.put_item(Item={"pk": pk, "sk": f"D#wd_{'z' * 20}{n:06d}", "state": "pending"})
    calls: list[int] = []
    found: list[Any] = []
    original = OutboundRepository._table
    try:
        OutboundRepository._table = property(lambda self: _Counting(table, calls))  # type: ignore[method-assign]
        items, cursor = harness.repo.deliveries(ORG, harness.endpoint.id, state="delivered", take=10, before=None)
        assert items == []
        assert cursor is not None
        assert len(calls) == MAX_PAGES_PER_LIST
        for _ in range(5):
            found, cursor = harness.repo.deliveries(ORG, harness.endpoint.id, state="delivered", take=10, before=cursor)
            if found:
                break
    finally:
        OutboundRepository._table = original  # type: ignore[method-assign]
    assert [d.event_id for d in found] == ["ev_old"]
    assert cursor is None


class _Counting:
    def __init__(self, table: Any, calls: list[int]) -> None:
        self._table, self._calls = table, calls

    def query(self, **request: Any) -> Any:
        self._calls.append(1)
        return self._table.query(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


def test_after_a_rotation_attempts_are_signed_with_both_secrets_for_24_hours(harness: Harness) -> None:
    service = _service(harness)
    service._secrets = _MemorySecrets()  # type: ignore[assignment]
    harness.answer = 200
    harness.publish("ev_1")
    harness.run()
    [before] = harness.posts
    assert before["Audience-Signature"].count("v1=") == 1
    service.rotate_secret(ORG, harness.endpoint.id)
    delivery = harness.delivery()
    service.redeliver(ORG, harness.endpoint.id, delivery.id)
    harness.run()
    body = delivery.body.encode()
    header = harness.posts[-1]["Audience-Signature"]
    now = harness.clock().timestamp()
    assert header.count("v1=") == 2
    assert verify("whsec_test", header, body, now=now)
    assert verify("whsec_old", header, body, now=now)
    harness.clock.at += timedelta(hours=24, seconds=1)
    service.redeliver(ORG, harness.endpoint.id, delivery.id)
    harness.run()
    header = harness.posts[-1]["Audience-Signature"]
    assert header.count("v1=") == 1
    assert not verify("whsec_old", header, body, now=harness.clock().timestamp())
