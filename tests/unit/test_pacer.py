"""The sending pace shared by every sender of a connection: never more than the rate in any second."""

from __future__ import annotations

from collections import Counter

from audience.broadcasts.sender import Pacer


class Slots:
    """take_tokens as the broadcasts table answers it (a conditional ADD per slot item)."""

    def __init__(self) -> None:
        self.used: Counter[str] = Counter()
        self.calls = 0

    def take_tokens(self, pk: str, wanted: int, limit: int, expires_at: int) -> bool:
        self.calls += 1
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


def _pacers(slots: Slots, clock: Clock, n: int) -> list[Pacer]:
    return [Pacer(slots, now=clock.now, sleep=clock.sleep) for _ in range(n)]  # type: ignore[arg-type]


def test_three_senders_share_one_rate_and_never_exceed_it() -> None:
    slots, clock = Slots(), Clock()
    pacers = _pacers(slots, clock, 3)
    sends: Counter[int] = Counter()
    for i in range(600):
        pacer = pacers[i % 3]
        assert pacer.acquire("ch_x", 80, None, deadline=clock.t + 60)
        sends[int(clock.t)] += 1
        clock.t += 0.001  # sending takes a millisecond
    assert max(sends.values()) <= 80
    assert sum(sends.values()) == 600
    # Tokens are taken eight at a time (a tenth of the rate), not one request per message.
    assert slots.calls < 600 / 4


def test_a_slowed_connection_runs_at_half_rate_for_a_while() -> None:
    slots, clock = Slots(), Clock()
    (pacer,) = _pacers(slots, clock, 1)
    pacer.slow_down("ch_x", 1.0)
    sends: Counter[int] = Counter()
    for _ in range(200):
        assert pacer.acquire("ch_x", 80, None, deadline=clock.t + 60)
        sends[int(clock.t)] += 1
    assert max(sends.values()) <= 40


def test_the_daily_cap_stops_sends_and_the_deadline_ends_the_wait() -> None:
    slots, clock = Slots(), Clock()
    (pacer,) = _pacers(slots, clock, 1)
    assert [pacer.acquire("ch_y", 1000, 3, deadline=clock.t + 60) for _ in range(4)] == [True, True, True, False]
    slots2, clock2 = Slots(), Clock()
    (busy,) = _pacers(slots2, clock2, 1)
    key = f"PACE#ch_z#{int(clock2.t)}"
    slots2.used[key] = 5
    assert busy.acquire("ch_z", 5, None, deadline=clock2.t) is False  # full second, no time to wait
    assert busy.acquire("ch_z", 5, None, deadline=clock2.t + 5) is True  # the next second has room
