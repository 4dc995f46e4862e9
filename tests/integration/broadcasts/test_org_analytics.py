"""Org analytics (`GET /orgs/{org}/analytics`): contacts by status and channel, growth by month, broadcast
recipients over time and the largest segments, all from the counters the writes keep."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.channels import BotApiStub, Tenant
from tests.integration.broadcasts.conftest import telegram_connection, telegram_contacts, text_broadcast
from tests.integration.broadcasts.test_marketing_send import _schedule, _static_segment
from tests.integration.broadcasts.test_transactional_send import send, transactional


def _analytics(org: Tenant, expected: int = 200, **params: Any) -> Any:
    answer = org.client.get("/orgs/c/analytics", params=params)
    assert answer.status_code == expected, answer.text
    return answer.json()


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _month(months_back: int = 0) -> str:
    day = datetime.now(UTC).date().replace(day=1)
    for _ in range(months_back):
        day = (day - timedelta(days=1)).replace(day=1)
    return day.isoformat()[:7]


def test_contacts_by_status_and_channel_and_their_growth_by_month(org: Tenant) -> None:
    kept = telegram_contacts(org, 3)
    org.client.post("/orgs/c/contacts", json={"email": "ann@example.com"}).raise_for_status()
    org.client.post("/orgs/c/contacts", json={"email": "bob@example.com", "status": "UNSUBSCRIBED"}).raise_for_status()
    assert org.client.delete(f"/orgs/c/contacts/{kept[0]}").status_code == 204

    first = f"{_month(2)}-01"
    view = _analytics(org, **{"from": first})
    assert view["from"] == first
    assert view["to"] == _today()
    assert view["contacts"]["total"] == 4
    assert view["contacts"]["by_status"] == {"subscribed": 3, "unsubscribed": 1, "blocked": 0}
    assert view["contacts"]["by_channel"]["telegram"] == 2
    assert sum(view["contacts"]["by_channel"].values()) == 2  # an email address alone is not a channel
    # Three months; the deleted contact left the month it was created in, so the months add up to the total.
    assert view["contact_growth"] == [
        {"month": _month(2), "created": 0, "total": 0},
        {"month": _month(1), "created": 0, "total": 0},
        {"month": _month(), "created": 4, "total": 4},
    ]
    # A range that ended before this month: the total at its end leaves out what was created since.
    earlier = _analytics(org, **{"from": f"{_month(2)}-01", "to": f"{_month(1)}-01"})
    assert [g["total"] for g in earlier["contact_growth"]] == [0, 0]


def test_broadcast_recipients_per_day_by_outcome_type_and_channel(stack: Any, bot_api: BotApiStub, org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    telegram_contacts(org, 3, start=1)
    bot_api.blocked.add("3")  # chat 3 has blocked the bot: that send fails
    marketing = text_broadcast(org, connection_id, audience_all=True)
    _schedule(org, marketing["id"])
    stack.drain()
    otp = transactional(org, connection_id)
    assert send(org, otp).status_code == 200
    assert send(org, otp, contact_channel_id="telegram:2").status_code == 200

    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    view = _analytics(org, **{"from": yesterday})
    assert [row["period"] for row in view["broadcast_recipients"]] == [yesterday, _today()]
    before, today = view["broadcast_recipients"]
    assert before["recipients"] == 0
    assert before["sent_by_channel"] == {}
    assert today == {
        "period": _today(),
        "recipients": 5,
        "sent": 4,
        "failed": 1,
        "skipped": 0,
        "skipped_by_reason": {},
        "cancelled": 0,
        "marketing": 3,
        "transactional": 2,
        "sent_by_channel": {"telegram": 4},
    }
    # By month: the same counts in one bucket.
    monthly = _analytics(org, interval="month")
    assert sum(r["recipients"] for r in monthly["broadcast_recipients"]) == 5
    assert monthly["broadcast_recipients"][-1]["period"] == _month()

    # Every batch delivered again is tallied once: the day's figures do not move.
    from audience import container

    repo = container.broadcasts_repository()
    for broadcast_id in (marketing["id"], otp):
        for planned in repo.iter_batches(org.org_id, broadcast_id, "Q#"):
            container.broadcast_sender().process(json.loads(planned["message"]))
    assert _analytics(org, **{"from": yesterday})["broadcast_recipients"][1] == today


def test_the_largest_segments_first(org: Tenant) -> None:
    contacts = telegram_contacts(org, 4)
    small = _static_segment(org, "Small", contacts[:1])
    large = _static_segment(org, "Large", contacts[:3])
    empty = org.client.post("/orgs/c/segments", json={"name": "Empty", "type": "static"}).json()["id"]
    view = _analytics(org)
    assert [(s["id"], s["name"], s["contacts"]) for s in view["top_segments"]] == [
        (large, "Large", 3),
        (small, "Small", 1),
        (empty, "Empty", 0),
    ]


def test_bad_ranges_are_422_naming_the_parameter(org: Tenant) -> None:
    assert "interval" in str(_analytics(org, 422, interval="week"))
    after = _analytics(org, 422, **{"from": "2026-02-01", "to": "2026-01-01"})
    assert "from" in str(after)
    assert "date" in str(_analytics(org, 422, to="yesterday"))
    assert "731" in str(_analytics(org, 422, **{"from": "2020-01-01", "to": "2026-01-01"}))
