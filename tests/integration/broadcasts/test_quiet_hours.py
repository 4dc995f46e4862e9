"""Quiet hours: a marketing broadcast holds each recipient while it is quiet hours in the recipient's time
zone (from the phone's country and area; the broadcast's zone when the phone does not tell), sends it once
the window opens, and ends SENT only then, with counts that add up."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.stack import DrainTimeoutError
from tests.channels import BotApiStub, Tenant
from tests.integration.broadcasts.conftest import telegram_connection, text_broadcast
from tests.integration.broadcasts.test_marketing_send import _cancel, _schedule

NOON_UTC = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # 04:00 in Los Angeles, 19:00 in Jakarta
QUIET = {"start": "21:00", "end": "08:00", "timezone": "Europe/London"}


class FakeNow:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def sender_time(stack: Any, monkeypatch: pytest.MonkeyPatch) -> FakeNow:
    """The time the sender judges quiet hours by, and held batches that come back within a second: every
    sender the container hands out for the test (a reset of the container included)."""
    from audience import container

    now = FakeNow(NOON_UTC)
    build = container.broadcast_sender.__wrapped__

    @functools.cache
    def sender() -> Any:
        built = build()
        built._now = now
        built._max_delay = 1
        return built

    monkeypatch.setattr(container, "broadcast_sender", sender)
    return now


def _contact(org: Tenant, chat: int, phone: str | None) -> str:
    body: dict[str, Any] = {"first_name": f"P{chat}", "channels": [{"channel": "telegram", "user_id": str(chat)}]}
    if phone:
        body["phone"] = phone
    answer = org.client.post("/orgs/c/contacts", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _view(org: Tenant, broadcast_id: str) -> dict[str, Any]:
    answer = org.client.get(f"/orgs/c/broadcasts/{broadcast_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _drain_while_held(stack: Any, done: Callable[[], bool], timeout: float = 60) -> None:
    """Drain until `done`: a held batch keeps SendQueue busy (it comes back, delayed, until its window
    opens), so the stack is never idle meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        with pytest.raises(DrainTimeoutError):
            stack.drain(timeout=2)
        if done():
            return
        assert time.monotonic() < deadline, "the held broadcast did not reach the expected state"


def _replay_planned(org: Tenant, broadcast_id: str) -> None:
    """Every planned batch of the broadcast delivered again, as SQS or a retried planner may."""
    from audience import container

    repo = container.broadcasts_repository()
    for planned in repo.iter_batches(org.org_id, broadcast_id, "Q#"):
        container.broadcast_sender().process(json.loads(planned["message"]))


def _audience(org: Tenant) -> dict[str, str]:
    return {
        "la": _contact(org, 1, "+14155550100"),  # America/Los_Angeles: 04:00, quiet until 08:00 (16:00 UTC)
        "jakarta": _contact(org, 2, "+6281234567890"),  # Asia/Jakarta: 19:00, open
        "no_phone": _contact(org, 3, None),  # Europe/London, the broadcast's zone: 12:00, open
    }


def test_recipients_in_quiet_hours_are_held_until_their_window_opens(
    stack: Any, bot_api: BotApiStub, org: Tenant, sender_time: FakeNow
) -> None:
    from audience.contacts.keys import shard_of

    connection_id, token = telegram_connection(org)
    audience = _audience(org)
    # Jakarta contacts until one shares Los Angeles's shard: their page is one batch of two time zones, which
    # the sender splits by zone (Los Angeles held, Jakarta sent).
    chats = [2, 3]
    while True:
        chat = chats[-1] + 1
        chats.append(chat)
        if shard_of(_contact(org, chat, f"+62812345{chat:05d}")) == shard_of(audience["la"]):
            break
    draft = text_broadcast(org, connection_id, audience_all=True, quiet_hours=QUIET)
    assert draft["quiet_hours"] == QUIET
    _schedule(org, draft["id"])
    _drain_while_held(stack, lambda: _view(org, draft["id"])["stats"]["by_status"]["sent"] == len(chats))

    assert sorted(int(b["chat_id"]) for b in bot_api.sent(token)) == chats
    view = _view(org, draft["id"])
    assert view["status"] == "SENDING"
    assert view["stats"]["total"] == len(chats) + 1
    assert view["stats"]["by_status"]["pending"] == 1, view["stats"]
    assert view["stats"]["by_status"]["sent"] == len(chats)

    # Still 07:59 in Los Angeles: held again, nothing sent.
    sender_time.at = datetime(2026, 11, 24, 15, 59, tzinfo=UTC)
    _drain_while_held(stack, lambda: True)
    assert len(bot_api.sent(token)) == len(chats)

    # Before it opens, Los Angeles's contact moves to Jakarta: the split is recorded, so a redelivery of the
    # planned batch replays the same parts instead of splitting it anew.
    answer = org.client.patch(f"/orgs/c/contacts/{audience['la']}", json={"phone": "+6281234599999"})
    assert answer.status_code == 200, answer.text
    _replay_planned(org, draft["id"])
    _drain_while_held(stack, lambda: True)
    assert len(bot_api.sent(token)) == len(chats)

    sender_time.at = datetime(2026, 11, 24, 16, 0, 1, tzinfo=UTC)
    stack.drain()
    assert sorted(int(b["chat_id"]) for b in bot_api.sent(token)) == [1, *chats]
    view = _view(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["by_status"]["sent"] == len(chats) + 1
    assert view["stats"]["by_status"]["pending"] == 0

    # The planned batches delivered once more after the end: nothing is sent or counted again.
    _replay_planned(org, draft["id"])
    stack.drain()
    assert len(bot_api.sent(token)) == len(chats) + 1
    assert _view(org, draft["id"])["stats"] == view["stats"]


def test_cancelling_while_recipients_are_held_cancels_them_and_sends_nothing_more(
    stack: Any, bot_api: BotApiStub, org: Tenant, sender_time: FakeNow
) -> None:
    connection_id, token = telegram_connection(org)
    _audience(org)
    draft = text_broadcast(org, connection_id, audience_all=True, quiet_hours=QUIET)
    _schedule(org, draft["id"])
    _drain_while_held(stack, lambda: len(bot_api.sent(token)) == 2)
    _cancel(org, draft["id"])
    sender_time.at = NOON_UTC + timedelta(hours=5)  # the window has opened: a cancel still wins
    stack.drain()

    assert sorted(int(b["chat_id"]) for b in bot_api.sent(token)) == [2, 3]
    stats = _view(org, draft["id"])["stats"]
    assert stats["by_status"]["sent"] == 2
    assert stats["by_status"]["cancelled"] == 1
    assert stats["by_status"]["pending"] == 0


def test_a_window_within_one_day_and_the_zone_of_contacts_without_a_phone(
    stack: Any, bot_api: BotApiStub, org: Tenant, sender_time: FakeNow
) -> None:
    """Quiet 09:00-17:00 (a window that does not cross midnight); no phone: the broadcast's zone decides."""
    connection_id, token = telegram_connection(org)
    _contact(org, 1, None)
    draft = text_broadcast(
        org, connection_id, audience_all=True, quiet_hours={"start": "09:00", "end": "17:00", "timezone": "Asia/Tokyo"}
    )
    sender_time.at = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 11:00 in Tokyo: quiet
    _schedule(org, draft["id"])
    _drain_while_held(stack, lambda: _view(org, draft["id"])["status"] == "SENDING")
    assert bot_api.sent(token) == []
    sender_time.at = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)  # 17:00 in Tokyo: open
    stack.drain()
    assert [int(b["chat_id"]) for b in bot_api.sent(token)] == [1]


@pytest.mark.parametrize(
    ("quiet", "field"),
    [
        ({"start": "25:00", "end": "08:00"}, "quiet_hours.start"),
        ({"start": "21:00", "end": "8am"}, "quiet_hours.end"),
        ({"start": "21:00", "end": "21:00"}, "quiet_hours.end"),
        ({"start": "21:00", "end": "08:00", "timezone": "Mars/Olympus"}, "quiet_hours.timezone"),
    ],
)
def test_bad_quiet_hours_are_422_naming_the_field(org: Tenant, quiet: dict[str, str], field: str) -> None:
    connection_id, _ = telegram_connection(org)
    body = {
        "type": "marketing",
        "name": "Night owls",
        "audience_all": True,
        "quiet_hours": quiet,
        "channels": [{"channel": "telegram", "connection_id": connection_id, "text": {"text": "Hi"}}],
    }
    answer = org.client.post("/orgs/c/broadcasts", json=body)
    assert answer.status_code == 422, answer.text
    assert field in answer.text


def test_quiet_hours_are_for_marketing_broadcasts_only(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    body = {
        "type": "transactional",
        "name": "Codes",
        "quiet_hours": QUIET,
        "channels": [{"channel": "telegram", "connection_id": connection_id, "text": {"text": "Hi"}}],
    }
    answer = org.client.post("/orgs/c/broadcasts", json=body)
    assert answer.status_code == 422, answer.text
    assert "marketing broadcasts only" in answer.text


def test_a_batch_stops_when_quiet_hours_begin_and_sends_the_rest_when_they_end(
    stack: Any, bot_api: BotApiStub, org: Tenant, sender_time: FakeNow
) -> None:
    """Quiet hours begin a millisecond after the batch starts: it stops there and holds the rest."""
    connection_id, token = telegram_connection(org)
    for chat in (1, 2, 3):
        _contact(org, chat, None)  # the broadcast's zone, Europe/London (UTC in November)
    draft = text_broadcast(org, connection_id, audience_all=True, quiet_hours=QUIET)
    sender_time.at = datetime(2026, 11, 24, 20, 59, 59, 999000, tzinfo=UTC)
    _schedule(org, draft["id"])
    _drain_while_held(stack, lambda: _view(org, draft["id"])["status"] == "SENDING")
    assert len(bot_api.sent(token)) < 3
    sender_time.at = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    stack.drain()
    assert sorted(int(b["chat_id"]) for b in bot_api.sent(token)) == [1, 2, 3]
    stats = _view(org, draft["id"])["stats"]
    assert (stats["by_status"]["sent"], stats["by_status"]["pending"]) == (3, 0)
