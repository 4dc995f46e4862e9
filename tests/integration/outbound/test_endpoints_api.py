"""The webhook endpoints API: validation, secrets shown once and rotated, test sends, redelivery, automatic
disabling, and other orgs' ids."""

from __future__ import annotations

from typing import Any

import pytest

from audience.outbound.signing import verify
from tests.integration.outbound.conftest import Receiver, add_endpoint, publish


@pytest.fixture
def strict_urls(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The production rule: https to public hosts only."""
    from audience import container

    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE_URLS", "false")
    container.reset()
    yield
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE_URLS", "true")
    container.reset()


def _field(answer: Any) -> str:
    assert answer.status_code == 422, answer.text
    return str(answer.json()["error"]["fields"][0]["field"])


@pytest.mark.usefixtures("strict_urls")
@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
        "https://localhost/x",
        "https://user:pw@hooks.example.com/x",
        "ftp://hooks.example.com/x",
    ],
)
def test_urls_that_are_not_public_https_answer_422_naming_the_url(org: Any, url: str) -> None:
    assert _field(org.client.post("/orgs/c/webhook-endpoints", json={"url": url})) == "url"


def test_validation_names_the_field(org: Any, receiver: Receiver) -> None:
    answer = org.client.post(
        "/orgs/c/webhook-endpoints", json={"url": receiver.url, "event_types": ["contact.created", "contact.exploded"]}
    )
    assert _field(answer) == "event_types[1]"
    assert _field(org.client.post("/orgs/c/webhook-endpoints", json={"url": "https://x.io/" + "a" * 2100})) == "url"
    assert _field(org.client.post("/orgs/c/webhook-endpoints", json={"url": receiver.url, "event_types": []}))
    endpoint = add_endpoint(org, receiver)
    answer = org.client.patch(f"/orgs/c/webhook-endpoints/{endpoint['id']}", json={"event_types": ["nope"]})
    assert _field(answer) == "event_types[0]"


def test_an_org_has_at_most_twenty_endpoints(org: Any, receiver: Receiver) -> None:
    for n in range(20):
        assert org.client.post("/orgs/c/webhook-endpoints", json={"url": f"{receiver.url}/{n}"}).status_code == 201
    answer = org.client.post("/orgs/c/webhook-endpoints", json={"url": receiver.url})
    assert _field(answer) == "url"
    assert "at most 20" in answer.json()["error"]["message"]
    assert len(org.client.get("/orgs/c/webhook-endpoints").json()["items"]) == 20


def test_the_secret_is_shown_once_and_rotation_signs_with_the_new_one_and_the_old_for_a_while(
    stack: Any, org: Any, receiver: Receiver
) -> None:
    endpoint = add_endpoint(org, receiver)
    old_secret = endpoint["secret"]
    shown = org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}").json()
    assert "secret" not in shown
    assert old_secret not in str(org.client.get("/orgs/c/webhook-endpoints").json())
    rotated = org.client.post(f"/orgs/c/webhook-endpoints/{endpoint['id']}/rotate-secret").json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != old_secret
    receiver.secret = rotated["secret"]
    sent = org.client.post(f"/orgs/c/webhook-endpoints/{endpoint['id']}/test")
    assert sent.status_code == 202
    stack.drain(timeout=30)
    got = receiver.received[-1]
    assert got.verified
    # For 24 hours the old secret signs too (a second v1=), so the receiver can switch without missing events
    assert got.headers["Audience-Signature"].count("v1=") == 2
    assert verify(old_secret, got.headers["Audience-Signature"], got.body)
    assert verify(rotated["secret"], got.headers["Audience-Signature"], got.body)


def test_the_test_call_goes_through_the_delivery_path(stack: Any, org: Any, receiver: Receiver) -> None:
    endpoint = add_endpoint(org, receiver, event_types=["contact.created"])
    sent = org.client.post(f"/orgs/c/webhook-endpoints/{endpoint['id']}/test").json()
    stack.drain(timeout=30)
    [got] = receiver.received
    assert got.verified
    assert (got.event["type"], got.event["id"]) == ("webhook.test", sent["event_id"])
    assert got.headers["Audience-Delivery-Id"] == sent["delivery_id"]
    delivery = org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}/deliveries/{sent['delivery_id']}").json()
    assert delivery["state"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [200]


def test_redeliver_sends_the_same_event_again_as_a_new_series(stack: Any, org: Any, receiver: Receiver) -> None:
    endpoint = add_endpoint(org, receiver)
    publish(stack, org.org_id, "import.finished", "ev_again")
    stack.drain(timeout=30)
    [delivery] = org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}/deliveries").json()["items"]
    path = f"/orgs/c/webhook-endpoints/{endpoint['id']}/deliveries/{delivery['id']}"
    again = org.client.post(f"{path}/redeliver")
    assert again.status_code == 202, again.text
    assert (again.json()["state"], again.json()["series"]) == ("pending", 2)
    stack.drain(timeout=30)
    assert [r.event["id"] for r in receiver.received] == ["ev_again", "ev_again"]
    assert receiver.received[0].body == receiver.received[1].body
    assert all(r.verified for r in receiver.received)
    detail = org.client.get(path).json()
    assert (detail["state"], detail["series"]) == ("delivered", 2)
    assert [(a["series"], a["number"]) for a in detail["attempts"]] == [(1, 1), (2, 1)]


def test_a_410_disables_the_endpoint_and_its_deliveries_stop(stack: Any, org: Any, receiver: Receiver) -> None:
    receiver.answer = lambda n: 410
    endpoint = add_endpoint(org, receiver)
    publish(stack, org.org_id, "contact.created", "ev_gone")
    stack.drain(timeout=30)
    shown = org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}").json()
    assert shown["enabled"] is False
    assert "410" in shown["disabled_reason"]
    assert shown["disabled_at"]
    [failed] = org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}/deliveries?state=failed").json()["items"]
    assert failed["attempt_count"] == 1
    assert "410" in failed["failure_reason"]
    # Nothing more goes to it; redelivery and tests are refused until it is enabled again
    publish(stack, org.org_id, "contact.created", "ev_after")
    stack.drain(timeout=30)
    assert len(receiver.received) == 1
    redeliver = f"/orgs/c/webhook-endpoints/{endpoint['id']}/deliveries/{failed['id']}/redeliver"
    assert org.client.post(redeliver).status_code == 409
    assert org.client.post(f"/orgs/c/webhook-endpoints/{endpoint['id']}/test").status_code == 409
    # Re-enabled, it clears the reason, and the failed delivery can go again
    receiver.answer = lambda n: 200
    enabled = org.client.patch(f"/orgs/c/webhook-endpoints/{endpoint['id']}", json={"enabled": True}).json()
    assert (enabled["enabled"], enabled["disabled_reason"], enabled["disabled_at"]) == (True, None, None)
    assert org.client.post(redeliver).status_code == 202
    stack.drain(timeout=30)
    assert [r.event["id"] for r in receiver.received] == ["ev_gone", "ev_gone"]


def test_persistent_failure_disables_the_endpoint(
    stack: Any, org: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audience import container

    # Given the whole 24-hour schedule squeezed into about two seconds, and a receiver that always fails
    monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", "0.0002")
    container.reset()
    receiver.answer = lambda n: 503
    endpoint = add_endpoint(org, receiver)
    publish(stack, org.org_id, "contact.created", "ev_never")
    publish(stack, org.org_id, "contact.updated", "ev_never2")
    stack.drain(timeout=120)
    # Then the endpoint is disabled for failing a whole window without success, and nothing is pending
    shown = org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}").json()
    assert shown["enabled"] is False
    assert "with no success" in shown["disabled_reason"]
    items = org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}/deliveries").json()["items"]
    assert {d["state"] for d in items} == {"failed"}
    assert all(d["failure_reason"].startswith(("endpoint disabled", "gave up")) for d in items)
    assert max(d["attempt_count"] for d in items) > 5
    assert all(r.verified for r in receiver.received)


def test_another_orgs_endpoints_and_deliveries_answer_404(
    stack: Any, org: Any, other_org: Any, receiver: Receiver
) -> None:
    endpoint = add_endpoint(other_org, receiver)
    sent = other_org.client.post(f"/orgs/c/webhook-endpoints/{endpoint['id']}/test").json()
    stack.drain(timeout=30)
    base = f"/orgs/c/webhook-endpoints/{endpoint['id']}"
    delivery = f"{base}/deliveries/{sent['delivery_id']}"
    for method, path in [
        ("GET", base),
        ("PATCH", base),
        ("DELETE", base),
        ("POST", f"{base}/rotate-secret"),
        ("POST", f"{base}/test"),
        ("GET", f"{base}/deliveries"),
        ("GET", delivery),
        ("POST", f"{delivery}/redeliver"),
    ]:
        answer = org.client.request(method, path, json={"description": "mine"} if method == "PATCH" else None)
        assert answer.status_code == 404, (method, path, answer.text)
        theirs = f"/orgs/{other_org.org_id}/webhook-endpoints/{endpoint['id']}"
        assert org.client.request(method, path.replace(base, theirs), json={}).status_code == 404
    assert org.client.get("/orgs/c/webhook-endpoints").json()["items"] == []
    assert other_org.client.get(base).json()["description"] == ""
    assert len(receiver.received) == 1


def test_deleting_an_endpoint_stops_its_pending_deliveries(stack: Any, org: Any, receiver: Receiver) -> None:
    endpoint = add_endpoint(org, receiver)
    sent = org.client.post(f"/orgs/c/webhook-endpoints/{endpoint['id']}/test").json()
    assert org.client.delete(f"/orgs/c/webhook-endpoints/{endpoint['id']}").status_code == 204
    stack.drain(timeout=30)
    assert receiver.received == []
    assert org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}").status_code == 404
    assert (
        org.client.get(f"/orgs/c/webhook-endpoints/{endpoint['id']}/deliveries/{sent['delivery_id']}").status_code
        == 404
    )
