"""Domain events reach an org's endpoints signed, once per attempt, with a stable event id."""

from __future__ import annotations

from typing import Any

from tests.integration.outbound.conftest import Receiver, add_endpoint, publish


def test_every_subscribed_event_arrives_signed_with_its_event_id(stack: Any, org: Any, receiver: Receiver) -> None:
    # Given an endpoint subscribed to contact events only
    endpoint = add_endpoint(org, receiver, event_types=["contact.created", "contact.updated"])
    assert endpoint["secret"].startswith("whsec_")
    # When three events are published, one of a type it did not subscribe to
    publish(stack, org.org_id, "contact.created", "ev_a1", {"contact_id": "ct_1"})
    publish(stack, org.org_id, "contact.updated", "ev_a2", {"contact_id": "ct_1"})
    publish(stack, org.org_id, "segment.member_added", "ev_a3", {"contact_id": "ct_1"})
    stack.drain(timeout=30)
    # Then the two subscribed events arrive, each once, verified, with the headers that name them
    assert sorted(e["id"] for e in receiver.events()) == ["ev_a1", "ev_a2"]
    for got in receiver.received:
        assert got.verified
        assert got.headers["Audience-Event-Id"] == got.event["id"]
        assert got.headers["Audience-Event-Type"] == got.event["type"]
        assert got.headers["Audience-Attempt"] == "1"
        assert got.headers["Audience-Delivery-Id"].startswith("wd_")
        assert got.event["org_id"] == org.org_id
    delivered = org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}/deliveries?state=delivered").json()
    assert {d["event_id"] for d in delivered["items"]} == {"ev_a1", "ev_a2"}
    assert all(d["attempt_count"] == 1 and d["last_status_code"] == 200 for d in delivered["items"])


def test_a_receiver_that_is_down_gets_everything_once_it_recovers(stack: Any, org: Any, receiver: Receiver) -> None:
    # Given a receiver that answers 500 to its first four requests, then 200
    receiver.answer = lambda n: 500 if n <= 4 else 200
    endpoint = add_endpoint(org, receiver)
    # When two events are published while it is down
    publish(stack, org.org_id, "contact.created", "ev_d1")
    publish(stack, org.org_id, "contact.deleted", "ev_d2")
    stack.drain(timeout=60)
    # Then both arrive in the end, each delivered once, through retries that kept the same event id
    delivered = [r for r in receiver.received if r.verified]
    assert len(delivered) == len(receiver.received) == 6
    assert sorted(e["id"] for e in receiver.events()[-2:]) == ["ev_d1", "ev_d2"]
    assert {r.headers["Audience-Attempt"] for r in receiver.received} >= {"1", "2"}
    items = org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}/deliveries").json()["items"]
    assert [d["state"] for d in items] == ["delivered", "delivered"]
    assert sum(d["attempt_count"] for d in items) == 6
    detail = org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}/deliveries/{items[0]['id']}").json()
    assert [a["status_code"] for a in detail["attempts"]][-1] == 200
    assert all(a["status_code"] == 500 for a in detail["attempts"][:-1])
    assert detail["event"]["id"] == items[0]["event_id"]
    assert org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}").json()["failing_since"] is None


def test_a_receiver_that_refuses_connections_gets_the_event_when_it_comes_back(stack: Any, org: Any) -> None:
    # Given an endpoint whose receiver is not listening yet
    receiver = Receiver().start()
    port = receiver.server.server_address[1]  # type: ignore[union-attr]
    endpoint = add_endpoint(org, receiver)
    receiver.stop()
    publish(stack, org.org_id, "contact.created", "ev_r1")
    # When the first attempts are refused ...
    for _ in range(50):
        for poller in stack.pollers:
            poller.poll()
        items = org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}/deliveries").json()["items"]
        if items and items[0]["attempt_count"] >= 1:
            break
    assert items[0]["state"] == "pending"
    assert "Connect" in (items[0]["last_error"] or "")
    # ... and the receiver comes back on the same port
    back = Receiver(secret=receiver.secret).start(port)
    try:
        stack.drain(timeout=60)
        assert [e["id"] for e in back.events()] == ["ev_r1"]
        assert back.received[0].verified
    finally:
        back.stop()


def test_redelivered_fan_out_messages_create_no_second_delivery(stack: Any, org: Any, receiver: Receiver) -> None:
    endpoint = add_endpoint(org, receiver)
    # The same event published three times (EventBridge and SQS are at-least-once)
    for _ in range(3):
        publish(stack, org.org_id, "contact.merged", "ev_same")
    stack.drain(timeout=30)
    assert [e["id"] for e in receiver.events()] == ["ev_same"]
    items = org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}/deliveries").json()["items"]
    assert len(items) == 1


def test_events_of_another_org_never_reach_an_endpoint(
    stack: Any, org: Any, other_org: Any, receiver: Receiver
) -> None:
    add_endpoint(org, receiver)
    publish(stack, other_org.org_id, "contact.created", "ev_theirs")
    publish(stack, org.org_id, "contact.created", "ev_mine")
    stack.drain(timeout=30)
    assert [e["id"] for e in receiver.events()] == ["ev_mine"]


def test_a_disabled_endpoint_receives_nothing(stack: Any, org: Any, receiver: Receiver) -> None:
    endpoint = add_endpoint(org, receiver)
    patched = org.client.patch(f"/orgs/c/webhook-endpoints/{endpoint['id']}", json={"enabled": False}).json()
    assert (patched["enabled"], patched["disabled_reason"]) == (False, "disabled through the API")
    publish(stack, org.org_id, "contact.created", "ev_off")
    stack.drain(timeout=30)
    assert receiver.received == []


def test_waits_of_seconds_travel_as_sqs_delays_that_the_local_pollers_honour(
    stack: Any, org: Any, receiver: Receiver, monkeypatch: Any
) -> None:
    import time

    from audience import container

    # Given waits of 0.4 s then 1.2 s (the second one an SQS DelaySeconds of 2)
    monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", "0.4")
    container.reset()
    receiver.answer = lambda n: 500 if n <= 2 else 200
    add_endpoint(org, receiver)
    started = time.monotonic()
    publish(stack, org.org_id, "broadcast.status_changed", "ev_slow")
    stack.drain(timeout=60)
    # Then the third attempt came after both waits, and delivered
    assert [r.headers["Audience-Attempt"] for r in receiver.received] == ["1", "2", "3"]
    assert time.monotonic() - started >= 1.6
