"""The broadcasts API on the module's local stack: drafts (create, read, list, edit, duplicate, delete), the
validation of their content and audience, the status transitions, marketing runs sent through the Telegram
stand-in (stats, recipients, a contact's broadcasts), tenant isolation and the locking of segments."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.channels import BotApiStub, Tenant, connect_whatsapp, new_tenant
from tests.integration.broadcasts.conftest import telegram_connection, telegram_contacts, text_broadcast

STATUSES = ("pending", "sent", "delivered", "read", "failed", "skipped", "cancelled")


# -- helpers --------------------------------------------------------------------------------------------


def _url(org: Tenant, suffix: str = "") -> str:
    return f"/orgs/{org.org_id}/broadcasts{suffix}"


def _lenient(org: Tenant) -> TestClient:
    """A client of the org that answers a server error as the API would (500) instead of raising it: used
    where a broadcast must still be cleaned up (cancelled) before the answers are checked."""
    return TestClient(org.client.app, headers=dict(org.client.headers), raise_server_exceptions=False)


def _error(answer: Any, status: int) -> dict[str, Any]:
    """The error body of an answer that must have `status`."""
    assert answer.status_code == status, answer.text
    return answer.json()["error"]


def _fields(error: dict[str, Any]) -> list[str]:
    return [f["field"] for f in error.get("fields", [])]


def _create(org: Tenant, body: dict[str, Any]) -> Any:
    return org.client.post(_url(org), json=body)


def _telegram(connection_id: str, text: str = "Hi {{contact.first_name}}") -> dict[str, Any]:
    return {"channel": "telegram", "connection_id": connection_id, "text": {"text": text}}


def _in_an_hour() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _get(org: Tenant, broadcast_id: str) -> dict[str, Any]:
    answer = org.client.get(_url(org, f"/{broadcast_id}"))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _schedule(org: Tenant, broadcast_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = org.client.post(_url(org, f"/{broadcast_id}/schedule"), json={} if body is None else body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "SCHEDULED"
    return answer.json()


def _cancel(org: Tenant, broadcast_id: str) -> dict[str, Any]:
    answer = org.client.post(_url(org, f"/{broadcast_id}/cancel"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "CANCELLED"
    return answer.json()


def _all_recipients(org: Tenant, broadcast_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every recipient, page by page (each page checked for its size)."""
    found: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = org.client.get(_url(org, f"/{broadcast_id}/recipients"), params=query)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["items"]) <= params.get("take", 50)
        found.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("recipients never ended")


def _assert_consistent(stats: dict[str, Any]) -> None:
    assert set(stats["by_status"]) == set(STATUSES)
    assert sum(stats["by_status"].values()) == stats["total"]


def _static_segment(org: Tenant, name: str, contact_ids: Sequence[str] = ()) -> str:
    answer = org.client.post(f"/orgs/{org.org_id}/segments", json={"name": name, "type": "static"})
    assert answer.status_code == 201, answer.text
    segment_id = answer.json()["id"]
    if contact_ids:
        added = org.client.post(
            f"/orgs/{org.org_id}/segments/{segment_id}/contacts", json={"contact_ids": list(contact_ids)}
        )
        assert added.status_code == 200, added.text
    return segment_id


def _executions(stack: Any, broadcast_id: str) -> list[dict[str, Any]]:
    sfn = stack.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=stack.resources["BroadcastStateMachine"])["executions"]
    return [e for e in listed if e["name"].startswith(f"{broadcast_id}-")]


def _until_planned(stack: Any, org: Tenant, broadcast_id: str) -> None:
    """Wait for the run's execution to end (planned, batches on SendQueue, none sent: senders run in drain)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        runs = _executions(stack, broadcast_id)
        if runs and all(e["status"] != "RUNNING" for e in runs):
            assert {e["status"] for e in runs} == {"SUCCEEDED"}
            return
        time.sleep(0.02)
    raise AssertionError(f"the run of {broadcast_id} did not end: {_get(org, broadcast_id)['status']}")


@dataclass
class Sent:
    """A marketing broadcast sent to three Telegram contacts (shared by read-only tests)."""

    org: Tenant
    token: str
    contacts: list[str]
    broadcast: dict[str, Any]


@pytest.fixture(scope="module")
def sent(app: Any, stack: Any, bot_api: BotApiStub) -> Sent:
    org = new_tenant(app, "Sent Co", "ID")
    connection_id, token = telegram_connection(org)
    contacts = telegram_contacts(org, 3)
    broadcast = text_broadcast(org, connection_id, audience_all=True)
    _schedule(org, broadcast["id"])
    stack.drain()
    return Sent(org, token, contacts, _get(org, broadcast["id"]))


# -- create, read, list ---------------------------------------------------------------------------------


def test_create_answers_a_draft_with_its_location_and_content(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    body = {
        "type": "marketing",
        "name": "  Spring sale  ",
        "channels": [_telegram(connection_id, "Hi {{contact.first_name}}, use {{coupon}}")],
        "properties": [{"name": "coupon", "default": "SPRING10"}],
        "audience_all": True,
    }
    answer = org.client.post("/orgs/c/broadcasts", json=body)

    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert answer.headers["Location"] == f"/orgs/{org.org_id}/broadcasts/{created['id']}"
    assert created["id"].startswith("bc_")
    assert (created["type"], created["status"], created["name"], created["version"]) == (
        "marketing",
        "DRAFT",
        "Spring sale",
        1,
    )
    assert created["channels"] == body["channels"]
    assert created["properties"] == body["properties"]
    assert created["audience_all"] is True
    assert created["segment_ids"] == []
    assert created["rate_limit"] is None

    fetched = _get(org, created["id"])
    assert {k: v for k, v in fetched.items() if k != "stats"} == {k: v for k, v in created.items() if k != "stats"}
    assert fetched["stats"]["total"] == 0
    assert fetched["stats"]["by_status"] == dict.fromkeys(STATUSES, 0)
    assert fetched["stats"]["by_channel"] == {}
    assert fetched["stats"]["sent_pct"] == 0.0


def test_transactional_create_keeps_its_rate_limit_and_has_no_audience(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    answer = _create(
        org,
        {
            "type": "transactional",
            "name": "OTP",
            "channels": [_telegram(connection_id, "Your code is {{code}}")],
            "properties": [{"name": "code"}],
            "rate_limit": {"limit": 5, "period_seconds": 10},
        },
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert (created["type"], created["status"]) == ("transactional", "DRAFT")
    assert created["rate_limit"] == {"limit": 5, "period_seconds": 10}
    assert created["segment_ids"] is None
    assert created["audience_all"] is None


def test_list_is_newest_first_in_pages(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    made = [text_broadcast(org, connection_id, name=f"B{n}")["id"] for n in range(5)]

    first = org.client.get(_url(org), params={"take": 2})
    assert first.status_code == 200, first.text
    pages = [first.json()]
    while pages[-1]["next_cursor"]:
        following = org.client.get(_url(org), params={"take": 2, "cursor": pages[-1]["next_cursor"]})
        assert following.status_code == 200, following.text
        pages.append(following.json())

    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    assert [i["id"] for p in pages for i in p["items"]] == list(reversed(made))
    item = pages[0]["items"][0]
    assert (item["name"], item["status"], item["type"]) == ("B4", "DRAFT", "marketing")
    assert item["stats"] is None  # the list carries summaries only
    assert item["channels"] is None


def test_list_refuses_a_cursor_it_did_not_hand_out(org: Tenant) -> None:
    for garbage in ("garbage", "eyJrIjogIngifQ"):  # not base64 JSON; {"k": "x"}
        error = _error(org.client.get(_url(org), params={"cursor": garbage}), 422)
        assert _fields(error) == ["cursor"]


def test_list_holds_only_the_orgs_own_broadcasts(org: Tenant, other_org: Tenant) -> None:
    connection_id, _ = telegram_connection(other_org)
    text_broadcast(other_org, connection_id)
    answer = org.client.get(_url(org))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"items": [], "next_cursor": None}


# -- validation -----------------------------------------------------------------------------------------


def test_a_connection_of_another_org_is_refused(org: Tenant, other_org: Tenant) -> None:
    theirs, _ = telegram_connection(other_org)
    ours, _ = telegram_connection(org)
    body = {"type": "marketing", "name": "X", "channels": [_telegram(theirs)]}
    error = _error(_create(org, body), 422)
    assert _fields(error) == ["channels[0].connection_id"]
    assert "not a connection of this org" in error["message"]

    # Second position, and an id that exists nowhere.
    body["channels"] = [
        _telegram(ours),
        {"channel": "sms", "connection_id": "ch_" + "0" * 26, "text": {"text": "Hi"}},
    ]
    error = _error(_create(org, body), 422)
    assert _fields(error) == ["channels[1].connection_id"]
    assert org.client.get(_url(org)).json()["items"] == []


def test_a_connection_of_another_platform_is_refused(org: Tenant) -> None:
    telegram, _ = telegram_connection(org)
    whatsapp = connect_whatsapp(org, "1098765432101")["id"]

    error = _error(_create(org, {"type": "marketing", "name": "X", "channels": [_telegram(whatsapp)]}), 422)
    assert _fields(error) == ["channels[0].connection_id"]
    assert "whatsapp connection" in error["message"]

    sms = {"channel": "sms", "connection_id": telegram, "text": {"text": "Hi"}}
    error = _error(_create(org, {"type": "marketing", "name": "X", "channels": [sms]}), 422)
    assert _fields(error) == ["channels[0].connection_id"]
    assert "telegram connection" in error["message"]
    assert "sms" in error["message"]


def test_a_placeholder_must_name_a_declared_property_or_a_contact_value(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    body = {"type": "marketing", "name": "X", "channels": [_telegram(connection_id, "Use {{coupon}}")]}
    error = _error(_create(org, body), 422)
    assert _fields(error) == ["channels[0].text.text"]
    assert "{{coupon}}" in error["message"]

    body["channels"] = [_telegram(connection_id, "Hi {{contact.fields.tier}}, use {{ coupon }}")]
    assert _create(org, {**body, "properties": [{"name": "coupon"}]}).status_code == 201


def test_a_channel_given_twice_is_refused(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    body = {"type": "marketing", "name": "X", "channels": [_telegram(connection_id), _telegram(connection_id, "Yo")]}
    error = _error(_create(org, body), 422)
    assert _fields(error) == ["channels[1].channel"]


def test_segments_must_be_the_orgs_own(org: Tenant, other_org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    theirs = _static_segment(other_org, "Theirs")
    body = {"type": "marketing", "name": "X", "channels": [_telegram(connection_id)], "segment_ids": [theirs]}
    error = _error(_create(org, body), 422)
    assert _fields(error) == ["segment_ids"]
    assert error["fields"][0]["value"] == theirs

    ours = _static_segment(org, "Ours")
    created = _create(org, {**body, "segment_ids": [ours, ours]})
    assert created.status_code == 201, created.text
    assert created.json()["segment_ids"] == [ours]


def test_audience_and_rate_limit_belong_to_their_type(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    segment_id = _static_segment(org, "S")
    channels = [_telegram(connection_id)]

    rate_limit = {"type": "marketing", "name": "X", "channels": channels, "rate_limit": {"limit": 1}}
    assert _fields(_error(_create(org, rate_limit), 422)) == ["rate_limit"]

    segments = {"type": "transactional", "name": "X", "channels": channels, "segment_ids": [segment_id]}
    assert _fields(_error(_create(org, segments), 422)) == ["segment_ids"]
    everyone = {"type": "transactional", "name": "X", "channels": channels, "audience_all": True}
    assert _fields(_error(_create(org, everyone), 422)) == ["segment_ids"]

    both = {"type": "marketing", "name": "X", "channels": channels, "segment_ids": [segment_id], "audience_all": True}
    assert _fields(_error(_create(org, both), 422)) == ["audience_all"]
    assert org.client.get(_url(org)).json()["items"] == []


# -- edit, duplicate, delete ----------------------------------------------------------------------------


def test_a_draft_is_edited_and_validated_as_a_whole(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    draft = text_broadcast(
        org,
        connection_id,
        channels=[_telegram(connection_id, "Use {{coupon}}")],
        properties=[{"name": "coupon", "default": "X"}],
    )
    url = _url(org, f"/{draft['id']}")

    edited = org.client.patch(url, json={"name": "Summer sale", "audience_all": True})
    assert edited.status_code == 200, edited.text
    assert (edited.json()["name"], edited.json()["audience_all"], edited.json()["version"]) == ("Summer sale", True, 2)
    assert edited.json()["channels"] == draft["channels"]  # what the edit left out stays

    # Dropping the property the template still uses is refused, and nothing changes.
    error = _error(org.client.patch(url, json={"properties": []}), 422)
    assert _fields(error) == ["channels[0].text.text"]
    assert _fields(_error(org.client.patch(url, json={"type": "transactional"}), 422)) == ["type"]
    assert _fields(_error(org.client.patch(url, json={"rate_limit": {"limit": 3}}), 422)) == ["rate_limit"]
    fetched = _get(org, draft["id"])
    assert (fetched["name"], fetched["type"], fetched["version"]) == ("Summer sale", "marketing", 2)
    assert fetched["properties"] == [{"name": "coupon", "default": "X"}]


def test_a_scheduled_broadcast_refuses_edits_and_a_second_schedule(stack: Any, org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    draft = text_broadcast(org, connection_id, audience_all=True)
    url = _url(org, f"/{draft['id']}")
    _schedule(org, draft["id"], {"at": _in_an_hour()})
    client = _lenient(org)
    edit = client.patch(url, json={"name": "Changed"})
    again = client.post(f"{url}/schedule", json={})
    fetched = _get(org, draft["id"])
    _cancel(org, draft["id"])  # before asserting: no execution may be left waiting for the other tests
    stack.drain(timeout=30)

    assert (fetched["name"], fetched["status"], fetched["channels"]) == ("Spring sale", "SCHEDULED", draft["channels"])
    error = _error(edit, 409)
    assert "only a DRAFT broadcast can be edited" in error["message"]
    assert "duplicate" in error["message"]
    assert "already SCHEDULED" in _error(again, 409)["message"]


def test_duplicate_makes_a_new_draft_with_the_same_content(stack: Any, org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    segment_id = _static_segment(org, "S")
    source = text_broadcast(
        org,
        connection_id,
        channels=[_telegram(connection_id, "Use {{coupon}}")],
        properties=[{"name": "coupon", "default": "X"}],
        segment_ids=[segment_id],
    )
    _schedule(org, source["id"], {"at": _in_an_hour()})  # any status may be duplicated

    answer = org.client.post(_url(org, f"/{source['id']}/duplicate"))
    assert answer.status_code == 201, answer.text
    copy = answer.json()
    assert answer.headers["Location"] == f"/orgs/{org.org_id}/broadcasts/{copy['id']}"
    assert copy["id"] != source["id"]
    assert (copy["name"], copy["status"], copy["type"], copy["version"]) == (
        "Spring sale (Copy)",
        "DRAFT",
        "marketing",
        1,
    )
    for key in ("channels", "properties", "segment_ids", "audience_all"):
        assert copy[key] == source[key], key
    assert copy["scheduled_at"] is None
    assert copy["stats"]["total"] == 0
    assert _get(org, source["id"])["status"] == "SCHEDULED"
    _cancel(org, source["id"])
    stack.drain(timeout=30)


def test_delete_a_draft(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    draft = text_broadcast(org, connection_id)
    url = _url(org, f"/{draft['id']}")

    assert org.client.delete(url).status_code == 204
    assert _error(org.client.get(url), 404)["code"] == "not_found"
    assert _error(org.client.get(f"{url}/recipients"), 404)["code"] == "not_found"
    assert _error(org.client.delete(url), 404)["code"] == "not_found"
    assert org.client.get(_url(org)).json()["items"] == []


def test_delete_a_sent_broadcast_removes_its_recipients(stack: Any, org: Tenant, bot_api: BotApiStub) -> None:
    connection_id, token = telegram_connection(org)
    contacts = telegram_contacts(org, 2)
    broadcast = text_broadcast(org, connection_id, audience_all=True)
    _schedule(org, broadcast["id"])
    stack.drain()
    assert _get(org, broadcast["id"])["status"] == "SENT"
    assert len(_all_recipients(org, broadcast["id"])) == 2

    assert org.client.delete(_url(org, f"/{broadcast['id']}")).status_code == 204
    assert _error(org.client.get(_url(org, f"/{broadcast['id']}")), 404)["code"] == "not_found"
    assert _error(org.client.get(_url(org, f"/{broadcast['id']}/recipients")), 404)["code"] == "not_found"
    answer = org.client.get(f"/orgs/{org.org_id}/contacts/{contacts[0]}/broadcasts")
    assert answer.status_code == 200, answer.text
    assert answer.json() == []
    assert len(bot_api.sent(token)) == 2  # what was sent stays sent


def _sending(stack: Any, org: Tenant, contacts: int) -> tuple[str, str]:
    """A broadcast to every contact whose run is planned but not sent (senders run in drain): (id, token)."""
    connection_id, token = telegram_connection(org)
    telegram_contacts(org, contacts)
    broadcast = text_broadcast(org, connection_id, audience_all=True)
    _schedule(org, broadcast["id"])
    _until_planned(stack, org, broadcast["id"])
    assert _get(org, broadcast["id"])["status"] == "SENDING"
    return broadcast["id"], token


def test_a_cancel_while_sending_stops_it_and_a_new_schedule_resumes_it(
    stack: Any, org: Tenant, bot_api: BotApiStub
) -> None:
    broadcast_id, token = _sending(stack, org, 3)

    _cancel(org, broadcast_id)
    stack.drain()
    assert bot_api.sent(token) == []
    cancelled = _get(org, broadcast_id)
    assert cancelled["status"] == "CANCELLED"
    assert (cancelled["stats"]["total"], cancelled["stats"]["cancelled"], cancelled["stats"]["sent"]) == (3, 3, 0)
    _assert_consistent(cancelled["stats"])
    assert {r["status"] for r in _all_recipients(org, broadcast_id)} == {"CANCELLED"}
    assert len(_all_recipients(org, broadcast_id, status="CANCELLED", take=2)) == 3

    # Scheduled again, the run sends to the recipients the cancel held back, once each.
    _schedule(org, broadcast_id)
    stack.drain()
    resumed = _get(org, broadcast_id)
    assert resumed["status"] == "SENT"
    assert (resumed["stats"]["total"], resumed["stats"]["sent"], resumed["stats"]["cancelled"]) == (3, 3, 0)
    _assert_consistent(resumed["stats"])
    assert sorted(m["chat_id"] for m in bot_api.sent(token)) == [1, 2, 3]
    assert org.client.delete(_url(org, f"/{broadcast_id}")).status_code == 204


def test_a_sending_broadcast_cannot_be_deleted_edited_or_scheduled(stack: Any, org: Tenant) -> None:
    broadcast_id, _ = _sending(stack, org, 1)
    url = _url(org, f"/{broadcast_id}")
    client = _lenient(org)
    delete = client.delete(url)
    edit = client.patch(url, json={"name": "Changed"})
    again = client.post(f"{url}/schedule", json={})
    stack.drain()  # before asserting: the run ends
    done = _get(org, broadcast_id)

    assert (done["status"], done["name"], done["stats"]["sent"]) == ("SENT", "Spring sale", 1)
    error = _error(delete, 409)
    assert "SENDING" in error["message"]
    assert "cancel" in error["message"]
    assert "duplicate" in _error(edit, 409)["message"]
    assert "SENDING" in _error(again, 409)["message"]


# -- transitions ----------------------------------------------------------------------------------------


def test_a_marketing_draft_cannot_be_activated_paused_or_cancelled(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    draft = text_broadcast(org, connection_id, audience_all=True)
    client = _lenient(org)
    activate, pause, cancel = (client.post(_url(org, f"/{draft['id']}/{a}")) for a in ("activate", "pause", "cancel"))
    assert _get(org, draft["id"])["status"] == "DRAFT"

    assert "marketing broadcasts are scheduled, not activated" in _error(activate, 409)["message"]
    assert "marketing broadcasts are scheduled, not paused" in _error(pause, 409)["message"]
    assert "nothing to cancel" in _error(cancel, 409)["message"]


def _transactional(org: Tenant) -> str:
    connection_id, _ = telegram_connection(org)
    answer = _create(org, {"type": "transactional", "name": "OTP", "channels": [_telegram(connection_id)]})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def test_a_transactional_broadcast_is_activated_and_paused(org: Tenant) -> None:
    url = _url(org, f"/{_transactional(org)}")
    for action, status in (("activate", "ACTIVE"), ("pause", "PAUSED"), ("activate", "ACTIVE")):
        answer = org.client.post(f"{url}/{action}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == status
    assert org.client.get(url).json()["status"] == "ACTIVE"


def test_a_transactional_broadcast_refuses_what_does_not_apply(org: Tenant) -> None:
    url = _url(org, f"/{_transactional(org)}")
    client = _lenient(org)
    schedule = client.post(f"{url}/schedule", json={})
    cancel = client.post(f"{url}/cancel")
    pause = client.post(f"{url}/pause")
    assert org.client.post(f"{url}/activate").status_code == 200
    activate = client.post(f"{url}/activate")
    edit = client.patch(url, json={"name": "Changed"})
    assert org.client.get(url).json()["status"] == "ACTIVE"

    assert "transactional broadcasts are activated, not scheduled" in _error(schedule, 409)["message"]
    assert "pause it to stop sending" in _error(cancel, 409)["message"]
    assert "a DRAFT broadcast is not active, so there is nothing to pause" in _error(pause, 409)["message"]
    assert "already ACTIVE" in _error(activate, 409)["message"]
    assert _error(edit, 409)["code"] == "conflict"


def test_schedule_needs_an_audience(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    draft = text_broadcast(org, connection_id)
    error = _error(org.client.post(_url(org, f"/{draft['id']}/schedule"), json={}), 422)
    assert _fields(error) == ["segment_ids"]
    assert _get(org, draft["id"])["status"] == "DRAFT"


@pytest.mark.parametrize(
    "at",
    ["tomorrow", "", "2030-01-01T09:00:00", "2030-13-01T09:00:00Z", "2999-01-01T09:00:00Z"],
    ids=["words", "empty", "no-zone", "no-such-month", "beyond-a-year"],
)
def test_schedule_refuses_a_bad_time(stack: Any, org: Tenant, at: str) -> None:
    connection_id, _ = telegram_connection(org)
    draft = text_broadcast(org, connection_id, audience_all=True)
    error = _error(org.client.post(_url(org, f"/{draft['id']}/schedule"), json={"at": at}), 422)
    assert _fields(error) == ["at"]
    assert _get(org, draft["id"])["status"] == "DRAFT"
    assert _executions(stack, draft["id"]) == []


def test_schedule_later_then_cancel_sends_nothing(stack: Any, org: Tenant, bot_api: BotApiStub) -> None:
    connection_id, token = telegram_connection(org)
    telegram_contacts(org, 2)
    draft = text_broadcast(org, connection_id, audience_all=True)
    at = _in_an_hour()

    scheduled = _schedule(org, draft["id"], {"at": at})
    assert scheduled["scheduled_at"] == at.replace("Z", ".000Z")

    cancelled = _cancel(org, draft["id"])
    assert cancelled["cancelled_at"] is not None
    stack.drain(timeout=30)  # returns: no execution is left waiting
    assert [e["status"] for e in _executions(stack, draft["id"])] == ["ABORTED"]
    assert bot_api.sent(token) == []
    assert _get(org, draft["id"])["status"] == "CANCELLED"
    assert _all_recipients(org, draft["id"]) == []
    again = _error(org.client.post(_url(org, f"/{draft['id']}/cancel")), 409)
    assert "already CANCELLED" in again["message"]
    assert (again["status"], again["action"]) == ("CANCELLED", "cancel")


# -- a sent marketing broadcast -------------------------------------------------------------------------


def test_a_marketing_broadcast_reaches_every_contact(sent: Sent, bot_api: BotApiStub) -> None:
    broadcast = sent.broadcast
    assert broadcast["status"] == "SENT"
    assert broadcast["finished_at"] is not None
    stats = broadcast["stats"]
    assert (stats["total"], stats["sent"], stats["failed"], stats["by_status"]["pending"]) == (3, 3, 0, 0)
    assert stats["by_status"]["sent"] == 3
    assert stats["sent_pct"] == 100.0
    assert stats["by_channel"] == {"telegram": 3}
    _assert_consistent(stats)
    messages = sorted(bot_api.sent(sent.token), key=lambda m: m["chat_id"])
    assert [(m["chat_id"], m["text"]) for m in messages] == [(1, "Hi P1"), (2, "Hi P2"), (3, "Hi P3")]


def test_a_sent_broadcast_is_final(sent: Sent) -> None:
    url = _url(sent.org, f"/{sent.broadcast['id']}")
    client = _lenient(sent.org)
    schedule, cancel = client.post(f"{url}/schedule", json={}), client.post(f"{url}/cancel")
    edit = client.patch(url, json={"name": "Again"})
    assert _get(sent.org, sent.broadcast["id"])["version"] == sent.broadcast["version"]

    error = _error(schedule, 409)
    assert "a SENT broadcast cannot be scheduled again: duplicate it to send it again" in error["message"]
    assert "gone out" in _error(cancel, 409)["message"]
    assert "duplicate" in _error(edit, 409)["message"]


def test_recipients_are_listed_by_status_in_pages(sent: Sent) -> None:
    org, broadcast_id = sent.org, sent.broadcast["id"]
    first = org.client.get(_url(org, f"/{broadcast_id}/recipients"), params={"take": 2})
    assert first.status_code == 200, first.text
    assert len(first.json()["items"]) == 2
    assert first.json()["next_cursor"]

    every = _all_recipients(org, broadcast_id, take=2)
    assert sorted(r["contact_id"] for r in every) == sorted(sent.contacts)
    row = every[0]
    assert (row["broadcast_id"], row["channel"], row["status"]) == (broadcast_id, "telegram", "SENT")
    assert row["id"] == f"{row['contact_id']}#telegram"
    assert row["provider_message_id"]
    assert row["sent_at"] is not None

    sent_rows = _all_recipients(org, broadcast_id, status="SENT", take=2)
    assert sorted(r["contact_id"] for r in sent_rows) == sorted(sent.contacts)
    assert _all_recipients(org, broadcast_id, status="PENDING", take=2) == []
    assert _all_recipients(org, broadcast_id, status="FAILED") == []

    lower_case = org.client.get(_url(org, f"/{broadcast_id}/recipients"), params={"status": "sent"})
    assert _fields(_error(lower_case, 422)) == ["status"]
    garbage = org.client.get(_url(org, f"/{broadcast_id}/recipients"), params={"cursor": "garbage"})
    assert _fields(_error(garbage, 422)) == ["cursor"]


def test_a_contact_lists_the_broadcasts_it_received(sent: Sent, other_org: Tenant) -> None:
    org, contact_id = sent.org, sent.contacts[1]
    answer = org.client.get(f"/orgs/c/contacts/{contact_id}/broadcasts")
    assert answer.status_code == 200, answer.text
    rows = answer.json()
    assert [(r["broadcast_id"], r["contact_id"], r["channel"], r["status"]) for r in rows] == [
        (sent.broadcast["id"], contact_id, "telegram", "SENT")
    ]

    newcomer = telegram_contacts(org, 1, start=99)[0]
    assert org.client.get(f"/orgs/c/contacts/{newcomer}/broadcasts").json() == []
    assert _error(other_org.client.get(f"/orgs/c/contacts/{contact_id}/broadcasts"), 404)["code"] == "not_found"
    assert _error(org.client.get("/orgs/c/contacts/nope/broadcasts"), 404)["code"] == "not_found"


# -- isolation and ids ----------------------------------------------------------------------------------

ROUTES = [
    ("get", ""),
    ("patch", ""),
    ("delete", ""),
    ("post", "/duplicate"),
    ("post", "/schedule"),
    ("post", "/cancel"),
    ("post", "/activate"),
    ("post", "/pause"),
    ("post", "/send"),
    ("get", "/recipients"),
]


def _call(org: Tenant, method: str, path: str) -> Any:
    if method in ("get", "delete"):
        return getattr(org.client, method)(path)
    return getattr(org.client, method)(path, json={"name": "Mine"} if method == "patch" else {})


def test_another_orgs_broadcast_is_not_found_on_every_route(org: Tenant, other_org: Tenant) -> None:
    connection_id, _ = telegram_connection(other_org)
    theirs = text_broadcast(other_org, connection_id, audience_all=True)
    for method, suffix in ROUTES:
        for prefix in (f"/orgs/c/broadcasts/{theirs['id']}", _url(org, f"/{theirs['id']}")):
            answer = _call(org, method, prefix + suffix)
            assert _error(answer, 404)["code"] == "not_found", (method, suffix)
        # Naming the other org in the path does not help either.
        answer = _call(org, method, f"/orgs/{other_org.org_id}/broadcasts/{theirs['id']}{suffix}")
        assert answer.status_code == 404, (method, suffix)

    kept = _get(other_org, theirs["id"])
    assert (kept["name"], kept["status"], kept["version"]) == ("Spring sale", "DRAFT", 1)
    assert other_org.client.get(_url(other_org)).json()["items"][0]["id"] == theirs["id"]
    assert org.client.get(_url(org)).json()["items"] == []


@pytest.mark.parametrize("bad_id", ["nope", "bc_123", "BC_" + "0" * 26, "bc_" + "0" * 25 + "U", "ct_" + "0" * 26])
def test_a_malformed_broadcast_id_is_not_found(org: Tenant, bad_id: str) -> None:
    for method, suffix in ROUTES:
        answer = _call(org, method, _url(org, f"/{bad_id}{suffix}"))
        error = _error(answer, 404)
        assert error["code"] == "not_found", (method, suffix)


# -- segments -------------------------------------------------------------------------------------------


def test_a_scheduled_broadcast_locks_its_segment_until_cancelled(stack: Any, org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    segment_id = _static_segment(org, "VIP", telegram_contacts(org, 1))
    draft = text_broadcast(org, connection_id, segment_ids=[segment_id])
    segment_url = f"/orgs/{org.org_id}/segments/{segment_id}"

    _schedule(org, draft["id"], {"at": _in_an_hour()})
    error = _error(org.client.delete(segment_url), 409)
    assert draft["id"] in error["message"]
    assert error["broadcasts"] == [draft["id"]]

    _cancel(org, draft["id"])
    stack.drain(timeout=30)
    assert org.client.delete(segment_url).status_code == 204


def test_a_deleted_scheduled_broadcast_stops_and_frees_its_segment(stack: Any, org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    segment_id = _static_segment(org, "VIP")
    draft = text_broadcast(org, connection_id, segment_ids=[segment_id])
    _schedule(org, draft["id"], {"at": _in_an_hour()})

    assert org.client.delete(_url(org, f"/{draft['id']}")).status_code == 204
    stack.drain(timeout=30)
    assert [e["status"] for e in _executions(stack, draft["id"])] == ["ABORTED"]
    assert org.client.delete(f"/orgs/{org.org_id}/segments/{segment_id}").status_code == 204


def test_a_segment_broadcast_reaches_its_members_only_and_then_frees_the_segment(
    stack: Any, org: Tenant, bot_api: BotApiStub
) -> None:
    connection_id, token = telegram_connection(org)
    contacts = telegram_contacts(org, 3)
    segment_id = _static_segment(org, "Two", contacts[:2])
    stack.drain()
    draft = text_broadcast(org, connection_id, segment_ids=[segment_id])

    _schedule(org, draft["id"])
    stack.drain()
    done = _get(org, draft["id"])
    assert done["status"] == "SENT"
    assert (done["stats"]["total"], done["stats"]["sent"]) == (2, 2)
    assert sorted(m["chat_id"] for m in bot_api.sent(token)) == [1, 2]
    assert org.client.get(f"/orgs/c/contacts/{contacts[2]}/broadcasts").json() == []
    assert org.client.delete(f"/orgs/{org.org_id}/segments/{segment_id}").status_code == 204


def test_a_refused_schedule_leaves_no_segment_locked(stack: Any, org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    kept, dropped = _static_segment(org, "Kept"), _static_segment(org, "Dropped")
    draft = text_broadcast(org, connection_id, segment_ids=[kept, dropped])
    assert org.client.delete(f"/orgs/{org.org_id}/segments/{dropped}").status_code == 204
    stack.drain()

    refused = org.client.post(_url(org, f"/{draft['id']}/schedule"), json={})
    assert refused.status_code == 422, refused.text
    assert _get(org, draft["id"])["status"] == "DRAFT"
    assert org.client.delete(f"/orgs/{org.org_id}/segments/{kept}").status_code == 204


def test_scheduling_with_a_deleted_segment_refuses_its_segment_ids(stack: Any, org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    dropped = _static_segment(org, "Dropped")
    draft = text_broadcast(org, connection_id, segment_ids=[dropped])
    assert org.client.delete(f"/orgs/{org.org_id}/segments/{dropped}").status_code == 204
    stack.drain()

    refused = org.client.post(_url(org, f"/{draft['id']}/schedule"), json={})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["fields"][0] == {
        "field": "segment_ids",
        "value": dropped,
        "message": "was deleted since the broadcast was written: edit its audience",
    }
    assert _get(org, draft["id"])["status"] == "DRAFT"
