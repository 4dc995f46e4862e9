"""The sending schedule shared by every sender of a connection: sends evenly spaced, never more than the
rate in any rolling second, however many senders share it."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest

from audience.broadcasts.sender import JITTER_ALLOWANCE, Pacer


class Schedule:
    """The pacing items as the broadcasts table answers them: reserve_pace and hold_pace as the conditional
    updates of the schedule item, take_tokens as the conditional ADD of a daily cap."""

    def __init__(self) -> None:
        self.tat: dict[str, int] = {}
        self.used: Counter[str] = Counter()
        self.calls = 0

    def reserve_pace(
        self, pk: str, span_us: int, soonest_us: int, horizon_us: int, expires_at: int, *, idle: bool = False
    ) -> tuple[bool, int]:
        self.calls += 1
        booked = self.tat.get(pk)
        if booked is not None and soonest_us <= booked <= soonest_us + horizon_us:
            self.tat[pk] = booked + span_us
            return True, booked
        if booked is not None and booked >= soonest_us:
            return False, booked
        self.tat[pk] = soonest_us + span_us
        return True, soonest_us

    def hold_pace(self, pk: str, until_us: int, expires_at: int) -> None:
        self.tat[pk] = max(self.tat.get(pk, 0), until_us)

    def take_tokens(self, pk: str, wanted: int, limit: int, expires_at: int) -> bool:
        if self.used[pk] + wanted > limit:
            return False
        self.used[pk] += wanted
        return True


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def _pacers(schedule: Schedule, clock: Clock, n: int) -> list[Pacer]:
    return [Pacer(schedule, now=clock.now, sleep=clock.sleep) for _ in range(n)]  # type: ignore[arg-type]


def _busiest_rolling_second(times: list[float]) -> int:
    times = sorted(times)
    busiest, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - 1.0:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


def _concurrent_sends(schedule: Schedule, senders: int, sends: int, rate: int, call: float) -> list[float]:
    """`senders` concurrent senders, each with its own clock (the one whose clock is earliest goes next) and
    provider calls of `call` seconds: when each send left."""
    clocks = [Clock() for _ in range(senders)]
    pacers = [Pacer(schedule, now=c.now, sleep=c.sleep) for c in clocks]  # type: ignore[arg-type]
    sent: list[float] = []
    for _ in range(sends):
        i = min(range(senders), key=lambda k: clocks[k].t)
        assert pacers[i].acquire("ch_x", rate, None, deadline=clocks[i].t + 60)
        sent.append(clocks[i].t)
        clocks[i].t += call
    return sent


def test_three_senders_share_one_rate_evenly_spaced() -> None:
    schedule = Schedule()
    sent = _concurrent_sends(schedule, 3, 800, 80, 0.004)  # the provider call takes a few milliseconds
    assert _busiest_rolling_second(sent) <= 80
    # And no idle capacity: 800 sends take 10 s at 80/s, plus the jitter allowance and a booking's slack.
    span = max(sent) - min(sent)
    assert 800 / 80 <= span <= 800 / 80 * (1 + JITTER_ALLOWANCE) + 0.5
    # The schedule is booked eight slots at a time (a tenth of the rate), not one request per message.
    assert schedule.calls <= 800 / 8 + 10


def test_a_sender_that_went_idle_does_not_spend_its_stale_slots_in_a_burst() -> None:
    schedule, clock = Schedule(), Clock()
    (pacer,) = _pacers(schedule, clock, 1)
    assert pacer.acquire("ch_x", 80, None, deadline=clock.t + 60)  # books 8, uses 1
    clock.t += 5.0
    sent = []
    for _ in range(20):
        assert pacer.acquire("ch_x", 80, None, deadline=clock.t + 60)
        sent.append(clock.t)
    gaps = [b - a for a, b in pairwise(sent)]
    assert min(gaps) >= 1 / 80


def test_a_rate_limited_answer_holds_every_sender_then_slows_this_one() -> None:
    schedule, clock = Schedule(), Clock()
    limited, other = _pacers(schedule, clock, 2)
    assert limited.acquire("ch_x", 80, None, deadline=clock.t + 60)
    limited.slow_down("ch_x", 2.0)
    start = clock.t
    assert other.acquire("ch_x", 80, None, deadline=clock.t + 60)
    assert clock.t >= start + 2.0  # the other sender waited out the provider's retry-after
    sent = []
    for _ in range(100):
        assert limited.acquire("ch_x", 80, None, deadline=clock.t + 60)
        sent.append(clock.t)
    assert _busiest_rolling_second(sent) <= 80 / 1.1 + 1


def test_the_daily_cap_stops_sends_and_the_deadline_ends_the_wait() -> None:
    schedule, clock = Schedule(), Clock()
    (pacer,) = _pacers(schedule, clock, 1)
    assert [pacer.acquire("ch_y", 1000, 3, deadline=clock.t + 60) is not None for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    schedule2, clock2 = Schedule(), Clock()
    (busy,) = _pacers(schedule2, clock2, 1)
    schedule2.tat["PACE#ch_z"] = int((clock2.t + 10) * 1e6)  # booked ten seconds ahead by others
    assert busy.acquire("ch_z", 5, None, deadline=clock2.t + 2) is None  # no slot before the deadline
    assert busy.acquire("ch_z", 5, None, deadline=clock2.t + 30) is not None
    assert clock2.t >= 1_000_010.0


def test_senders_slower_than_the_rate_are_not_held_back_by_slots_they_cannot_use() -> None:
    """At 1,000/s, senders whose calls take 25 ms each send 40/s: four of them send 160/s, not fewer."""
    sent = _concurrent_sends(Schedule(), 4, 1600, 1000, 0.025)
    span = max(sent) - min(sent)
    assert 1600 / span >= 0.95 * 160
    assert _busiest_rolling_second(sent) <= 1000


def test_a_sender_is_woken_its_lead_before_the_slot_and_sends_at_it() -> None:
    """The sender's own preparation (the cancel check, the claim) happens before the slot, the send at it."""
    schedule, clock = Schedule(), Clock()
    (pacer,) = _pacers(schedule, clock, 1)
    schedule.tat["PACE#ch_x"] = int((clock.t + 0.5) * 1e6)  # booked half a second ahead by others
    slot = pacer.acquire("ch_x", 80, None, deadline=clock.t + 60, lead=0.05)
    assert slot is not None
    assert clock.t == pytest.approx(slot - 0.05)
    pacer.sleep_until("ch_x", slot)
    assert clock.t == pytest.approx(slot)


def test_a_sender_woken_late_takes_the_next_free_slot_instead_of_sending_late() -> None:
    schedule, clock = Schedule(), Clock()
    (pacer,) = _pacers(schedule, clock, 1)
    schedule.tat["PACE#ch_x"] = int((clock.t + 0.5) * 1e6)
    slot = pacer.acquire("ch_x", 80, None, deadline=clock.t + 60)
    assert slot is not None
    clock.t = slot + 0.05  # the host was busy: woken 50 ms after the slot
    assert pacer.send_at("ch_x", slot, 80, deadline=clock.t + 60)
    assert clock.t > slot + 0.05  # a later slot, waited for
    assert clock.t - slot > (1 + JITTER_ALLOWANCE) / 80 * 0.99  # not the missed one
