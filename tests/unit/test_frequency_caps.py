"""Frequency caps on moto, from template.yaml's tables: at most `limit` marketing messages per contact in a
rolling window, counted once per key however often a take is repeated, with slots given back by a release."""

from __future__ import annotations

from typing import Any

import pytest

from audience.errors import ConcurrentUpdateError, ValidationError
from audience.orgs.repository import OrgsRepository
from audience.policies.frequency import FrequencyCap, FrequencyCaps, TakesRepository
from tests.conftest import Tenant

HOUR = 3600
CONTACT = "ct_01hzzzzzzzzzzzzzzzzzzzzzzz"


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _caps(stack: Any, clock: Clock) -> FrequencyCaps:
    return FrequencyCaps(
        stack.outputs["BroadcastsTableName"], OrgsRepository(stack.outputs["OrgsTableName"]), now=clock
    )


def _cap(org: Tenant, limit: int | None, window_hours: float = 1) -> None:
    body = {"frequency_cap": None if limit is None else {"limit": limit, "window_hours": window_hours}}
    answer = org.client.put("/orgs/c/send-policy", json=body)
    assert answer.status_code == 200, answer.text


def _cap_items(stack: Any) -> list[dict[str, Any]]:
    items = stack.client("dynamodb").scan(TableName=stack.outputs["BroadcastsTableName"])["Items"]
    return [item for item in items if item["sk"]["S"] == "#FC"]


def test_at_most_limit_in_any_rolling_window(stack: Any, org: Tenant, clock: Clock) -> None:
    # Given a cap of 2 marketing messages per hour
    _cap(org, 2)
    caps = _caps(stack, clock)
    # When a contact is sent two, a third in the same hour is refused
    assert caps.take(org.org_id, CONTACT, "b1:r")
    clock.t += 600
    assert caps.take(org.org_id, CONTACT, "b2:r")
    clock.t += 600
    assert not caps.take(org.org_id, CONTACT, "b3:r")
    # Then once the first has left the window, one more may go (the second still counts)
    clock.t += HOUR - 1200
    assert caps.take(org.org_id, CONTACT, "b3:r")
    assert not caps.take(org.org_id, CONTACT, "b4:r")
    # Other contacts have their own count
    assert caps.take(org.org_id, "ct_01hyyyyyyyyyyyyyyyyyyyyyyy", "b4:r")
    # The item keeps only what is in the window, and expires when its newest take leaves it
    [item] = [i for i in _cap_items(stack) if CONTACT in i["pk"]["S"]]
    assert set(item["takes"]["M"]) == {"b2:r", "b3:r"}
    assert int(item["expires_at"]["N"]) == int(clock.t) + HOUR


def test_a_key_is_counted_once_however_often_it_is_taken(stack: Any, org: Tenant, clock: Clock) -> None:
    _cap(org, 2)
    caps = _caps(stack, clock)
    for _ in range(3):  # a redelivered batch, a retried task
        assert caps.take(org.org_id, CONTACT, "b1:r")
    assert caps.take(org.org_id, CONTACT, "b2:r")
    assert not caps.take(org.org_id, CONTACT, "b3:r")
    # A key taken before is still allowed once the cap is full: it is the same message.
    assert caps.take(org.org_id, CONTACT, "b1:r")
    assert caps.take(org.org_id, CONTACT, "b2:r")


def test_a_release_gives_the_slot_back(stack: Any, org: Tenant, clock: Clock) -> None:
    _cap(org, 2)
    caps = _caps(stack, clock)
    assert caps.take(org.org_id, CONTACT, "b1:r")
    assert caps.take(org.org_id, CONTACT, "b2:r")
    assert not caps.take(org.org_id, CONTACT, "b3:r")

    caps.release(org.org_id, CONTACT, "b2:r")  # that message failed for good
    caps.release(org.org_id, CONTACT, "b2:r")  # again: nothing more happens
    caps.release(org.org_id, CONTACT, "never-taken")
    caps.release(org.org_id, "ct_01hxxxxxxxxxxxxxxxxxxxxxxx", "b2:r")  # a contact without an item

    assert caps.take(org.org_id, CONTACT, "b3:r")
    assert not caps.take(org.org_id, CONTACT, "b4:r")


def test_an_org_without_a_cap_is_never_capped(stack: Any, org: Tenant, clock: Clock) -> None:
    caps = _caps(stack, clock)
    assert caps.policy(org.org_id) is None
    assert all(caps.take(org.org_id, CONTACT, f"b{n}:r") for n in range(150))
    caps.release(org.org_id, CONTACT, "b1:r")
    assert _cap_items(stack) == []  # nothing is written for an org without a cap


def test_a_policy_change_applies_at_once_through_the_api(stack: Any, org: Tenant, clock: Clock) -> None:
    from audience import container

    caps = container.frequency_caps()  # what this process's senders use
    assert caps.policy(org.org_id) is None
    _cap(org, 1, 24)
    assert caps.policy(org.org_id) == FrequencyCap(1, 24 * HOUR)
    assert caps.take(org.org_id, CONTACT, "b1:r")
    assert not caps.take(org.org_id, CONTACT, "b2:r")
    _cap(org, None)
    assert caps.policy(org.org_id) is None
    assert caps.take(org.org_id, CONTACT, "b2:r")


def test_a_take_that_loses_a_race_reads_again_and_counts_both(
    stack: Any, org: Tenant, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two senders taking for one contact at the same moment, under a cap of 2
    _cap(org, 2)
    caps, rival = _caps(stack, clock), _caps(stack, clock)
    read = TakesRepository.read
    raced: list[bool] = []

    def read_then_lose(self: TakesRepository, org_id: str, contact_id: str) -> tuple[dict[str, int], int]:
        found = read(self, org_id, contact_id)
        if not raced:  # the rival writes between this sender's read and its write
            raced.append(True)
            assert rival.take(org_id, contact_id, "rival:r")
        return found

    monkeypatch.setattr(TakesRepository, "read", read_then_lose)
    # When the first sender's conditional write fails, it reads again
    assert caps.take(org.org_id, CONTACT, "mine:r")
    monkeypatch.undo()
    # Then both messages are counted, and the cap is full
    assert not caps.take(org.org_id, CONTACT, "third:r")
    [item] = _cap_items(stack)
    assert set(item["takes"]["M"]) == {"rival:r", "mine:r"}


def test_a_take_that_keeps_losing_gives_up(
    stack: Any, org: Tenant, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cap(org, 100)
    caps = _caps(stack, clock)
    monkeypatch.setattr(TakesRepository, "write", lambda *args, **kwargs: False)
    with pytest.raises(ConcurrentUpdateError):
        caps.take(org.org_id, CONTACT, "b1:r")


@pytest.mark.parametrize(
    ("limit", "window_seconds", "field"),
    [
        (0, HOUR, "frequency_cap.limit"),
        (101, HOUR, "frequency_cap.limit"),
        (True, HOUR, "frequency_cap.limit"),
        (3, 59, "frequency_cap.window_seconds"),
        (3, 30 * 86400 + 1, "frequency_cap.window_seconds"),
    ],
)
def test_a_cap_out_of_bounds_names_its_field(limit: Any, window_seconds: Any, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        FrequencyCap(limit, window_seconds)
    assert raised.value.fields[0]["field"] == field


@pytest.mark.parametrize("hours", [0, -1, 0.01, 720.01, float("nan"), float("inf")])
def test_a_window_in_hours_out_of_bounds_names_its_field(hours: float) -> None:
    with pytest.raises(ValidationError) as raised:
        FrequencyCap.of_hours(3, hours)
    assert raised.value.fields[0]["field"] == "frequency_cap.window_hours"


def test_a_window_in_hours_is_kept_to_the_second() -> None:
    assert FrequencyCap.of_hours(3, 1 / 60) == FrequencyCap(3, 60)
    assert FrequencyCap.of_hours(3, 720) == FrequencyCap(3, 30 * 86400)
    assert FrequencyCap.of_hours(3, 1.5).window_hours == 1.5
