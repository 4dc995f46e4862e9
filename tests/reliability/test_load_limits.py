"""Bounded load over real HTTP on 127.0.0.1 (the local stack served as `make dev` serves it): a flooded API
key is limited while another org is not, a burst of WhatsApp status callbacks is all acknowledged and all
applied, and an OTP flood at one phone is throttled per destination. The scenarios are those of
`python -m benchmarks load`, at small sizes; only outcomes are asserted, never timings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.load import Served, callback_burst, key_flood, otp_flood, served

WORKERS = 6


@pytest.fixture(scope="module")
def api() -> Iterator[Served]:
    """One served stack for the module (each scenario makes its own orgs)."""
    with served(stage="test") as running:
        yield running


def test_a_flooded_key_gets_429s_with_retry_after_while_another_org_is_unaffected(api: Served) -> None:
    # Given a key allowed 10 requests a minute, and another org on its default budget
    # When both send 30 GETs at the same time from threads
    outcome = key_flood(api, requests=30, limit=10, workers=WORKERS, align=False)

    # Then the key gets its budget (one minute's, or two when the flood straddles a minute) and 429s past it
    flooded, other = outcome["flooded_key"], outcome["other_org"]
    assert 1 <= flooded["2xx"] <= 2 * 10
    assert flooded["429"] == 30 - flooded["2xx"]
    assert flooded["other"] == 0
    assert flooded["429_with_retry_after"] == flooded["429"]
    assert flooded["429_remaining_0"] == flooded["429"]
    assert flooded["429_bodies_rate_limited"] == flooded["429"]
    low, high = flooded["retry_after_s"]
    assert 1 <= low <= high <= 60
    # And the other org's calls all succeed
    assert other == {**other, "requests": 30, "2xx": 30, "429": 0, "other": 0}


def test_a_burst_of_status_callbacks_is_all_acknowledged_and_all_applied(api: Served) -> None:
    # Given 50 WhatsApp messages of a marketing broadcast, sent
    # When their 200 status callbacks (sent, delivered, read, and delivered again late; all shuffled) are
    # posted concurrently, then the queues drained
    outcome = callback_burst(api, callbacks=200, workers=WORKERS)

    # Then every callback was answered 200 and run once by the inbound function, none dead-lettered
    assert outcome["messages_sent"] == 50
    assert outcome["answered"] == {"200": 200}
    assert outcome["inbound_records_applied"] == 200
    assert outcome["inbound_dead_letters"] == 0
    # And every recipient is READ, with the counters equal to a recount of the rows
    assert outcome["recipients_read_after_drain"] == 50
    assert outcome["recount"] == {"read": 50}
    assert outcome["counters_equal_recount"]
    assert outcome["counters"]["read"] == 50


def test_an_otp_flood_at_one_phone_is_throttled_per_destination(api: Served) -> None:
    # Given a transactional broadcast allowing 3 codes per phone an hour
    # When 8 codes are requested at once for one phone, and 3 for another phone at the same time
    outcome = otp_flood(
        api, sends=8, others=3, workers=WORKERS, destination_rate_limit={"limit": 3, "period_seconds": 3600}
    )

    # Then the flooded phone gets 3 messages and 5 refusals naming the destination limit, with Retry-After
    hit, spared = outcome["flooded_phone"], outcome["other_phone"]
    assert (hit["2xx"], hit["429"], hit["other"]) == (3, 5, 0)
    assert hit["messages_sent_to_phone"] == 3
    assert hit["429_with_retry_after"] == 5
    assert hit["429_naming_destination_limit"] == 5
    assert hit["429_showing_the_address"] == 0
    low, high = hit["retry_after_s"]
    assert 1 <= low <= high <= 1200  # one send frees up after an interval (3600 s / 3)
    # And the other phone gets all its codes
    assert (spared["2xx"], spared["429"], spared["messages_sent_to_phone"]) == (3, 0, 3)


def test_the_default_destination_limit_applies_when_none_is_set(api: Served) -> None:
    outcome: dict[str, Any] = otp_flood(api, sends=7, others=1, workers=WORKERS)

    assert outcome["destination_rate_limit"] == {"limit": 5, "period_seconds": 600}
    assert (outcome["flooded_phone"]["2xx"], outcome["flooded_phone"]["429"]) == (5, 2)
    assert outcome["other_phone"]["2xx"] == 1
