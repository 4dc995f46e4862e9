"""Recipients filtered by status: every match is found by following cursors, each page reading a bounded
number of rows, however rare the status."""

from __future__ import annotations

from typing import Any

import pytest

from tests.channels import BotApiStub
from tests.integration.broadcasts.conftest import telegram_connection, telegram_contacts, text_broadcast


def _all_pages(org: Any, broadcast_id: str, **params: Any) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = org.client.get(f"/orgs/c/broadcasts/{broadcast_id}/recipients", params=query)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json()["items"])
        cursor = answer.json()["next_cursor"]
        if not cursor:
            return pages


def test_a_rare_status_is_found_page_by_page_with_bounded_reads(
    stack: Any, org: Any, bot_api: BotApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audience.broadcasts import repository

    connection, _ = telegram_connection(org)
    telegram_contacts(org, 12, start=300)
    bot_api.blocked.update({"305", "310"})
    broadcast = text_broadcast(org, connection, audience_all=True)
    assert org.client.post(f"/orgs/c/broadcasts/{broadcast['id']}/schedule", json={}).status_code == 200
    stack.drain()

    everyone = [row for page in _all_pages(org, broadcast["id"], take=5) for row in page]
    assert len(everyone) == 12
    assert len({row["id"] for row in everyone}) == 12

    monkeypatch.setattr(repository, "MAX_SCANNED", 2)
    pages = _all_pages(org, broadcast["id"], status="FAILED", take=5)
    failed = [row for page in pages for row in page]
    assert sorted(row["id"].split("#")[0] for row in failed) == sorted(
        row["contact_id"] for row in everyone if row["status"] == "FAILED"
    )
    assert len(failed) == 2
    assert len(pages) > 2  # two rows read per page at most: the search went on over several pages
    assert all(len(page) <= 5 for page in pages)
