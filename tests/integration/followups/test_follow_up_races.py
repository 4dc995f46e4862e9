"""The guarantees of follow-ups where attempts overlap: a step that is sending holds its lease through a
newer message and is waited for by the reply that ends the timer; a step's record is its lease-holder's
only; a message that went is never sent again because its record failed; a status that comes before its
message is recorded loses nothing; a requested follow-up is scheduled once per Idempotency-Key."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.channels import BotApiStub, Tenant
from tests.integration.followups.test_follow_ups import _contact, _executions, _rules, _send, _texts


def _service() -> Any:
    from audience import container

    return container.follow_up_service()


def test_a_reply_waits_for_a_step_that_is_sending_even_after_a_newer_message(
    stack: Any, org: Tenant, bot: tuple[str, str, str]
) -> None:
    connection_id, _, _ = bot
    contact_id = _contact(org)
    _rules(org, idle_seconds=600)
    first = _send(org, contact_id, connection_id, "One").json()
    repo = _service()._repo
    conversation = repo.conversation(org.org_id, contact_id, "telegram")
    # The first message's step 0 claims its send (as FollowUpFunction would) ...
    claimed = repo.claim(
        org.org_id,
        contact_id,
        "telegram",
        first["id"],
        0,
        owner="attempt-1",
        reply_cutoff=conversation["fu_base"],
        now=int(time.time()),
        lease=30,
    )
    assert claimed is not None
    # ... and while it sends, a newer message re-arms the timer: the lease stays.
    second = _send(org, contact_id, connection_id, "Two").json()
    after = repo.conversation(org.org_id, contact_id, "telegram")
    assert after["fu_gen"] == second["id"]
    assert after["fu_lease_by"] == "attempt-1"

    # The contact writes: ending the timer waits until the sending step lets go of its lease.
    threading.Timer(0.6, repo.release, args=(org.org_id, contact_id, "telegram", "attempt-1")).start()
    began = time.monotonic()
    ended = _service().on_inbound(org.org_id, contact_id, "2099-01-01T00:00:00.000Z")
    waited = time.monotonic() - began
    assert ended == 1
    assert waited >= 0.5
    final = repo.conversation(org.org_id, contact_id, "telegram")
    assert final["fu_state"] == "replied"
    assert "fu_lease" not in final
    # The first message's step could not record itself: its lease is gone and its timer moved on.
    assert not repo.advance(
        org.org_id, contact_id, "telegram", 0, owner="attempt-1", at="2099-01-01T00:00:00.000Z", due_at=None, outcome={}
    )
    stack.drain(timeout=30)


def test_a_closing_step_is_recorded_once(stack: Any, org: Tenant, bot: tuple[str, str, str]) -> None:
    connection_id, _, _ = bot
    contact_id = _contact(org)
    _rules(org, idle_seconds=600, max_follow_ups=0)
    sent = _send(org, contact_id, connection_id).json()
    repo = _service()._repo
    base = repo.conversation(org.org_id, contact_id, "telegram")["fu_base"]
    args = (org.org_id, contact_id, "telegram", sent["id"], 0)
    assert repo.claim(*args, owner="a", reply_cutoff=base, now=int(time.time()), lease=30) is not None
    close = ("no_reply", True)
    at = "2099-01-01T00:00:00.000Z"
    assert repo.advance(org.org_id, contact_id, "telegram", 0, owner="a", at=at, due_at=None, outcome={}, close=close)
    # A retry of that step finds nothing to claim and nothing to record: the closing happened in one write.
    assert repo.claim(*args, owner="b", reply_cutoff=base, now=int(time.time()) + 60, lease=30) is None
    assert not repo.advance(
        org.org_id, contact_id, "telegram", 0, owner="a", at=at, due_at=None, outcome={}, close=close
    )
    final = repo.conversation(org.org_id, contact_id, "telegram")
    assert (final["fu_state"], final["status"], final["fu_step"]) == ("closed", "resolved", 1)
    from audience.followups.service import execution_name

    _service()._stop(execution_name(org.org_id, contact_id, "telegram", sent["id"]))  # its 10-minute wait
    stack.drain(timeout=30)


def test_a_message_that_went_is_not_sent_again_when_its_record_fails(
    stack: Any, org: Tenant, bot_api: BotApiStub, bot: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from audience import container

    connection_id, token, _ = bot
    contact_id = _contact(org)
    inbound = container.inbound_repository()

    def unavailable(**_: Any) -> bool:
        raise ConnectionError("dynamodb.us-east-1.amazonaws.com unreachable")

    monkeypatch.setattr(inbound, "record_message", unavailable)
    headers = {"Idempotency-Key": "receipt-41"}
    answers = [_send(org, contact_id, connection_id, "Your receipt", headers=headers) for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].json() == answers[1].json()
    assert _texts(bot_api, token) == ["Your receipt"]


def test_a_status_that_comes_before_its_message_is_recorded_loses_nothing(stack: Any, org: Tenant) -> None:
    from audience import container

    contact_id = _contact(org)
    inbound = container.inbound_repository()
    assert inbound.apply_status(org.org_id, "telegram", "early-1", "delivered", "2026-11-24T10:00:01.000Z")

    def record() -> bool:
        return bool(
            inbound.record_message(
                org_id=org.org_id,
                contact_id=contact_id,
                channel="telegram",
                connection_id="ch_x",
                provider_id="early-1",
                direction="outbound",
                at="2026-11-24T10:00:00.000Z",
                entry={"kind": "text", "text": "Hello"},
                activity=None,
            )
        )

    recorded = record()
    assert recorded is True
    (logged,) = org.client.get(f"/orgs/c/contacts/{contact_id}/messages").json()["items"]
    assert (logged["id"], logged["text"], logged["status"]) == ("early-1", "Hello", "delivered")
    again = record()
    assert again is False


def test_a_requested_follow_up_is_scheduled_once_per_key_and_a_contact_has_a_bounded_number(
    stack: Any, org: Tenant, bot: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from audience.followups import service

    connection_id, _, _ = bot
    contact_id = _contact(org)
    url = f"/orgs/c/contacts/{contact_id}/follow-ups"
    body = {"connection_id": connection_id, "in": "2d", "text": "As promised"}
    answers = [org.client.post(url, json=body, headers={"Idempotency-Key": "callback-9"}) for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert len(_executions(stack, contact_id)) == 1

    monkeypatch.setattr(service, "MAX_REQUESTED", 2)
    assert org.client.post(url, json=body).status_code == 201
    refused = org.client.post(url, json=body)
    assert refused.status_code == 409
    assert refused.json()["error"]["reason"] == "too_many_follow_ups"
    for item in org.client.get(url).json()["items"]:
        assert org.client.delete(f"{url}/{item['id']}").status_code == 200
    stack.drain(timeout=30)
