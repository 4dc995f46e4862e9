"""A provider call whose answer is lost (the connection closes after the platform took the message): the
sender sends again, and counts the recipient as a possible duplicate rather than leaving the second copy
unaccounted for."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.accounting_sends import GraphStandIn
from tests.channels import Tenant, connect_whatsapp, whatsapp_promo

PHONE_NUMBER_ID = "780000001"


@pytest.fixture
def stand_in(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphStandIn]:
    from audience import container

    graph = GraphStandIn()
    monkeypatch.setenv("GRAPH_API_URL", graph.url)
    container.reset()
    yield graph
    container.reset()
    graph.close()


def test_a_message_sent_again_after_a_lost_answer_is_a_counted_duplicate(
    stack: Any, org: Tenant, stand_in: GraphStandIn
) -> None:
    connection = connect_whatsapp(org, PHONE_NUMBER_ID, waba="880000001")
    phones = ["+6281300000001", "+6281300000002"]
    draft = whatsapp_promo(org, "Lost answers", connection["id"], phones)
    stack.drain()
    stand_in.lose_answers[PHONE_NUMBER_ID] = 1  # the first message is taken, its answer never arrives

    assert org.client.post(f"/orgs/c/broadcasts/{draft['id']}/schedule", json={}).status_code == 200
    stack.drain()

    copies = stand_in.copies(PHONE_NUMBER_ID)
    assert sorted(copies.values()) == [1, 2]  # one recipient got its message twice
    twice = next(to for to, n in copies.items() if n == 2)
    view = org.client.get(f"/orgs/c/broadcasts/{draft['id']}").json()
    rows = org.client.get(f"/orgs/c/broadcasts/{draft['id']}/recipients").json()["items"]
    contacts = {c["id"]: c["phone"] for c in org.client.get("/orgs/c/contacts").json()["items"]}
    flagged = [row for row in rows if row.get("possible_duplicate")]
    assert view["status"] == "SENT"
    assert view["stats"]["by_status"]["sent"] == 2
    assert view["stats"]["possible_duplicates"] == 1
    assert [contacts[row["contact_id"]].removeprefix("+") for row in flagged] == [twice]
    assert all(row["status"] == "SENT" for row in rows)
