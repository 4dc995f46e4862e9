"""message.inbound under retries: when PutEvents fails the inbound record is retried, and the retry
publishes the same event (same id), so receivers deduping on `id` see the message once."""

from __future__ import annotations

from typing import Any

import pytest

from audience.events import EventPublisher, PublishError
from tests.bus import tap, validate
from tests.channels import Webhooks, connect_whatsapp, text_message


def test_a_retried_inbound_record_publishes_the_same_event_id(
    stack: Any, org: Any, hooks: Webhooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone = "700000000009901"
    connection = connect_whatsapp(org, phone, waba="700000000009902")
    original = EventPublisher.publish
    calls: list[int] = []

    def put_then_fail_once(self: EventPublisher, events: Any) -> int:
        events = list(events)
        put = original(self, events)  # the events reach the bus ...
        if any(e.detail_type == "message.inbound" for e in events):  # (the stream consumers publish too)
            calls.append(put)
            if len(calls) == 1:  # ... but the call is reported failed, as a timeout after the put would be
                raise PublishError("EventBridge refused 1 of 1 events: InternalException")
        return put

    monkeypatch.setattr(EventPublisher, "publish", put_then_fail_once)
    with tap(stack, ("audience.inbound",)) as watch:
        assert hooks.meta(connection["id"], text_message(phone, "wamid.retry-1", "Halo")).status_code == 200
        stack.drain()
        received = watch.details(org.org_id, "message.inbound")
    assert len(calls) == 2  # the record was processed again
    assert len(received) == 2
    assert received[0] == received[1]  # same id, same envelope
    validate(received[0])
    assert received[0]["data"]["message_id"] == "wamid.retry-1"
    messages = org.client.get(f"/orgs/c/contacts/{received[0]['data']['contact_id']}/messages").json()["items"]
    assert [m["id"] for m in messages] == ["wamid.retry-1"]  # recorded once
